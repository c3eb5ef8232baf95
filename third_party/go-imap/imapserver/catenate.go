package imapserver

// mailvault: CATENATE (RFC 4469). beta.8 had none.

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// SessionCatenate is a session that resolves the IMAP URLs (RFC 5092) of
// an APPEND's CATENATE parts.
type SessionCatenate interface {
	Session
	// CatenateURL returns the octets a URL names, for an APPEND to
	// mailbox; an error is answered as is (NO [BADURL] is what RFC 4469
	// asks for a URL that does not resolve, NO [TRYCREATE] comes first
	// when mailbox does not exist).
	CatenateURL(mailbox, url string) ([]byte, error)
}

// bytesLiteral is a catenated message, held in memory (it is no larger
// than the APPEND limit).
type bytesLiteral struct {
	*bytes.Reader
	size int64
}

func (l bytesLiteral) Size() int64 { return l.size }

// readCatenate reads "(" cat-part *(SP cat-part) ")" after CATENATE SP.
// A URL that does not resolve does not stop the reading (so that the
// connection stays in step): it comes back as deferred, to be answered
// once the command is read. An error is fatal to the command.
func (c *Conn) readCatenate(dec *imapwire.Decoder, mailbox string, appendLimit int64) (lit imap.LiteralReader, deferred, err error) {
	sess, _ := c.session.(SessionCatenate)
	var buf bytes.Buffer
	n := 0
	err = dec.ExpectList(func() error {
		n++
		var kind string
		if !dec.ExpectAtom(&kind) || !dec.ExpectSP() {
			return dec.Err()
		}
		switch strings.ToUpper(kind) {
		case "URL":
			var url string
			if !dec.ExpectAString(&url) {
				return dec.Err()
			}
			if deferred != nil {
				return nil
			}
			if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
				deferred = err
				return nil
			}
			if sess == nil {
				deferred = &imap.Error{Type: imap.StatusResponseTypeNo, Code: "BADURL", Text: "URLs are not supported"}
				return nil
			}
			b, err := sess.CatenateURL(mailbox, url)
			if err != nil {
				deferred = err
				return nil
			}
			buf.Write(b)
		case "TEXT":
			dec.Special('~') // literal8
			lit, nonSync, err := dec.ExpectLiteralReader()
			if err != nil {
				return err
			}
			if int64(buf.Len())+lit.Size() > appendLimit {
				c.refuseNonSync(nonSync)
				return &imap.Error{
					Type: imap.StatusResponseTypeNo,
					Code: imap.ResponseCodeTooBig,
					Text: fmt.Sprintf("Messages are limited to %v bytes", appendLimit),
				}
			}
			if err := c.acceptLiteral(lit.Size(), nonSync); err != nil {
				return err
			}
			if _, err := io.Copy(&buf, lit); err != nil {
				return err
			}
		default:
			return newClientBugError("unknown CATENATE part")
		}
		if int64(buf.Len()) > appendLimit && deferred == nil {
			deferred = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: fmt.Sprintf("Messages are limited to %v bytes", appendLimit)}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, newClientBugError("empty CATENATE")
	}
	b := buf.Bytes()
	return bytesLiteral{bytes.NewReader(b), int64(len(b))}, deferred, nil
}
