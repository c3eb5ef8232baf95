package archive_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/cache"
)

// eraseFixture is a repository with two snapshots of a corpus and three
// hand-written messages: the victim (alice's, its header, text and
// attachment used by no other message), the sharer (bob's, whose
// attachment carol's keeper message has too) and the keeper.
type eraseFixture struct {
	tr  *testRepo
	src string
	// Needles are bytes only the named message holds, as the packs
	// store them (the attachment decoded, in the base64 form).
	victim, sharer [][]byte
	shared         []byte // the attachment both sharer and keeper hold
}

const (
	victimPath = "erase.test/alice/Maildir/cur/1700000001.M1P1Q1.host:2,S"
	sharerPath = "erase.test/bob/Maildir/cur/1700000002.M1P1Q1.host:2,S"
	keeperPath = "erase.test/carol/Maildir/cur/1700000003.M1P1Q1.host:2,S"
)

func newEraseFixture(t *testing.T) *eraseFixture {
	t.Helper()
	f := &eraseFixture{tr: newTestRepo(t, 1<<20), src: genCorpus(t, 21, 1.5e6)}
	random := func(seed byte, n int) []byte {
		b := make([]byte, n)
		rand.NewChaCha8([32]byte{seed}).Read(b)
		return b
	}
	message := func(header, text string, attachment []byte) string {
		enc := base64.StdEncoding.EncodeToString(attachment)
		var lines strings.Builder
		for len(enc) > 76 {
			lines.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		return header + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
			"--b1\r\nContent-Type: text/plain\r\n\r\n" + strings.Repeat(text+"\r\n", 100) +
			"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines.String() + enc + "\r\n--b1--\r\n"
	}
	write := func(rel, content string) {
		p := filepath.Join(f.src, filepath.FromSlash(rel))
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(filepath.Dir(filepath.Dir(p)), sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	victimAtt, sharedAtt := random(1, 40000), random(2, 40000)
	write(victimPath, message("X-Erase-Marker: victim-header-7Q\r\nFrom: eve@erase.test\r\nTo: alice@erase.test\r\nSubject: victim subject 7Q\r\nMessage-ID: <victim-7Q@erase.test>\r\n",
		"victim body text 7Q, which must leave every pack", victimAtt))
	write(sharerPath, message("From: eve@erase.test\r\nTo: bob@erase.test\r\nSubject: sharer subject 9Z\r\nMessage-ID: <sharer-9Z@erase.test>\r\n",
		"sharer body text 9Z, which must leave every pack", sharedAtt))
	write(keeperPath, message("From: eve@erase.test\r\nTo: carol@erase.test\r\nSubject: keeper\r\nMessage-ID: <keeper@erase.test>\r\n",
		"keeper body text, which stays", sharedAtt))
	f.victim = [][]byte{[]byte("victim-header-7Q"), []byte("victim body text 7Q"), []byte("victim-7Q@erase.test"), []byte("victim subject 7Q"), victimAtt[20000:20064]}
	f.sharer = [][]byte{[]byte("sharer body text 9Z"), []byte("sharer-9Z@erase.test"), []byte("sharer subject 9Z")}
	f.shared = sharedAtt[20000:20064]

	r := f.tr.open(t)
	runBackup(t, r, f.src)
	// A second snapshot in which alice's INBOX (the victim's) has changed.
	write("erase.test/alice/Maildir/cur/1700000004.M1P1Q1.host:2,S", "From: x@erase.test\r\nMessage-ID: <later@erase.test>\r\n\r\nlater\r\n")
	r = f.tr.open(t)
	runBackup(t, r, f.src)
	return f
}

// packPlaintexts decrypts every pack with the stock age CLI and unpacks
// it (docs/FORMAT.md "Packs") with the zstd CLI, no mailvault code
// involved: per pack, its plaintext followed by every zstd blob
// decompressed, so that a search finds a blob's bytes however stored.
func packPlaintexts(t *testing.T, tr *testRepo) map[string][]byte {
	t.Helper()
	ageBin, zstdBin := requireTool(t, "age"), requireTool(t, "zstd")
	run := func(stdin []byte, name string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), name, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
		}
		return out
	}
	dir := t.TempDir()
	admin := filepath.Join(dir, "admin.txt")
	if err := os.WriteFile(admin, []byte(tr.id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(tr.dir, "keys", "*"))
	keys = slices.DeleteFunc(keys, func(k string) bool { return strings.HasSuffix(k, ".info") })
	var key struct {
		Secrets struct {
			DataIdentity string `json:"data_identity"`
		} `json:"secrets"`
	}
	if err := json.Unmarshal(run(nil, ageBin, "-d", "-i", admin, keys[0]), &key); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(data, []byte(key.Secrets.DataIdentity+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for name := range tr.packFiles(t) {
		plain := run(nil, ageBin, "-d", "-i", data, tr.packPath(name))
		var frames []byte
		for _, b := range packEntries(t, name, plain) {
			if b.compression&1 != 0 {
				frames = append(frames, plain[b.offset:b.offset+b.length]...)
			}
		}
		if len(frames) > 0 {
			plain = append(plain, run(frames, zstdBin, "-d", "-c")...)
		}
		out[name] = plain
	}
	return out
}

type packEntry struct{ offset, length, compression int }

// packEntries parses a format 2 or 3 pack's header.
func packEntries(t *testing.T, name string, plain []byte) []packEntry {
	t.Helper()
	n := len(plain)
	trailer := string(plain[n-4:])
	if n < 8 || (trailer != "MVP2" && trailer != "MVP3") {
		t.Fatalf("pack %s: trailer %q", name, trailer)
	}
	hlen := int(binary.LittleEndian.Uint32(plain[n-8 : n-4]))
	h := plain[n-8-hlen : n-8]
	count, k := binary.Uvarint(h)
	h = h[k:]
	var out []packEntry
	offset := 0
	for range count {
		v, k := binary.Uvarint(h)
		h = h[k:]
		_, k = binary.Uvarint(h) // raw length difference
		h = h[k+32:]
		e := packEntry{offset: offset}
		if trailer == "MVP3" {
			e.length, e.compression = int(v>>3), int(v>>1&3)
		} else {
			e.length, e.compression = int(v>>2), int(v>>1&1)
		}
		out = append(out, e)
		offset += e.length
	}
	return out
}

// holding returns the packs whose bytes contain any needle.
func holding(packs map[string][]byte, needles [][]byte) map[string]bool {
	out := map[string]bool{}
	for name, plain := range packs {
		for _, n := range needles {
			if bytes.Contains(plain, n) {
				out[name] = true
			}
		}
	}
	return out
}

func erase(t *testing.T, tr *testRepo, opt archive.EraseOptions) *archive.EraseResult {
	t.Helper()
	r := tr.openOpt(t, archive.Options{Compression: 2})
	res, err := r.RemoveMessages(t.Context(), opt)
	if err != nil {
		t.Fatalf("erase: %v", err)
	}
	return res
}

// latestEqual restores the latest snapshot and compares it with want.
func latestEqual(t *testing.T, tr *testRepo, want string) {
	t.Helper()
	r := tr.openOpt(t, archive.Options{})
	snaps, _, err := r.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	restoreEqual(t, tr, slices.MaxFunc(snaps, func(a, b *archive.Snapshot) int { return a.Time.Compare(b.Time) }), want)
}

// TestRemoveMessages erases one message by Message-ID, then one whose
// attachment a kept message shares: afterwards no pack, decrypted and
// unpacked with the stock age and zstd tools, holds their bytes (the
// shared attachment excepted), only the packs that held them were
// rewritten or deleted, the repository checks clean and every other
// message restores byte for byte.
func TestRemoveMessages(t *testing.T) {
	f := newEraseFixture(t)
	before := packPlaintexts(t, f.tr)
	for _, n := range append(slices.Clone(f.victim), f.sharer...) {
		if len(holding(before, [][]byte{n})) == 0 {
			t.Fatalf("before the erasure no pack holds %q: the search is blind", n)
		}
	}
	held := holding(before, f.victim)

	dry := erase(t, f.tr, archive.EraseOptions{Select: archive.MessageSelector{MessageIDs: []string{"victim-7Q@erase.test"}}, DryRun: true})
	if len(dry.Removed) != 2 || len(dry.Snapshots) != 2 || !maps.Equal(f.tr.packFiles(t), packSizes(before, f.tr)) {
		t.Fatalf("dry run: %+v", dry)
	}

	res := erase(t, f.tr, archive.EraseOptions{Select: archive.MessageSelector{MessageIDs: []string{"victim-7Q@erase.test"}}})
	if len(res.Removed) != 2 || len(res.Snapshots) != 2 || len(res.Forgotten) != 2 || res.Resumed {
		t.Fatalf("erase: %+v", res)
	}
	for _, m := range res.Removed {
		if m.User != "alice@erase.test" || m.Folder != "INBOX" || m.MessageID != "victim-7Q@erase.test" {
			t.Errorf("removed %+v", m)
		}
	}
	gone := map[string]bool{}
	for _, id := range append(slices.Clone(res.PacksRewritten), res.PacksDeleted...) {
		gone[id.String()] = true
	}
	t.Logf("%d packs held the victim's bytes; %d rewritten, %d deleted, %d written", len(held), len(res.PacksRewritten), len(res.PacksDeleted), res.Prune.PacksWritten)
	if !maps.Equal(gone, held) {
		t.Errorf("packs rewritten or deleted %v, want exactly those that held the victim's bytes %v", slices.Sorted(maps.Keys(gone)), slices.Sorted(maps.Keys(held)))
	}
	after := packPlaintexts(t, f.tr)
	if h := holding(after, f.victim); len(h) > 0 {
		t.Fatalf("packs %v still hold the victim's bytes", h)
	}
	checkClean(t, f.tr, 2)
	if err := os.Remove(filepath.Join(f.src, filepath.FromSlash(victimPath))); err != nil {
		t.Fatal(err)
	}
	latestEqual(t, f.tr, f.src)

	// The shared attachment stays for the keeper; the sharer's own bytes go.
	res = erase(t, f.tr, archive.EraseOptions{Select: archive.MessageSelector{MessageIDs: []string{"<sharer-9Z@erase.test>"}}})
	if len(res.Removed) != 2 {
		t.Fatalf("erase sharer: %+v", res)
	}
	after = packPlaintexts(t, f.tr)
	if h := holding(after, f.sharer); len(h) > 0 {
		t.Fatalf("packs %v still hold the sharer's bytes", h)
	}
	if len(holding(after, [][]byte{f.shared})) == 0 {
		t.Fatal("the attachment the keeper shares is gone")
	}
	checkClean(t, f.tr, 2)
	if err := os.Remove(filepath.Join(f.src, filepath.FromSlash(sharerPath))); err != nil {
		t.Fatal(err)
	}
	latestEqual(t, f.tr, f.src)

	// The next backup lists the rewritten folders again and builds a
	// Message-ID index anew.
	next := runBackup(t, f.tr.open(t), f.src).Snapshot
	if next.Roots[0].MessageIndex == nil {
		t.Error("the backup after an erasure has no Message-ID index")
	}
	checkClean(t, f.tr, 3)
	latestEqual(t, f.tr, f.src)
}

func packSizes(packs map[string][]byte, tr *testRepo) map[string]int64 {
	out := map[string]int64{}
	for name := range packs {
		fi, err := os.Stat(tr.packPath(name))
		if err == nil {
			out[name] = fi.Size()
		}
	}
	return out
}

// TestRemoveMessagesRefuses: selectors that pick nothing and held
// messages are refused with a clear error, and nothing is written.
func TestRemoveMessagesRefuses(t *testing.T) {
	f := newEraseFixture(t)
	for _, tc := range []struct {
		name string
		opt  archive.EraseOptions
		want error
		text string
	}{
		{"empty selector", archive.EraseOptions{}, nil, "no message selected"},
		{"unknown Message-ID", archive.EraseOptions{Select: archive.MessageSelector{MessageIDs: []string{"<nobody@erase.test>"}}}, archive.ErrNoMatch, ""},
		{"unknown user", archive.EraseOptions{Select: archive.MessageSelector{Users: []string{"nobody@erase.test"}}}, archive.ErrNoMatch, ""},
		{"predicate matching nothing", archive.EraseOptions{Select: archive.MessageSelector{Match: func(string, string, *archive.Message) bool { return false }}}, archive.ErrNoMatch, ""},
		{"held", archive.EraseOptions{
			Select: archive.MessageSelector{Users: []string{"alice@erase.test"}},
			Held: func(user, folder string, m *archive.Message) string {
				if m.MessageID == "victim-7Q@erase.test" {
					return "acme-v-eve"
				}
				return ""
			}}, archive.ErrHeld, `case "acme-v-eve"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := repoFiles(t, f.tr.dir)
			r := f.tr.openOpt(t, archive.Options{})
			_, err := r.RemoveMessages(t.Context(), tc.opt)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v %q", err, tc.want, tc.text)
			}
			if now := repoFiles(t, f.tr.dir); !maps.Equal(files, now) {
				t.Fatalf("refused, yet the repository changed")
			}
		})
	}
}

// TestRemoveMessagesCrashAnywhere stops an erasure after each of its
// changes in turn (every file written or removed): each time the
// repository checks clean reading every pack and an erasure run again
// finishes the job, leaving no pack with the victim's bytes.
func TestRemoveMessagesCrashAnywhere(t *testing.T) {
	f := newEraseFixture(t)
	if err := os.Remove(filepath.Join(f.src, filepath.FromSlash(victimPath))); err != nil {
		t.Fatal(err)
	}
	opt := archive.EraseOptions{Select: archive.MessageSelector{MessageIDs: []string{"victim-7Q@erase.test"}}}
	for n := int64(0); ; n++ {
		tr, _, r := crashingCopy(t, f.tr, n)
		_, err := r.RemoveMessages(t.Context(), opt)
		r.Close()
		if err == nil {
			t.Logf("an erasure makes %d changes", n)
			if n < 6 {
				t.Fatalf("the erasure finished after only %d changes", n)
			}
			break
		}
		if !errors.Is(err, errCrash) {
			t.Fatalf("erase stopped after %d changes: %v", n, err)
		}
		t.Run(fmt.Sprint("crash at change ", n), func(t *testing.T) {
			c, err := tr.openOpt(t, archive.Options{}).Check(t.Context(), archive.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if !c.OK() {
				t.Fatalf("check: %+v", c)
			}
			if n%2 == 1 {
				// An ordinary prune before the rerun must not let the
				// intent go with the erased bytes still in a pack.
				if _, err := tr.openOpt(t, archive.Options{}).Prune(t.Context(), archive.PruneOptions{MaxUnused: 0.5}); err != nil {
					t.Fatal(err)
				}
			}
			res, err := tr.openOpt(t, archive.Options{Compression: 2}).RemoveMessages(t.Context(), opt)
			switch {
			case err == nil:
				t.Logf("rerun: resumed %v, %d removed, %d packs rewritten, %d deleted", res.Resumed, len(res.Removed), len(res.PacksRewritten), len(res.PacksDeleted))
			case n%2 == 1 && errors.Is(err, archive.ErrNoMatch):
				t.Logf("the prune finished the erasure")
			default:
				t.Fatalf("rerun: %v", err)
			}
			checkClean(t, tr, 2)
			if h := holding(packPlaintexts(t, tr), f.victim); len(h) > 0 {
				t.Fatalf("packs %v still hold the victim's bytes", h)
			}
			latestEqual(t, tr, f.src)
			r := tr.openOpt(t, archive.Options{})
			if _, err := r.RemoveMessages(t.Context(), opt); !errors.Is(err, archive.ErrNoMatch) {
				t.Fatalf("a third run: %v, want ErrNoMatch", err)
			}
		})
	}
}

// TestRemoveMessagesLocalCaches: after an erasure through the metadata
// cache, neither the cached files nor the index table name the old
// snapshots or the purged blobs, and the write-only parent cache given
// holds neither the old folder tree nor an entry naming an old snapshot.
func TestRemoveMessagesLocalCaches(t *testing.T) {
	f := newEraseFixture(t)
	// A third snapshot by a write-only key, filling its parent cache.
	parents := filepath.Join(t.TempDir(), "parents")
	wo, _ := f.tr.writeOnly(t)
	if _, err := f.tr.openWith(t, wo).Backup(t.Context(), archive.BackupOptions{Paths: []string{f.src}, Host: "testhost", ParentCache: parents}); err != nil {
		t.Fatal(err)
	}

	cacheDir := t.TempDir()
	r, err := archive.Open(t.Context(), cache.New(f.tr.be, cacheDir, nil), f.tr.creds(), archive.Options{Compression: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	snaps, _, err := r.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The trees listing the victim, and its blobs no other message uses
	// (MIME part headers may be shared).
	var purged, trees []archive.ID
	kept := map[archive.ID]bool{}
	for _, s := range snaps {
		for _, fe := range s.Roots[0].Folders {
			tree, err := r.LoadFolderTree(t.Context(), fe.Tree)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tree.Messages {
				if m.MessageID != "victim-7Q@erase.test" {
					for _, b := range m.Blobs {
						kept[b] = true
					}
					continue
				}
				purged = append(purged, m.Blobs...)
				if !slices.Contains(trees, fe.Tree) {
					trees = append(trees, fe.Tree)
				}
			}
		}
	}
	purged = slices.DeleteFunc(purged, func(id archive.ID) bool { return kept[id] })
	if len(purged) < 3 {
		t.Fatalf("the victim has %d blobs of its own, want its header, text and attachment", len(purged))
	}
	purged = append(purged, trees...)
	table := func() []byte {
		t.Helper()
		paths, _ := filepath.Glob(filepath.Join(cacheDir, "*", "indextable", "table-v2"))
		if len(paths) != 1 {
			t.Fatalf("index tables %v, want one", paths)
		}
		b, err := os.ReadFile(paths[0])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tb := table()
	for _, id := range purged {
		if !bytes.Contains(tb, id[:]) {
			t.Fatalf("before the erasure the index table lacks blob %s: the search is blind", id.Short())
		}
	}
	if !slices.ContainsFunc(trees, func(id archive.ID) bool {
		_, err := os.Stat(filepath.Join(parents, "trees", id.String()))
		return err == nil
	}) {
		t.Fatal("the parent cache holds none of the trees listing the victim: the search is blind")
	}

	res, err := r.RemoveMessages(t.Context(), archive.EraseOptions{Select: archive.MessageSelector{MessageIDs: []string{"victim-7Q@erase.test"}}, ParentCache: parents})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Forgotten) != 3 {
		t.Fatalf("erase: %+v", res)
	}
	tb = table()
	for _, id := range purged {
		if bytes.Contains(tb, id[:]) {
			t.Errorf("the index table still lists purged blob %s", id.Short())
		}
		if _, err := os.Stat(filepath.Join(parents, "trees", id.String())); err == nil {
			t.Errorf("the parent cache still holds tree %s", id.Short())
		}
	}
	for _, s := range res.Snapshots {
		cached, _ := filepath.Glob(filepath.Join(cacheDir, "*", "snapshots", s.From.String()))
		if len(cached) > 0 {
			t.Errorf("the metadata cache still holds old snapshot %s", s.From.Short())
		}
	}
	entries, _ := os.ReadDir(filepath.Join(parents, "parents"))
	if len(entries) != 0 {
		t.Errorf("the parent cache still holds %d entries naming old snapshots", len(entries))
	}
	checkClean(t, f.tr, 3)
}
