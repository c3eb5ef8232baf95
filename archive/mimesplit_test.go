package archive

import (
	"bytes"
	"strings"
	"testing"
)

func mimeMessageBody(boundary, attachment string) string {
	return "This is a multi-part message.\r\n" +
		"--" + boundary + "\r\nContent-Type: text/plain\r\n\r\nHello, see attached.\r\n" +
		"--" + boundary + "\r\nContent-Type: application/pdf; name=\"q.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		attachment + "\r\n" +
		"--" + boundary + "--\r\nepilogue\r\n"
}

// TestSplitBodyIsolatesAttachments: the same attachment in two messages
// with different boundaries and surrounding text becomes the same piece.
func TestSplitBodyIsolatesAttachments(t *testing.T) {
	att := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkwYWJjZGVmZ2hpamts\r\n", 1000)
	a := splitBody([]byte(mimeMessageBody("aaa", att)), "aaa")
	b := splitBody([]byte(strings.Replace(mimeMessageBody("=_other_boundary_", att), "Hello", "Fwd: hello", 1)), "=_other_boundary_")
	for _, pieces := range [][][]byte{a, b} {
		if len(pieces) != 3 {
			t.Fatalf("want 3 pieces (before, attachment, after), got %d", len(pieces))
		}
	}
	if string(a[1]) != att || !bytes.Equal(a[1], b[1]) {
		t.Fatalf("attachment pieces differ or are not the attachment: %d vs %d bytes", len(a[1]), len(b[1]))
	}
}

func TestSplitBodyKeepsSmallMessagesWhole(t *testing.T) {
	for _, tc := range []struct {
		name, body, boundary string
	}{
		{"no boundary", strings.Repeat("x", 100<<10), ""},
		{"small parts", mimeMessageBody("b", "c21hbGw="), "b"},
		{"boundary not found", strings.Repeat("y", 100<<10), "zzz"},
		{"empty", "", "b"},
	} {
		got := splitBody([]byte(tc.body), tc.boundary)
		if len(tc.body) == 0 {
			if len(got) != 0 {
				t.Errorf("%s: %d pieces for an empty body", tc.name, len(got))
			}
			continue
		}
		if len(got) != 1 {
			t.Errorf("%s: want 1 piece, got %d", tc.name, len(got))
		}
	}
}

// FuzzSplitBody: the pieces always put the body back together, none is
// empty, and no input makes it panic.
func FuzzSplitBody(f *testing.F) {
	att := strings.Repeat("QUJD\r\n", 6000)
	f.Add([]byte(mimeMessageBody("b", att)), "b")
	f.Add([]byte("--b\r\n\r\n"+att+"\r\n--b\r\n"), "b")
	f.Add([]byte("--b\n"+att+"--b--"), "b")
	f.Add([]byte(strings.Repeat("--b\r\n", 20000)), "b")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		pieces := splitBody(body, boundary)
		var joined []byte
		for _, p := range pieces {
			if len(p) == 0 {
				t.Fatal("empty piece")
			}
			joined = append(joined, p...)
		}
		if !bytes.Equal(joined, body) {
			t.Fatal("pieces do not reassemble the body")
		}
	})
}
