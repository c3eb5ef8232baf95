package archive

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestFastReaderTakesBackupPages: the pages and inline trees backups write
// — nil address lists (null), odd names, escaped header text, dates of
// both kinds — are read by the hand-written reader, not handed to
// encoding/json, and decode to what encoding/json gives.
func TestFastReaderTakesBackupPages(t *testing.T) {
	msgs := []Message{
		{Unique: "1772445605.M1P2Q3.imap1,S=1234,W=1260", Flags: "FS", MTime: 1772445605e9 + 17, Size: 1234, Blobs: []ID{seedID(1), seedID(2)},
			From: []string{"Alice <alice@example.org>"}, To: []string{"bob@example.com", "é@x"}, Subject: "a & b \"c\"\t\xff", Date: "2026-03-02T10:00:00Z", MessageID: "<a@b>"},
		{Unique: "1772445606.M1P2Q4.imap1\xff", New: true, Size: 10, Blobs: []ID{seedID(3)}, MTime: -5, Date: "Mon, 2 Mar 2026"},
		{Unique: "x", New: true, Flags: "S", Name: "x!2,S\xfe", Cc: []string{"c@d"}, Blobs: []ID{}},
		{Unique: "1772445607.M9.h", Flags: "", Blobs: []ID{seedID(4)}, To: []string{}},
	}
	page, err := encodePageV3(msgs)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := fastPageV3(page)
	if !ok {
		t.Fatalf("fast reader refused a page backups write: %s", page)
	}
	var w folderPageV3
	if err := json.Unmarshal(page, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&c, w.Messages) {
		t.Fatalf("fast reader gives\n%#v\nencoding/json\n%#v", c, *w.Messages)
	}
	got, err := decodeFolderPage(page, PageRef{Messages: len(msgs), First: msgs[0].Unique})
	if err != nil {
		t.Fatal(err)
	}
	want, err := decodeColumns(w.Messages)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeMessages(want); err != nil {
		t.Fatal(err)
	}
	if a, b := mustJSON(t, got), mustJSON(t, want); string(a) != string(b) {
		t.Fatalf("page reads back as\n%s\nby encoding/json\n%s", a, b)
	}
	if got[1].Unique != msgs[1].Unique || got[2].Name != msgs[2].Name {
		t.Fatalf("names read back as %q, %q", got[1].Unique, got[2].Name)
	}
	cols, err := json.Marshal(encodeColumns(msgs))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fastColumns(cols); !ok {
		t.Fatalf("fast reader refused an inline tree's columns: %s", cols)
	}
	// Appending to one message's list must not write into the next's
	// (the lists of a column share one backing array).
	got[0].Blobs = append(got[0].Blobs, seedID(9))
	if got[1].Blobs[0] != seedID(3) {
		t.Fatal("appending to a message's blobs changed the next message's")
	}
}
