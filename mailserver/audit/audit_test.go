package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range n {
		ev := Event{Kind: KindLogin, User: "alice@example.test", IP: "192.0.2.1", Protocol: "submission", Success: i%2 == 0}
		if err := l.Record(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func lines(t *testing.T, path string) [][]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func TestVerifyIntact(t *testing.T) {
	path := writeLog(t, 5)
	rep, err := Verify(path)
	if err != nil || rep.Lines != 5 || rep.Head == zeroHash {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	// A second writer (another process in real life) continues the chain.
	l, _ := Open(path)
	if err := l.Record(t.Context(), Event{Kind: KindAdmin, Action: "user.add", User: "bob@example.test", Protocol: "cli", Success: true}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep, err := Verify(path); err != nil || rep.Lines != 6 {
		t.Fatalf("after reopen: %+v, %v", rep, err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tamper   func(ls [][]byte) [][]byte
		wantLine int
	}{
		{"edit field", func(ls [][]byte) [][]byte {
			ls[2] = bytes.Replace(ls[2], []byte(`"success":true`), []byte(`"success":false`), 1)
			return ls
		}, 3},
		{"edit user", func(ls [][]byte) [][]byte {
			ls[1] = bytes.Replace(ls[1], []byte("alice"), []byte("mallo"), 1)
			return ls
		}, 2},
		{"remove middle line", func(ls [][]byte) [][]byte {
			return append(ls[:1:1], ls[2:]...)
		}, 2},
		{"remove first line", func(ls [][]byte) [][]byte { return ls[1:] }, 1},
		{"swap lines", func(ls [][]byte) [][]byte {
			ls[1], ls[2] = ls[2], ls[1]
			return ls
		}, 2},
		{"duplicate line", func(ls [][]byte) [][]byte {
			return append(ls[:2:2], append([][]byte{ls[1]}, ls[2:]...)...)
		}, 3},
		{"rehash edited line", func(ls [][]byte) [][]byte {
			// An attacker who recomputes the edited line's own hash still
			// breaks the next line's prev.
			var rec Record
			if err := jsonUnmarshal(ls[1], &rec); err != nil {
				panic(err)
			}
			rec.User = "mallory@example.test"
			b, _ := encode(rec)
			ls[1] = b
			return ls
		}, 3},
		{"torn last line", func(ls [][]byte) [][]byte {
			ls[4] = ls[4][:10]
			return ls
		}, 5},
		{"garbage", func(ls [][]byte) [][]byte {
			ls[3] = []byte("not json\n")
			return ls
		}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLog(t, 5)
			ls := tc.tamper(lines(t, path))
			if err := os.WriteFile(path, bytes.Join(ls, nil), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(path)
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Line != tc.wantLine {
				t.Fatalf("Verify = %v, want error at line %d", err, tc.wantLine)
			}
		})
	}
}

func TestTruncationDetectedByHead(t *testing.T) {
	path := writeLog(t, 4)
	full, _ := Verify(path)
	ls := lines(t, path)
	os.WriteFile(path, bytes.Join(ls[:3], nil), 0o600)
	short, err := Verify(path)
	if err != nil || short.Head == full.Head {
		t.Fatalf("truncated log: %+v %v", short, err)
	}
}

func TestAppendAfterTornTail(t *testing.T) {
	path := writeLog(t, 3)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":4,"time":"2026-01-01T00:00:00Z","kind":"login","user":"a-very-long-torn-line-that-never-finished`)
	f.Close()
	l, _ := Open(path)
	if err := l.Record(t.Context(), Event{Kind: KindLogin, User: strings.Repeat("x", 5000)}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep, err := Verify(path); err != nil || rep.Lines != 4 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
