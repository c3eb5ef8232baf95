package archive

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"filippo.io/age"
)

// countingIdentity counts the unwraps that reach an identity.
type countingIdentity struct {
	id age.Identity
	n  int
}

func (c *countingIdentity) Unwrap(s []*age.Stanza) ([]byte, error) {
	c.n++
	return c.id.Unwrap(s)
}

// TestUnwrapCache: a file's header is unwrapped once however often the
// file is decrypted, another file's header is unwrapped on its own, and a
// file for another identity still fails.
func TestUnwrapCache(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	seal := func(rcpt age.Recipient, plain string) []byte {
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(plain))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b := seal(id.Recipient(), "a"), seal(id.Recipient(), "b")
	inner := &countingIdentity{id: id}
	c := newUnwrapCache(inner)
	open := func(f []byte) (string, error) {
		ra, n, err := age.DecryptReaderAt(bytes.NewReader(f), int64(len(f)), c)
		if err != nil {
			return "", err
		}
		p := make([]byte, n)
		if _, err := ra.ReadAt(p, 0); err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return string(p), nil
	}
	for range 3 {
		for _, f := range []struct {
			file []byte
			want string
		}{{a, "a"}, {b, "b"}} {
			if got, err := open(f.file); err != nil || got != f.want {
				t.Fatalf("got %q, %v; want %q", got, err, f.want)
			}
		}
	}
	if inner.n != 2 {
		t.Errorf("%d unwraps for two files read three times each, want 2", inner.n)
	}
	other, _ := age.GenerateX25519Identity()
	var none *age.NoIdentityMatchError
	if _, err := open(seal(other.Recipient(), "c")); !errors.As(err, &none) {
		t.Errorf("a file for another identity: %v", err)
	}
}
