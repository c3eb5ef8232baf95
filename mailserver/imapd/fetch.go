package imapd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

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
	if options.ChangedSince > 0 {
		// RFC 7162 section 3.1.4.1: only messages changed since.
		targets = slices.DeleteFunc(targets, func(t target) bool { return t.msg.modseq <= options.ChangedSince })
	}
	if markSeen {
		for i := range targets {
			t := &targets[i]
			if hasFlag(t.msg.flags, 'S') {
				continue
			}
			nf := applyStore(t.msg.flags, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}, &kw)
			if err := m.setFlagsLocked(s.ctx(), t.idx, nf, s.sel.view, store.Unconditional); err != nil {
				if errors.Is(err, store.ErrNoSuchMessage) {
					continue
				}
				m.mu.Unlock()
				return err
			}
			t.msg, t.flagsC = m.msgs[t.idx], true
		}
	}
	m.supersedeLocked(s.sel.view, targets) // answered with t.msg: queued updates not older
	m.mu.Unlock()
	if options.Vanished {
		// UID FETCH (CHANGEDSINCE n VANISHED), RFC 7162 section 3.2.6:
		// the UIDs of the set expunged since n, before the FETCHes.
		uids, err := s.vanished(m, numSet.(imap.UIDSet), options.ChangedSince)
		if err != nil {
			return err
		}
		if err := w.WriteVanishedEarlier(uids); err != nil {
			return err
		}
	}
	if err := s.announce(s.sel.view, &kw); err != nil { // new keywords: FLAGS first
		return err
	}
	plan := planFetch(options)
	s.out.begin()
	for _, t := range targets {
		if err := s.fetchOne(w, m, t, &kw, options, plan); err != nil {
			s.out.end()
			return err
		}
	}
	return s.out.end()
}

// fetchPlan says what of the message file a FETCH needs.
type fetchPlan struct {
	// file: an item needs the body (BODY[], TEXT, parts, BINARY);
	// BODYSTRUCTURE needs it only until the cache holds it.
	file bool
	// meta: an item needs the header block, size or internal date, which
	// the metadata cache can answer without opening the file.
	meta bool
}

func planFetch(options *imap.FetchOptions) fetchPlan {
	p := fetchPlan{
		file: len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0,
		// BODYSTRUCTURE is kept in the metadata cache once computed.
		meta: options.Envelope || options.InternalDate || options.RFC822Size || options.BodyStructure != nil,
	}
	for _, bs := range options.BodySection {
		if headerOnly(bs) {
			p.meta = true
		} else {
			p.file = true
		}
	}
	return p
}

// headerOnly reports whether a body section is the top-level message's
// header or some of its fields (RFC 9051 section 6.4.5, BODY[<section>]
// with HEADER, HEADER.FIELDS or HEADER.FIELDS.NOT and no part number).
func headerOnly(bs *imap.FetchItemBodySection) bool {
	return len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierHeader
}

// fetchOne answers FETCH for one message. Items that need only the header
// block, size or internal date come from the server's metadata cache
// (headercache.go) when the message is in it, without opening the file;
// otherwise the file is opened and only its header block is read into the
// cache. FLAGS and UID come from the folder's view, so a FETCH of only
// those opens no file.
func (s *session) fetchOne(w *imapserver.FetchWriter, m *mailbox, t target, kw *store.Keywords, options *imap.FetchOptions, plan fetchPlan) error {
	var meta *msgMeta
	key := ""
	if t.msg.unique != "" {
		key = m.key + "\x00" + t.msg.unique
	}
	if plan.meta && key != "" {
		meta = s.srv.meta.get(key)
	}
	var f *os.File
	var size int64
	var modTime time.Time
	if meta != nil {
		size, modTime = meta.size, meta.modTime
	}
	var structure imap.BodyStructure
	if options.BodyStructure != nil && meta != nil {
		if p := meta.structure.Load(); p != nil {
			structure = *p
		}
	}
	if plan.file || (plan.meta && (meta == nil || meta.big)) || (options.BodyStructure != nil && structure == nil) {
		var err error
		f, err = s.srv.store.OpenMessage(s.ctx(), s.acct, m.folder, t.msg.uid)
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
		size, modTime = fi.Size(), fi.ModTime()
		if plan.meta && meta == nil {
			if meta, err = readMeta(key, f, size, modTime); err != nil {
				return err
			}
			if key != "" {
				s.srv.meta.put(meta)
			}
		}
	}
	whole := func() io.Reader { return io.NewSectionReader(f, 0, size) }

	rw := w.CreateMessage(t.seq)
	if options.UID {
		rw.WriteUID(imap.UID(t.msg.uid))
	}
	if options.Flags || t.flagsC {
		rw.WriteFlags(t.flags(kw))
	}
	if options.ModSeq || (t.flagsC && s.condStore.Load()) {
		rw.WriteModSeq(t.msg.modseq) // RFC 7162 section 3.1.4
	}
	if options.InternalDate {
		rw.WriteInternalDate(modTime)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(size)
	}
	if options.Envelope {
		if meta.big {
			h, _ := textproto.ReadHeader(bufio.NewReader(whole()))
			rw.WriteEnvelope(extractEnvelope(h))
		} else {
			rw.WriteEnvelope(meta.envelope())
		}
	}
	if options.BodyStructure != nil {
		if structure == nil {
			structure = imapserver.ExtractBodyStructure(whole())
			if meta != nil && !meta.big {
				meta.structure.Store(&structure)
			}
		}
		rw.WriteBodyStructure(structure)
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
			_, err := s.srv.store.CopyPooled(wc, io.NewSectionReader(f, off, n))
			if cerr := wc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				rw.Close() // releases the connection's writer
				return fmt.Errorf("imapd: fetch: %w", err)
			}
			continue
		}
		var b []byte
		switch {
		case !headerOnly(bs) || meta.big:
			b = imapserver.ExtractBodySection(whole(), bs)
		case len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0 && bs.Partial == nil:
			b = meta.headerSection(bs)
		default:
			b = meta.headerFields(bs)
		}
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(b))), b); err != nil {
			rw.Close()
			return err
		}
	}
	for _, bs := range options.BinarySection {
		if err := knownCTE(whole(), bs.Part); err != nil { // binary.go
			rw.Close()
			return err
		}
		b := imapserver.ExtractBinarySection(whole(), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(b))), b); err != nil {
			rw.Close()
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		if err := knownCTE(whole(), bss.Part); err != nil {
			rw.Close()
			return err
		}
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
