package archive

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// pagedMessages is n messages of one folder, sorted, with Message-IDs in
// angle brackets as backups record them.
func pagedMessages(n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Unique: fmt.Sprintf("1772445605.M%05dP1.host,S=100", i), Flags: "S", MTime: 1772445605e9, Size: 100,
			Blobs: []ID{seedID(byte(i))}, From: []string{"Bob <bob@example.org>"}, MessageID: fmt.Sprintf("<n%d@example.org>", i)}
	}
	return msgs
}

// TestPagesWithoutHTMLEscapes: pages are written with '<' and '>' as they
// are (the fast reader's path), and pages as earlier releases wrote them,
// with "\u003c" escapes, read back the same.
func TestPagesWithoutHTMLEscapes(t *testing.T) {
	msgs := pagedMessages(3)
	page, err := encodePageV3(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(page), `\u003c`) || !strings.Contains(string(page), `"<n0@example.org>"`) {
		t.Fatalf("page escapes angle brackets: %s", page)
	}
	old, err := json.Marshal(folderPageV3{Page: 2, Messages: encodeColumns(msgs)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(old), `\u003c`) {
		t.Fatalf("json.Marshal no longer escapes: %s", old)
	}
	ref := PageRef{Messages: len(msgs), First: msgs[0].Unique}
	got, err := decodeFolderPage(page, ref)
	if err != nil {
		t.Fatal(err)
	}
	was, err := decodeFolderPage(old, ref)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustJSON(t, got), mustJSON(t, was); string(a) != string(b) {
		t.Fatalf("page reads back as\n%s\nthe escaped form as\n%s", a, b)
	}
	if got[2].MessageID != "<n2@example.org>" {
		t.Fatalf("Message-ID reads back as %q", got[2].MessageID)
	}
}
