package store

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// FuzzUIDList feeds arbitrary bytes to the UID list's parser as a folder's
// mailvault-uidlist (uidlist.go): it never panics, a log it reads has
// every MODSEQ at most HIGHESTMODSEQ and at most 2^63-1, and a rewrite of
// what it read reads back the same (UIDs, MODSEQs, HIGHESTMODSEQ; the
// expunges become the floor E).
func FuzzUIDList(f *testing.F) {
	for _, s := range []string{
		"mailvault-uidlist 1 V7 N4 R1\nA 1 a\nA 2 b\nX 1\nR 2\n",
		"mailvault-uidlist 1 V7 N4 R1 H9 E3\nA 1 a\nM 1 5 FS\nA 2 b\nM 2 9\nX 3 8\nH 1033\n",
		"mailvault-uidlist 1 V7 N4 R1 H9223372036854775807\nA 1 a\nM 1 9223372036854775808 S\n",
		"mailvault-uidlist 1 V7 N1 H18446744073709551615\n",
		"mailvault-uidlist 1 V4294967296 N1\n",
		"mailvault-uidlist 1 V1 N2\nA 1 a b c\nM 1\nM 1 x\nX\nX 0 5\nA 1 a\nM 1 3 S",
		"garbage",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		x := &uidIndex{byUID: map[uint32]string{}, byUnique: map[string]uint32{}, mods: map[uint32]modRec{}}
		if !x.parse(data) {
			return
		}
		for uid, r := range x.mods {
			if _, ok := x.byUID[uid]; !ok {
				t.Fatalf("MODSEQ for UID %d, which is not live", uid)
			}
			if r.modseq > x.highest || r.modseq > MaxModSeq {
				t.Fatalf("UID %d: MODSEQ %d, highest %d", uid, r.modseq, x.highest)
			}
		}
		if x.highest > MaxModSeq {
			t.Fatalf("highest %d", x.highest)
		}
		x.path = filepath.Join(t.TempDir(), indexName)
		x.log = slog.New(slog.DiscardHandler)
		if err := x.rewrite(osFS{}); err != nil {
			t.Fatal(err)
		}
		x.f.Close()
		back, err := os.ReadFile(x.path)
		if err != nil {
			t.Fatal(err)
		}
		y := &uidIndex{byUID: map[uint32]string{}, byUnique: map[string]uint32{}, mods: map[uint32]modRec{}}
		if !y.parse(back) {
			t.Fatalf("rewrite of %q unreadable: %q", data, back)
		}
		if fmt.Sprint(y.byUID, y.mods, y.highest, y.next) != fmt.Sprint(x.byUID, x.mods, x.highest, x.next) || y.expFloor != x.highest {
			t.Fatalf("rewrite of %q read back differently:\n%q", data, back)
		}
	})
}
