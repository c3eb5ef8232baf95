package archive

import (
	"context"
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

// TestLoadFolderTreeReadsPagesTogether: the pages of a folder stored in
// one pack are fetched in one request or two (the age header, the chunks
// holding them), where reading them one by one cost about four requests
// a page (the pack's size, its header, its final chunk, the page's
// chunk), and come back in the tree's order.
func TestLoadFolderTreeReadsPagesTogether(t *testing.T) {
	r, be := memRepo(t)
	msgs := pagedMessages(3000)
	save := func(ctx context.Context, raw []byte) (ID, error) {
		id, _, err := r.SaveBlob(ctx, TreeBlob, raw)
		return id, err
	}
	id, err := saveFolderTree(t.Context(), msgs, folderTreeVersion, save)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	be.take()
	before := r.TreeBlobsRead()
	tree, err := r.LoadFolderTree(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	reads, _ := be.take()
	if len(tree.Pages) < 10 {
		t.Fatalf("%d pages; the test wants a folder of many", len(tree.Pages))
	}
	if got := r.TreeBlobsRead() - before; got != int64(len(tree.Pages))+1 {
		t.Errorf("TreeBlobsRead counts %d blobs for a tree and %d pages", got, len(tree.Pages))
	}
	// The tree blob through LoadBlob (4 requests), then the pages.
	if reads > 6 {
		t.Errorf("%d pack requests to read a tree of %d pages in one pack", reads, len(tree.Pages))
	}
	if len(tree.Messages) != len(msgs) {
		t.Fatalf("%d messages read back, want %d", len(tree.Messages), len(msgs))
	}
	for i, m := range tree.Messages {
		if m.Unique != msgs[i].Unique || m.MessageID != msgs[i].MessageID || m.From[0] != msgs[i].From[0] {
			t.Fatalf("message %d reads back as %q %q, want %q %q", i, m.Unique, m.MessageID, msgs[i].Unique, msgs[i].MessageID)
		}
	}
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
