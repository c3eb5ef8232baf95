package corpus

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

type attKind int

const (
	attJPEG attKind = iota // random bytes: incompressible, like real photos
	attPDF                 // text objects mixed with binary streams
	attCSV                 // highly compressible tables
	attText                // log-like text
)

func (k attKind) mimeType() string {
	return [...]string{"image/jpeg", "application/pdf", "text/csv", "text/plain"}[k]
}

// attachment describes attachment content by its seed rather than holding
// it, so that the planner decides sizes (and hence file names) without
// producing megabytes of data.
type attachment struct {
	kind attKind
	seed uint64
	raw  int // decoded size in bytes
	name string
}

// b64Line is the number of raw bytes per 76-character base64 line.
const b64Line = 57

func (a *attachment) encodedLines() int64 { return int64((a.raw + b64Line - 1) / b64Line) }

func (a *attachment) encodedLen() int64 {
	full, rem := a.raw/b64Line, a.raw%b64Line
	n := int64(full) * 77
	if rem > 0 {
		n += int64(base64.StdEncoding.EncodedLen(rem)) + 1
	}
	return n
}

func (c *composer) newAttachment() *attachment {
	r := c.r
	// Between 80 KB and 3 MB, skewed to the small end (log of the size
	// goes with the square of a uniform draw): many documents and photos
	// of a few hundred KB, a few big ones. Mean about 400 KB.
	lo, hi := math.Log(80e3), math.Log(3e6)
	u := r.Float64()
	a := &attachment{seed: r.Uint64(), raw: int(math.Exp(lo + u*u*(hi-lo)))}
	switch x := r.IntN(100); {
	case x < 40:
		a.kind, a.name = attJPEG, fmt.Sprintf("IMG_%04d.jpg", r.IntN(10000))
	case x < 65:
		a.kind, a.name = attPDF, fmt.Sprintf("%s-%d.pdf", []string{"report", "invoice", "contract", "slides"}[r.IntN(4)], r.IntN(1000))
	case x < 85:
		a.kind, a.name = attCSV, fmt.Sprintf("export-%d.csv", r.IntN(1000))
	default:
		a.kind, a.name = attText, fmt.Sprintf("server-%d.log", r.IntN(100))
	}
	return a
}

// appendEncoded appends the attachment as base64 in 76-character lines,
// each ending in LF, reusing raw as scratch space.
func (a *attachment) appendEncoded(dst, raw []byte) ([]byte, []byte) {
	raw = a.content(raw[:0])
	n := a.encodedLen()
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	out := dst[start:]
	for len(raw) > 0 {
		k := min(b64Line, len(raw))
		w := base64.StdEncoding.EncodedLen(k)
		base64.StdEncoding.Encode(out, raw[:k])
		out[w] = '\n'
		out, raw = out[w+1:], raw[k:]
	}
	return dst, raw[:0]
}

// content produces the decoded attachment bytes.
func (a *attachment) content(buf []byte) []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], a.seed)
	binary.LittleEndian.PutUint64(seed[8:], uint64(a.kind))
	cc := rand.NewChaCha8(seed)
	r := rand.New(rand.NewPCG(a.seed, uint64(a.kind)))
	switch a.kind {
	case attJPEG:
		buf = append(buf, 0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x48, 0x00, 0x48, 0x00, 0x00)
		buf = appendRandom(buf, cc, a.raw-len(buf))
	case attPDF:
		buf = append(buf, "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"...)
		for obj := 1; len(buf) < a.raw; obj++ {
			if r.IntN(3) == 0 {
				// A compressed (Flate) stream: incompressible.
				n := 2000 + r.IntN(30000)
				buf = fmt.Appendf(buf, "%d 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n", obj, n)
				buf = appendRandom(buf, cc, n)
				buf = append(buf, "\nendstream\nendobj\n"...)
				continue
			}
			buf = fmt.Appendf(buf, "%d 0 obj\n<< /Type /Page /Parent 2 0 R /Contents %d 0 R >>\nstream\nBT /F1 11 Tf\n", obj, obj+1)
			for y := 760; y > 60; y -= 14 {
				buf = fmt.Appendf(buf, "72 %d Td (", y)
				for range 6 + r.IntN(8) {
					buf = append(buf, wordList[r.IntN(len(wordList))]...)
					buf = append(buf, ' ')
				}
				buf = append(buf, ") Tj\n"...)
			}
			buf = append(buf, "ET\nendstream\nendobj\n"...)
		}
	case attCSV:
		buf = append(buf, "date,account,item,quantity,unit_price,status,comment\n"...)
		for len(buf) < a.raw {
			buf = fmt.Appendf(buf, "2024-%02d-%02d,ACC-%05d,", 1+r.IntN(12), 1+r.IntN(28), r.IntN(5000))
			buf = append(buf, wordList[r.IntN(len(wordList))]...)
			buf = append(buf, ',')
			buf = strconv.AppendInt(buf, int64(r.IntN(500)), 10)
			buf = append(buf, ',')
			buf = strconv.AppendFloat(buf, float64(r.IntN(100000))/100, 'f', 2, 64)
			buf = append(buf, []string{",ok,", ",pending,", ",shipped,", ",cancelled,"}[r.IntN(4)]...)
			buf = append(buf, wordList[r.IntN(len(wordList))]...)
			buf = append(buf, '\n')
		}
	case attText:
		for len(buf) < a.raw {
			buf = fmt.Appendf(buf, "2024-%02d-%02dT%02d:%02d:%02d.%03dZ %s [%s] ", 1+r.IntN(12), 1+r.IntN(28),
				r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1000),
				[]string{"INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"}[r.IntN(6)],
				[]string{"backup", "smtpd", "imap", "lmtp", "auth"}[r.IntN(5)])
			for range 4 + r.IntN(10) {
				buf = append(buf, wordList[r.IntN(len(wordList))]...)
				buf = append(buf, ' ')
			}
			buf = strconv.AppendInt(buf, int64(r.Uint32()), 16)
			buf = append(buf, '\n')
		}
	}
	return buf[:a.raw]
}

// appendRandom appends n bytes from the ChaCha8 stream, which produces
// gigabytes per second, unlike per-byte calls to a generator.
func appendRandom(buf []byte, cc *rand.ChaCha8, n int) []byte {
	if n <= 0 {
		return buf
	}
	start := len(buf)
	buf = append(buf, make([]byte, n)...)
	_, _ = cc.Read(buf[start:]) // ChaCha8.Read never fails
	return buf
}
