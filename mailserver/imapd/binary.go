package imapd

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// nulWriter notes whether anything written to it held a NUL octet.
type nulWriter struct{ found bool }

func (w *nulWriter) Write(p []byte) (int, error) {
	w.found = w.found || bytes.IndexByte(p, 0) >= 0
	return len(p), nil
}

// unbinary re-encodes a spooled message that holds NUL octets (an APPEND
// of binary content, RFC 3516 literal8) so that every MIME part with a
// NUL is base64-encoded, as Dovecot does: BODY[] answers with a literal,
// which may not carry NUL (RFC 3501 section 4.3), and BINARY[] decodes it
// back to the octets appended. Everything else is kept as it came, except
// a multipart's preamble and epilogue.
func unbinary(f io.ReadSeeker) (io.ReadSeeker, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	br := bufio.NewReader(f)
	h, err := textproto.ReadHeader(br)
	if err == nil {
		err = writeUnbinary(&out, h, br)
	}
	if err != nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeParse, Text: "Binary content that is not MIME: " + err.Error()}
	}
	return bytes.NewReader(out.Bytes()), nil
}

func writeUnbinary(w *bytes.Buffer, h textproto.Header, body io.Reader) error {
	mt, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	mt = strings.ToLower(mt)
	switch {
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "":
		if err := textproto.WriteHeader(w, h); err != nil {
			return err
		}
		b := params["boundary"]
		mr := textproto.NewMultipartReader(body, b)
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			w.WriteString("--" + b + "\r\n")
			if err := writeUnbinary(w, p.Header, p); err != nil {
				return err
			}
			w.WriteString("\r\n")
		}
		w.WriteString("--" + b + "--\r\n")
		return nil
	case mt == "message/rfc822":
		if err := textproto.WriteHeader(w, h); err != nil {
			return err
		}
		br := bufio.NewReader(body)
		inner, err := textproto.ReadHeader(br)
		if err != nil {
			return err
		}
		return writeUnbinary(w, inner, br)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if bytes.IndexByte(data, 0) < 0 {
		if err := textproto.WriteHeader(w, h); err != nil {
			return err
		}
		w.Write(data)
		return nil
	}
	// A part with NUL octets is binary whatever it says; base64 in lines
	// of 76 (RFC 2045 section 6.8).
	h.Set("Content-Transfer-Encoding", "base64")
	if err := textproto.WriteHeader(w, h); err != nil {
		return err
	}
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		w.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	w.WriteString(enc + "\r\n")
	return nil
}

// knownCTE checks that the part a BINARY fetch asks for has a
// Content-Transfer-Encoding the server can decode (RFC 3516 section 4.3:
// NO [UNKNOWN-CTE] otherwise; go-imap's ExtractBinarySection gives back
// nothing).
func knownCTE(msg io.Reader, part []int) error {
	var hdr []byte
	if len(part) == 0 {
		hdr = imapserver.ExtractBodySection(msg, &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader})
	} else {
		hdr = imapserver.ExtractBodySection(msg, &imap.FetchItemBodySection{Part: part, Specifier: imap.PartSpecifierMIME})
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
	if err != nil {
		return nil // not ours to judge: the extraction answers
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "", "7bit", "8bit", "binary", "base64", "quoted-printable":
		return nil
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "UNKNOWN-CTE", Text: "Unknown Content-Transfer-Encoding"}
}
