package archive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version 3 folder trees and pages hold their messages column-wise
// (docs/FORMAT.md "version 3"): one JSON array per field — all unique
// names, then all flags, all blob lists, all subjects ... — instead of one
// object per message; and a message's mtime, size and date relative to
// what its unique name and mtime already say (the delivery second, the
// ",S=" size), which makes those columns mostly zeros and often absent.
// zstd then sees runs of like data (the same addresses, domains, name
// prefixes) without the keys and 19-digit times between them: at 100k
// small messages the stored pages shrank by about a seventh at the same
// zstd level (docs/PERFORMANCE.md, "reposize"). It stays JSON so that jq
// reads it by hand.

// messageColumns is the "messages" object of a version 3 tree or page.
// Every array present has one element per message; a column that would
// hold only empty values is left out, and reads as empty.
type messageColumns struct {
	Unique    []string       `json:"unique"`
	UniqueRaw map[int][]byte `json:"unique_raw,omitempty"`
	Flags     []string       `json:"flags,omitempty"`
	// New lists the indices of the messages in new/, ascending.
	New []int `json:"new,omitempty"`
	// MTime is each mtime minus mtimeBase of the unique name, Size each
	// size minus sizeBase of the unique name.
	MTime   []int64    `json:"mtime,omitempty"`
	Size    []int64    `json:"size,omitempty"`
	Blobs   [][]ID     `json:"blobs,omitempty"`
	From    [][]string `json:"from,omitempty"`
	To      [][]string `json:"to,omitempty"`
	Cc      [][]string `json:"cc,omitempty"`
	Subject []string   `json:"subject,omitempty"`
	// Date holds each date as a number, its seconds from the mtime's,
	// when it is in the form backups write (dateColumn), else as a string.
	Date      []json.RawMessage `json:"date,omitempty"`
	MessageID []string          `json:"message_id,omitempty"`
	Name      map[int]string    `json:"name,omitempty"`
	NameRaw   map[int][]byte    `json:"name_raw,omitempty"`
}

// folderTreeV3 is the JSON of a version 3 tree blob: messages or pages,
// never both (an empty folder has neither).
type folderTreeV3 struct {
	Version  int             `json:"version"`
	Messages *messageColumns `json:"messages,omitempty"`
	Pages    []PageRef       `json:"pages,omitempty"`
}

// folderPageV3 is the JSON of a version 3 tree's page blob.
type folderPageV3 struct {
	Page     int             `json:"page"` // the page format, 2
	Messages *messageColumns `json:"messages"`
}

// mtimeBase is what a version 3 tree stores a message's mtime relative
// to: the number the unique name starts with (at most 10 decimal digits,
// 0 if none), which Maildir writers make the delivery time in seconds, in
// nanoseconds. The stored difference is then the sub-second part, a few
// digits instead of 19. The arithmetic wraps (two's complement): any
// mtime round-trips.
func mtimeBase(unique string) int64 {
	var s uint64
	for i := 0; i < len(unique) && i < 10 && '0' <= unique[i] && unique[i] <= '9'; i++ {
		s = s*10 + uint64(unique[i]-'0')
	}
	return int64(s * 1e9)
}

// sizeBase is what a version 3 tree stores a message's size relative
// to: the number after the first ",S=" in its unique name (Maildir
// writers put the file size there), 0 when there is none or it has more
// than 18 digits. The stored difference is then 0.
func sizeBase(unique string) int64 {
	i := strings.Index(unique, ",S=")
	if i < 0 {
		return 0
	}
	var n int64
	for j, c := range []byte(unique[i+3:]) {
		if c < '0' || c > '9' {
			break
		}
		if j == 18 {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// maxDateDelta bounds a date stored as seconds from the mtime: 3,000
// years either way keeps every sum far from overflow.
const maxDateDelta = 3000 * 366 * 86400

// floorSec is the whole seconds of a Unix-nanosecond time, rounded down.
func floorSec(ns int64) int64 {
	s := ns / 1e9
	if ns%1e9 < 0 {
		s--
	}
	return s
}

// dateColumn is the "date" column: each date backups write (RFC 3339 in
// UTC, whole seconds, from the Date header) as its seconds from the
// message's mtime — the Date header is written seconds or minutes before
// the delivery, so a small number instead of 20 characters — and any
// other string as it is.
func dateColumn(msgs []Message) []json.RawMessage {
	return column(msgs, func(m *Message) json.RawMessage {
		if m.Date == "" {
			return json.RawMessage(`""`)
		}
		if t, err := time.Parse(time.RFC3339, m.Date); err == nil && t.UTC().Format(time.RFC3339) == m.Date {
			if d := t.Unix() - floorSec(m.MTime); -maxDateDelta <= d && d <= maxDateDelta {
				return strconv.AppendInt(nil, d, 10)
			}
		}
		raw, _ := marshalPlain(m.Date) // a string always marshals
		return raw
	}, func(r json.RawMessage) bool { return string(r) == `""` })
}

// decodeDate reads an element of the "date" column of a message whose
// mtime is mtime.
func decodeDate(raw json.RawMessage, mtime int64) (string, error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	d, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || d < -maxDateDelta || d > maxDateDelta {
		return "", fmt.Errorf("%.40q is neither a string nor seconds from the mtime", raw)
	}
	return time.Unix(floorSec(mtime)+d, 0).UTC().Format(time.RFC3339), nil
}

// column returns one value per message, or nil when every one is empty.
func column[T any](msgs []Message, get func(*Message) T, empty func(T) bool) []T {
	var col []T
	for i := range msgs {
		v := get(&msgs[i])
		if col == nil && !empty(v) {
			col = make([]T, 0, len(msgs))
			for j := 0; j < i; j++ {
				col = append(col, get(&msgs[j]))
			}
		}
		if col != nil {
			col = append(col, v)
		}
	}
	return col
}

func isEmpty[T comparable](v T) bool { var zero T; return v == zero }
func isNone[T any](v []T) bool       { return len(v) == 0 }

// encodeColumns turns msgs into columns, with wire twins for names that
// are not UTF-8 (rawnames.go).
func encodeColumns(msgs []Message) *messageColumns {
	c := &messageColumns{
		Unique:    make([]string, len(msgs)),
		Flags:     column(msgs, func(m *Message) string { return m.Flags }, isEmpty),
		MTime:     column(msgs, func(m *Message) int64 { return m.MTime - mtimeBase(m.Unique) }, isEmpty),
		Size:      column(msgs, func(m *Message) int64 { return m.Size - sizeBase(m.Unique) }, isEmpty),
		Blobs:     column(msgs, func(m *Message) []ID { return m.Blobs }, isNone),
		From:      column(msgs, func(m *Message) []string { return m.From }, isNone),
		To:        column(msgs, func(m *Message) []string { return m.To }, isNone),
		Cc:        column(msgs, func(m *Message) []string { return m.Cc }, isNone),
		Subject:   column(msgs, func(m *Message) string { return m.Subject }, isEmpty),
		Date:      dateColumn(msgs),
		MessageID: column(msgs, func(m *Message) string { return m.MessageID }, isEmpty),
	}
	put := func(m *map[int][]byte, i int, raw []byte) {
		if raw == nil {
			return
		}
		if *m == nil {
			*m = map[int][]byte{}
		}
		(*m)[i] = raw
	}
	for i := range msgs {
		m := &msgs[i]
		c.Unique[i] = m.Unique
		put(&c.UniqueRaw, i, rawOf(m.Unique))
		if m.New {
			c.New = append(c.New, i)
		}
		if m.Name != "" {
			if c.Name == nil {
				c.Name = map[int]string{}
			}
			c.Name[i] = m.Name
			put(&c.NameRaw, i, rawOf(m.Name))
		}
	}
	return c
}

// decodeColumns turns columns back into messages, with exact names.
func decodeColumns(c *messageColumns) ([]Message, error) {
	if c == nil {
		return nil, nil
	}
	n := len(c.Unique)
	// A column is absent (nil) or has n values; [] is n == 0's only.
	for _, l := range []struct {
		present bool
		n       int
	}{
		{c.Flags != nil, len(c.Flags)}, {c.MTime != nil, len(c.MTime)}, {c.Size != nil, len(c.Size)},
		{c.Blobs != nil, len(c.Blobs)}, {c.From != nil, len(c.From)}, {c.To != nil, len(c.To)},
		{c.Cc != nil, len(c.Cc)}, {c.Subject != nil, len(c.Subject)}, {c.Date != nil, len(c.Date)},
		{c.MessageID != nil, len(c.MessageID)},
	} {
		if l.present && l.n != n {
			return nil, fmt.Errorf("a column of %d values for %d messages", l.n, n)
		}
	}
	msgs := make([]Message, n)
	for i := range msgs {
		m := &msgs[i]
		m.Unique = c.Unique[i]
		if c.Flags != nil {
			m.Flags = c.Flags[i]
		}
		if c.Blobs != nil {
			m.Blobs = c.Blobs[i]
		}
		if m.Blobs == nil {
			// Never nil: a backup takes a message without blobs for one
			// still to read (an empty message has an empty list).
			m.Blobs = []ID{}
		}
		if c.From != nil {
			m.From = c.From[i]
		}
		if c.To != nil {
			m.To = c.To[i]
		}
		if c.Cc != nil {
			m.Cc = c.Cc[i]
		}
		if c.Subject != nil {
			m.Subject = c.Subject[i]
		}
		if c.MessageID != nil {
			m.MessageID = c.MessageID[i]
		}
	}
	for i, raw := range c.UniqueRaw {
		if i < 0 || i >= n || len(raw) == 0 {
			return nil, fmt.Errorf("unique_raw of message %d of %d", i, n)
		}
		msgs[i].Unique = string(raw)
	}
	// mtime after unique_raw: the base is the exact name's.
	if c.MTime != nil {
		for i := range msgs {
			msgs[i].MTime = c.MTime[i] + mtimeBase(msgs[i].Unique)
		}
	} else {
		for i := range msgs {
			msgs[i].MTime = mtimeBase(msgs[i].Unique)
		}
	}
	for i := range msgs {
		m := &msgs[i]
		m.Size = sizeBase(m.Unique)
		if c.Size != nil {
			m.Size += c.Size[i]
		}
		if m.Size < 0 {
			return nil, fmt.Errorf("message %d: size out of range", i)
		}
		if c.Date != nil {
			var err error
			if m.Date, err = decodeDate(c.Date[i], m.MTime); err != nil {
				return nil, fmt.Errorf("message %d: date: %v", i, err)
			}
		}
	}
	for k, i := range c.New {
		if i < 0 || i >= n || k > 0 && i <= c.New[k-1] {
			return nil, fmt.Errorf("new lists message %d (of %d) out of order", i, n)
		}
		msgs[i].New = true
	}
	for i, name := range c.Name {
		if i < 0 || i >= n || name == "" {
			return nil, fmt.Errorf("name %q of message %d of %d", name, i, n)
		}
		msgs[i].Name = name
	}
	for i, raw := range c.NameRaw {
		if _, ok := c.Name[i]; !ok || len(raw) == 0 {
			return nil, fmt.Errorf("name_raw of message %d without a name", i)
		}
		msgs[i].Name = string(raw)
	}
	return msgs, nil
}

// encodeTreeV3 is the plaintext of a version 3 tree holding msgs inline
// (refs nil) or listing the pages refs.
func encodeTreeV3(msgs []Message, refs []PageRef) ([]byte, error) {
	t := folderTreeV3{Version: 3}
	if len(msgs) > 0 {
		t.Messages = encodeColumns(msgs)
	}
	t.Pages = withRaw(refs, func(p *PageRef) bool { return rawOf(p.First) != nil }, func(p *PageRef) { p.FirstRaw = rawOf(p.First) })
	return marshalPlain(t)
}

// encodePageV3 is the plaintext of a version 3 page blob.
func encodePageV3(msgs []Message) ([]byte, error) {
	return marshalPlain(folderPageV3{Page: 2, Messages: encodeColumns(msgs)})
}

// marshalPlain is json.Marshal without its HTML escaping of '<', '>' and
// '&' (json.Encoder.SetEscapeHTML): every Message-ID and most addresses
// hold angle brackets, which json.Marshal writes as six-byte "\u003c" and
// "\u003e" escapes, and an escape sends the page reader (treefast.go) to
// encoding/json for that string. Both spellings are the same JSON string
// (RFC 8259 §7), so readers take trees of either.
func marshalPlain(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil // Encode ends with a newline
}
