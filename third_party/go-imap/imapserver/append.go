package imapserver

import (
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// defaultAppendLimit is the default maximum size of an APPEND payload.
const defaultAppendLimit = 100 * 1024 * 1024 // 100MiB

// SessionMultiAppend is a session that takes several messages in one
// APPEND (RFC 3502, MULTIAPPEND). Each is stored with Session.Append as it
// arrives; when one fails, UnAppend removes those the command stored
// before it, so that the command appends all or none.
//
// mailvault: beta.8 had no MULTIAPPEND.
type SessionMultiAppend interface {
	Session
	UnAppend(mailbox string, data []*imap.AppendData) error
}

func (c *Conn) handleAppend(tag string, dec *imapwire.Decoder) error {
	var mailbox string
	if !dec.ExpectSP() || !dec.ExpectMailbox(&mailbox) || !dec.ExpectSP() {
		return dec.Err()
	}
	options, lit, dataExt, deferred, err := c.readAppendMessage(dec, mailbox)
	if err != nil {
		return err
	}

	c.setReadTimeout(literalReadTimeout)
	defer c.setReadTimeout(cmdReadTimeout)

	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		io.Copy(io.Discard, lit)
		if !dec.CRLF() {
			// mailvault: more follows (another message of a MULTIAPPEND)
			// that will not be read: end the connection.
			c.state = imap.ConnStateLogout
		}
		return err
	}

	// mailvault: MULTIAPPEND (RFC 3502): further messages follow after a
	// space, each appended as it comes; a failure removes those before it
	// and the rest of the command is read and dropped (or, when it cannot
	// be, the connection ends after the answer, since what follows is
	// not a command).
	multi, _ := c.session.(SessionMultiAppend)
	if !c.server.options.caps().Has(imap.CapMultiAppend) {
		multi = nil
	}
	var all []*imap.AppendData
	appendErr := deferred
	for {
		if appendErr == nil {
			var data *imap.AppendData
			data, appendErr = c.session.Append(mailbox, lit, &options)
			if appendErr == nil {
				all = append(all, data)
			}
		}
		if _, discardErr := io.Copy(io.Discard, lit); discardErr != nil {
			// The connection broke in a literal: none of the command's
			// messages stay.
			return c.unAppend(multi, mailbox, all, discardErr)
		}
		if dataExt != "" && !dec.ExpectSpecial(')') {
			appendErr = c.unAppend(multi, mailbox, all, dec.Err())
			c.state = imap.ConnStateLogout
			return appendErr
		}
		if multi == nil || !dec.SP() {
			break
		}
		options, lit, dataExt, deferred, err = c.readAppendMessage(dec, mailbox)
		if appendErr == nil {
			appendErr = deferred
		}
		if err != nil {
			// The message's literal was not read: what follows is
			// unknown.
			appendErr = c.unAppend(multi, mailbox, all, err)
			c.state = imap.ConnStateLogout
			return appendErr
		}
	}
	if !dec.ExpectCRLF() {
		appendErr = c.unAppend(multi, mailbox, all, dec.Err())
		c.state = imap.ConnStateLogout
		return appendErr
	}
	if appendErr != nil {
		return c.unAppend(multi, mailbox, all, appendErr)
	}
	if err := c.poll("APPEND"); err != nil {
		return err
	}
	if len(all) == 1 {
		return c.writeAppendOK(tag, all[0])
	}
	return c.writeMultiAppendOK(tag, all)
}

// unAppend removes the messages a failed MULTIAPPEND stored and returns
// the failure.
func (c *Conn) unAppend(multi SessionMultiAppend, mailbox string, all []*imap.AppendData, err error) error {
	if multi != nil && len(all) > 0 {
		if uerr := multi.UnAppend(mailbox, all); uerr != nil {
			c.server.logger().Printf("MULTIAPPEND: removing the messages of a failed command: %v", uerr)
		}
	}
	return err
}

func (c *Conn) writeMultiAppendOK(tag string, all []*imap.AppendData) error {
	enc := newResponseEncoder(c)
	defer enc.end()

	enc.Atom(tag).SP().Atom("OK").SP()
	if all[0] != nil && all[0].UID != 0 {
		var uids imap.UIDSet
		for _, d := range all {
			uids.AddNum(d.UID)
		}
		enc.Special('[')
		enc.Atom("APPENDUID").SP().Number(all[0].UIDValidity).SP().NumSet(uids)
		enc.Special(']').SP()
	}
	enc.Text("APPEND completed")
	return enc.CRLF()
}

// readAppendMessage reads one message of an APPEND: flags, date, a
// data extension and the literal's prefix, and accepts the literal.
//
// mailvault: a CATENATE (RFC 4469) message comes back whole; a URL of it
// that did not resolve comes back as deferred, an error to answer once
// the command has been read.
func (c *Conn) readAppendMessage(dec *imapwire.Decoder, mailbox string) (options imap.AppendOptions, lit imap.LiteralReader, dataExt string, deferred error, err error) {
	hasFlagList, err := dec.List(func() error {
		flag, err := internal.ExpectFlag(dec)
		if err != nil {
			return err
		}
		options.Flags = append(options.Flags, flag)
		return nil
	})
	if err != nil {
		return options, nil, "", nil, err
	}
	if hasFlagList && !dec.ExpectSP() {
		return options, nil, "", nil, dec.Err()
	}

	t, err := internal.DecodeDateTime(dec)
	if err != nil {
		return options, nil, "", nil, err
	}
	if !t.IsZero() && !dec.ExpectSP() {
		return options, nil, "", nil, dec.Err()
	}
	options.Time = t

	appendLimit := int64(defaultAppendLimit)
	if appendLimitSession, ok := c.session.(SessionAppendLimit); ok {
		appendLimit = int64(appendLimitSession.AppendLimit())
	}

	if !dec.Special('~') && dec.Atom(&dataExt) { // ignore literal8 prefix if any for BINARY
		switch strings.ToUpper(dataExt) {
		case "CATENATE":
			if !c.server.options.caps().Has(imap.CapCatenate) {
				return options, nil, "", nil, newClientBugError("Unknown APPEND data extension")
			}
			if !dec.ExpectSP() {
				return options, nil, "", nil, dec.Err()
			}
			lit, deferred, err := c.readCatenate(dec, mailbox, appendLimit)
			return options, lit, "", deferred, err
		case "UTF8":
			// '~' is the literal8 prefix
			if !dec.ExpectSP() || !dec.ExpectSpecial('(') || !dec.ExpectSpecial('~') {
				return options, nil, "", nil, dec.Err()
			}
		default:
			return options, nil, "", nil, newClientBugError("Unknown APPEND data extension")
		}
	}

	wireLit, nonSync, err := dec.ExpectLiteralReader()
	if err != nil {
		return options, nil, "", nil, err
	}

	if wireLit.Size() > appendLimit {
		c.refuseNonSync(nonSync) // mailvault
		return options, nil, "", nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeTooBig,
			Text: fmt.Sprintf("Literals are limited to %v bytes for this command", appendLimit),
		}
	}
	if err := c.acceptLiteral(wireLit.Size(), nonSync); err != nil {
		return options, nil, "", nil, err
	}
	return options, wireLit, dataExt, nil, nil
}

func (c *Conn) writeAppendOK(tag string, data *imap.AppendData) error {
	enc := newResponseEncoder(c)
	defer enc.end()

	enc.Atom(tag).SP().Atom("OK").SP()
	if data != nil {
		enc.Special('[')
		enc.Atom("APPENDUID").SP().Number(data.UIDValidity).SP().UID(data.UID)
		enc.Special(']').SP()
	}
	enc.Text("APPEND completed")
	return enc.CRLF()
}
