package archive

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
)

// wrapB64 is data in base64, cut into lines of n characters ended by eol,
// with trailing more line endings after the last line's.
func wrapB64(data []byte, n int, eol string, trailing int) string {
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(enc) > n {
		b.WriteString(enc[:n] + eol)
		enc = enc[n:]
	}
	b.WriteString(enc)
	b.WriteString(strings.Repeat(eol, trailing))
	return b.String()
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// TestB64Form takes the texts the form must keep exactly and the ugly ones
// it must refuse: what it accepts must come back byte for byte.
func TestB64Form(t *testing.T) {
	data := randomBytes(3000, 1)
	good := func(n int, eol string, trailing int) string { return wrapB64(data, n, eol, trailing) }
	// Lengths whose base64 ends in no, one or two "=".
	for _, extra := range []int{0, 1, 2} {
		for _, n := range []int{76, 4, 8, 12, 1 << 20} {
			good := wrapB64(data[:len(data)-extra], n, "\r\n", 1)
			if _, ok := appendB64Form(nil, []byte(good)); !ok {
				t.Errorf("extra %d, lines of %d: refused", extra, n)
			}
		}
	}
	at := func(s string, i int, repl string) string { return s[:i] + repl + s[i+1:] }
	lf := good(76, "\n", 1)
	firstEOL := strings.IndexByte(lf, '\n')
	for _, tc := range []struct {
		name string
		text string
		ok   bool
	}{
		{"76 LF", good(76, "\n", 0), true},
		{"76 LF ending", lf, true},
		{"76 CRLF ending", good(76, "\r\n", 1), true},
		{"76 CRLF two endings", good(76, "\r\n", 2), true},
		{"64", good(64, "\n", 1), true},
		{"72 CRLF", good(72, "\r\n", 0), true},
		{"one line", good(1<<20, "\n", 0), true},
		{"one line ending", good(1<<20, "\r\n", 1), true},
		{"an empty line at the end", good(76, "\n", 0) + "\n\n", true},
		{"a line of 77", strings.Replace(lf, "\n", "A\n", 1), false},
		{"lines of 77", good(77, "\n", 1), false},
		{"lines of 5", good(5, "\n", 1), false},
		{"a short line", lf[:firstEOL-1] + lf[firstEOL:], false},
		{"a stray space", at(lf, 100, " "), false},
		{"a NUL", at(lf, 100, "\x00"), false},
		{"a CR inside a line", at(lf, 100, "\r"), false},
		{"an LF inside a line", at(lf, 100, "\n"), false},
		{"mixed endings", strings.Replace(good(76, "\r\n", 1), "\r\n", "\n", 1), false},
		{"an empty line inside", strings.Replace(lf, "\n", "\n\n", 1), false},
		{"leading line ending", "\n" + lf, false},
		{"CR alone at the end", lf + "\r", false},
		{"URL alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(lf), false},
		{"padding inside", lf[:74] + "==" + lf[76:], false},
		{"padding on a middle line's end", at(at(lf, firstEOL-1, "="), firstEOL-2, "="), false},
		{"a last line of 1", strings.TrimSuffix(lf, "\n")[:len(lf)-4] + "\n", false},
		{"a last line of 3", strings.TrimSuffix(lf, "\n")[:len(lf)-2] + "\n", false},
		{"no padding", strings.TrimRight(wrapB64(data[:len(data)-1], 76, "\n", 0), "="), false},
		{"text", strings.Repeat("Quarterly figures attached, see the third column.\n", 20), false},
	} {
		form, ok := appendB64Form(nil, []byte(tc.text))
		if ok != tc.ok {
			t.Errorf("%s: accepted %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			if len(form) != 0 {
				t.Errorf("%s: refused but appended %d bytes", tc.name, len(form))
			}
			continue
		}
		back, err := appendB64Text(nil, form, len(tc.text))
		if err != nil || string(back) != tc.text {
			t.Errorf("%s: round trip: %v, equal %v", tc.name, err, string(back) == tc.text)
		}
		if max := len(data) + b64FormMaxHeader; len(form) > max {
			t.Errorf("%s: form of %d bytes, want at most %d", tc.name, len(form), max)
		}
	}
	// Non-zero bits in the last quantum's unused part: the decoder would
	// give the same bytes as for the canonical text, which is another.
	text := []byte(wrapB64(data[:len(data)-1], 76, "\n", 1))
	i := bytes.IndexByte(text, '=') - 1
	text[i] = base64Next(text[i])
	if _, ok := appendB64Form(nil, text); ok {
		t.Error("non-zero padding bits accepted")
	}
}

// base64Next is the alphabet's next letter after c (one more in the
// lowest of its six bits).
func base64Next(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	return alphabet[(strings.IndexByte(alphabet, c)+1)%64]
}

// TestB64TextRefusesBadForms checks that a damaged form header is an error
// and not a text.
func TestB64TextRefusesBadForms(t *testing.T) {
	for _, form := range [][]byte{
		nil,
		{0, 76},
		{2, 76, 1, 'x'},    // unknown flag
		{0, 0, 1, 'x'},     // line length 0
		{0, 75, 1, 'x'},    // line length not a multiple of 4
		{0, 76, 1},         // no data
		{0, 0x80, 0x80, 1}, // unterminated uvarint
		{0, 76, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'}, // 2^32-1 line endings: longer than a blob
		{0, 76, 2, 'x'}, // 6 bytes, not the 1000 wanted
	} {
		if _, err := appendB64Text(nil, form, 1000); err == nil {
			t.Errorf("form %q: no error", form)
		}
	}
}

// FuzzB64Form: whatever the input, a form it is accepted in gives it back
// byte for byte, and any bytes read as a form give an error or a text
// without panicking.
func FuzzB64Form(f *testing.F) {
	data := randomBytes(400, 2)
	for _, s := range []string{
		wrapB64(data, 76, "\r\n", 1),
		wrapB64(data, 76, "\n", 0),
		wrapB64(data[:398], 64, "\n", 2),
		wrapB64(data[:399], 72, "\r\n", 0),
		wrapB64(data, 1000, "\n", 1),
		strings.Replace(wrapB64(data, 76, "\n", 1), "A", " ", 1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if form, ok := appendB64Form([]byte("x"), in); ok {
			back, err := appendB64Text([]byte("y"), form[1:], len(in))
			if err != nil || !bytes.Equal(back[1:], in) || back[0] != 'y' {
				t.Fatalf("accepted, round trip: %v\n in %q\nout %q", err, in, back)
			}
		} else if string(form) != "x" {
			t.Fatalf("refused, dst changed to %q", form)
		}
		if f, err := parseB64Form(in); err == nil && f.textLen <= 1<<20 {
			text, err := appendB64Text(nil, in, f.textLen)
			if err != nil {
				t.Fatalf("parsed form %q: %v", in, err)
			}
			form, ok := appendB64Form(nil, text)
			if len(text) >= b64FormMin && !ok {
				// Every text a form stands for is base64 in a
				// layout the form keeps.
				t.Fatalf("text of form %q not accepted back: %q", in, text)
			}
			if ok {
				if back, err := appendB64Text(nil, form, len(text)); err != nil || !bytes.Equal(back, text) {
					t.Fatalf("second round trip: %v", err)
				}
			}
		}
	})
}

// attachmentText is corpus-like attachment text: half random bytes (a
// photo), half CSV, in 76-column LF lines.
func attachmentText(kind string, n int) []byte {
	var data []byte
	switch kind {
	case "photo":
		data = randomBytes(n, 3)
	case "csv":
		rng := rand.New(rand.NewPCG(1, 2))
		var b strings.Builder
		for b.Len() < n {
			b.WriteString(strings.Join([]string{"2025-03-14", "ACME-" + string(rune('A'+rng.IntN(26))), "invoice", "", ""}, ";"))
			for range 4 {
				b.WriteString(";")
				b.WriteString(strings.Repeat("7", 1+rng.IntN(6)))
			}
			b.WriteString("\n")
		}
		data = []byte(b.String()[:n])
	}
	return []byte(wrapB64(data, 76, "\n", 1))
}

func BenchmarkB64Form(b *testing.B) {
	for _, kind := range []string{"photo", "csv"} {
		text := attachmentText(kind, 400<<10)
		form, ok := appendB64Form(nil, text)
		if !ok {
			b.Fatal("refused")
		}
		scratch := make([]byte, 0, len(text))
		b.Run("encode/"+kind, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			dst := make([]byte, 0, len(text))
			for b.Loop() {
				appendB64Form(dst[:0], text)
			}
		})
		b.Run("decode/"+kind, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				appendB64Text(scratch[:0], form, len(text))
			}
		})
	}
}
