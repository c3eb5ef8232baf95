package imapd

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/mailvault/mailvault/mailserver/store"
)

// Fetch answers FETCH (RFC 9051 section 6.4.5). A BODY[] without .PEEK
// sets \Seen (section 6.4.5, BODY[<section>]) unless the folder is
// read-only, and the new flags are included in the response. Message files
// are read after the folder's lock is released, so a large FETCH does not
// hold up the other sessions.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	markSeen := false
	if !s.sel.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	m := s.sel.mbox
	m.mu.Lock()
	kw := m.kw
	targets := s.resolveLocked(numSet)
	if markSeen {
		for i := range targets {
			t := &targets[i]
			if hasFlag(t.msg.flags, 'S') {
				continue
			}
			nf := applyStore(t.msg.flags, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}, &kw)
			if err := m.setFlagsLocked(s.ctx(), t.idx, nf, s.sel.tracker); err != nil {
				if errors.Is(err, store.ErrNoSuchMessage) {
					continue
				}
				m.mu.Unlock()
				return err
			}
			t.msg, t.flagsC = m.msgs[t.idx], true
		}
	}
	m.mu.Unlock()
	for _, t := range targets {
		if err := s.fetchOne(w, m.folder, t, &kw, options); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) fetchOne(w *imapserver.FetchWriter, folder string, t target, kw *store.Keywords, options *imap.FetchOptions) error {
	f, err := s.srv.store.OpenMessage(s.ctx(), s.acct, folder, t.msg.uid)
	if errors.Is(err, store.ErrNoSuchMessage) {
		// Expunged meanwhile; its EXPUNGE comes with the next update
		// (RFC 9051 section 6.4.5 lets the server omit it).
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("imapd: fetch: %w", err)
	}
	size := fi.Size()
	rw := w.CreateMessage(t.seq)
	if options.UID {
		rw.WriteUID(imap.UID(t.msg.uid))
	}
	if options.Flags || t.flagsC {
		rw.WriteFlags(imapFlags(t.msg.flags, kw))
	}
	if options.InternalDate {
		rw.WriteInternalDate(fi.ModTime())
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(size)
	}
	whole := func() io.Reader { return io.NewSectionReader(f, 0, size) }
	if options.Envelope {
		h, _ := textproto.ReadHeader(bufio.NewReader(whole()))
		rw.WriteEnvelope(imapserver.ExtractEnvelope(h))
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(whole()))
	}
	for _, bs := range options.BodySection {
		if bs.Specifier == imap.PartSpecifierNone && len(bs.Part) == 0 {
			// BODY[] and BODY[]<partial>: stream the file.
			off, n := int64(0), size
			if p := bs.Partial; p != nil {
				off = min(p.Offset, size)
				n = min(p.Size, size-off)
			}
			wc := rw.WriteBodySection(bs, n)
			_, err := io.Copy(wc, io.NewSectionReader(f, off, n))
			if cerr := wc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				rw.Close() // releases the connection's writer
				return fmt.Errorf("imapd: fetch: %w", err)
			}
			continue
		}
		b := imapserver.ExtractBodySection(whole(), bs)
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(b))), b); err != nil {
			rw.Close()
			return err
		}
	}
	for _, bs := range options.BinarySection {
		b := imapserver.ExtractBinarySection(whole(), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(b))), b); err != nil {
			rw.Close()
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(whole(), bss))
	}
	return rw.Close()
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}
