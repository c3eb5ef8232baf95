package imapserver

// mailvault: the ID command (RFC 2971), which go-imap v2.0.0-beta.8's
// server lacks.

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// maxIDFields is how many field-value pairs of a client's ID are kept;
// RFC 2971 section 3.3 lets a client send no more than 30. More are read
// and dropped rather than refused.
const maxIDFields = 30

// SessionID is a session that answers the ID command (RFC 2971). The
// server should advertise imap.CapID.
type SessionID interface {
	Session

	// ID receives the client's fields (keys lower-cased; nil for ID NIL)
	// and returns the server's identification (nil: "* ID NIL"). ID may
	// be sent in any state (RFC 2971 section 3.1).
	ID(client map[string]string) *imap.IDData
}

func (c *Conn) handleID(dec *imapwire.Decoder) error {
	if !dec.ExpectSP() {
		return dec.Err()
	}
	var (
		fields  map[string]string
		key     string
		haveKey bool
	)
	isList, err := dec.List(func() error {
		var s string
		if !haveKey {
			if !dec.ExpectString(&s) {
				return dec.Err()
			}
			key, haveKey = strings.ToLower(s), true
			return nil
		}
		if !dec.ExpectNString(&s) {
			return dec.Err()
		}
		haveKey = false
		if fields == nil {
			fields = make(map[string]string)
		}
		if len(fields) < maxIDFields {
			fields[key] = s
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !isList && !dec.ExpectNIL() {
		return dec.Err()
	}
	if haveKey {
		return newClientBugError("ID field without a value")
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}

	var data *imap.IDData
	if sess, ok := c.session.(SessionID); ok {
		data = sess.ID(fields)
	}
	return c.writeID(data)
}

func (c *Conn) writeID(data *imap.IDData) error {
	enc := newResponseEncoder(c)
	defer enc.end()

	enc.Atom("*").SP().Atom("ID").SP()
	if data == nil {
		enc.NIL()
		return enc.CRLF()
	}
	var kv []string
	for _, f := range []struct{ k, v string }{
		{"name", data.Name}, {"version", data.Version}, {"os", data.OS},
		{"os-version", data.OSVersion}, {"vendor", data.Vendor},
		{"support-url", data.SupportURL}, {"address", data.Address},
		{"date", data.Date}, {"command", data.Command},
		{"arguments", data.Arguments}, {"environment", data.Environment},
	} {
		if f.v != "" {
			kv = append(kv, f.k, f.v)
		}
	}
	if len(kv) == 0 {
		enc.NIL()
		return enc.CRLF()
	}
	enc.Special('(')
	for i, s := range kv {
		if i > 0 {
			enc.SP()
		}
		enc.String(s)
	}
	enc.Special(')')
	return enc.CRLF()
}
