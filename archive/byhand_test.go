package archive_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
)

// requireTool finds a command-line tool; in CI a missing tool fails the
// test (.ci/run installs it), elsewhere it skips.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI must install it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// TestRecoverByHand follows docs/FORMAT.md "Recovering a message by hand"
// with Debian's age and zstd binaries: no mailvault code decrypts or
// decompresses anything, it only reads JSON and slices bytes as `tail -c`
// and `head -c` would.
func TestRecoverByHand(t *testing.T) {
	ageBin := requireTool(t, "age")
	zstdBin := requireTool(t, "zstd")
	base64Bin := requireTool(t, "base64")
	sedBin := requireTool(t, "sed")
	ctx := t.Context()
	dir := t.TempDir()

	// A message with a text long enough to be worth compressing and two
	// base64 attachments — a photo's random bytes, stored decoded
	// ("base64"), and a CSV, decoded and compressed ("base64+zstd") —
	// and a second copy with a different Delivered-To, so the body blobs
	// are shared.
	src := filepath.Join(dir, "mail")
	photo := make([]byte, 30000)
	rand.NewChaCha8([32]byte{7}).Read(photo)
	csv := []byte(strings.Repeat("2025-03-14;ACME;invoice;1234.50\r\n", 1500))
	part := func(ct string, data []byte, after string) string {
		enc := base64.StdEncoding.EncodeToString(data)
		var b strings.Builder
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		return "--b1\r\nContent-Type: " + ct + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b.String() + enc + "\r\n" + after
	}
	body := "--b1\r\nContent-Type: text/plain\r\n\r\n" + strings.Repeat("The quarterly numbers are attached and look fine.\r\n", 200) +
		part("image/jpeg", photo, "\r\n") + part("text/csv", csv, "") + "--b1--\r\n"
	msg := "Delivered-To: alice@example.com\r\nFrom: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: numbers\r\nMessage-ID: <q1@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" + body
	writeMaildirMessage(t, src, "example.com/alice/Maildir", "1700000000.M1P1Q1.host,S=1", "S", msg)
	writeMaildirMessage(t, src, "example.com/carol/Maildir", "1700000000.M1P1Q2.host,S=1", "", strings.Replace(msg, "alice@example.com\r\nFrom", "carol@example.com\r\nFrom", 1))
	// Enough other mail around it that alice's INBOX tree is paged.
	for i := range 600 {
		writeMaildirMessage(t, src, "example.com/alice/Maildir", fmt.Sprintf("%d.M%dP1Q1.host", 1600000000+i%2*200000000, i), "S",
			fmt.Sprintf("From: x@example.org\r\nMessage-ID: <f%d@example.org>\r\n\r\nfiller %d\r\n", i, i))
	}

	admin, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	adminFile := filepath.Join(dir, "admin.txt")
	if err := os.WriteFile(adminFile, []byte(admin.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(dir, "repo")
	be := local.New(repoDir)
	if err := be.Create(); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(ctx, be, archive.KeyRecipients{Recipients: []string{admin.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	repo, err := archive.Open(ctx, be, archive.Credentials{Identities: []age.Identity{admin}}, archive.Options{Compression: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	res, err := repo.Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}

	run := func(stdin []byte, name string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
		}
		return out
	}
	ageDecrypt := func(identity, file string) []byte { return run(nil, ageBin, "-d", "-i", identity, file) }
	zstdDecode := func(b []byte) []byte { return run(b, zstdBin, "-d", "-c") }

	// 1. The secrets.
	// The key files, not their descriptions (keys/<id>.info).
	all, _ := filepath.Glob(filepath.Join(repoDir, "keys", "*"))
	var keys []string
	for _, k := range all {
		if !strings.HasSuffix(k, ".info") {
			keys = append(keys, k)
		}
	}
	if len(keys) != 1 {
		t.Fatalf("want one key file, got %v", keys)
	}
	var key struct {
		Secrets struct {
			DataIdentity  string `json:"data_identity"`
			IndexIdentity string `json:"index_identity"`
		} `json:"secrets"`
	}
	mustUnmarshal(t, ageDecrypt(adminFile, keys[0]), &key)
	dataFile, indexFile := filepath.Join(dir, "data.txt"), filepath.Join(dir, "index.txt")
	os.WriteFile(dataFile, []byte(key.Secrets.DataIdentity+"\n"), 0o600)
	os.WriteFile(indexFile, []byte(key.Secrets.IndexIdentity+"\n"), 0o600)

	// 2. The snapshot: alice's INBOX tree.
	var snap struct {
		Roots []struct {
			Folders      []struct{ User, Folder, Dir, Tree string } `json:"folders"`
			MessageIndex string                                     `json:"message_index"`
		} `json:"roots"`
	}
	mustUnmarshal(t, zstdDecode(ageDecrypt(dataFile, filepath.Join(repoDir, "snapshots", res.Snapshot.ID.String()))), &snap)
	var treeID string
	for _, f := range snap.Roots[0].Folders {
		if f.User == "alice@example.com" && f.Folder == "INBOX" {
			treeID = f.Tree
		}
	}
	if treeID == "" {
		t.Fatalf("alice's INBOX not in snapshot: %+v", snap)
	}

	// 3. The index: every blob's pack, offset, length, compression.
	type loc struct {
		pack           string
		offset, length int
		compression    string
	}
	where := map[string]loc{}
	indexes, _ := filepath.Glob(filepath.Join(repoDir, "index", "*"))
	for _, f := range indexes {
		var ix struct {
			Packs []struct {
				ID    string `json:"id"`
				Blobs []struct {
					ID          string `json:"id"`
					Offset      int    `json:"offset"`
					Length      int    `json:"length"`
					Compression string `json:"compression"`
				} `json:"blobs"`
			} `json:"packs"`
		}
		mustUnmarshal(t, zstdDecode(ageDecrypt(indexFile, f)), &ix)
		for _, p := range ix.Packs {
			for _, b := range p.Blobs {
				where[b.ID] = loc{p.ID, b.Offset, b.Length, b.Compression}
			}
		}
	}

	// 4. A blob: decrypt its pack, cut the range, decompress.
	blob := func(id string) []byte {
		l, ok := where[id]
		if !ok {
			t.Fatalf("blob %s not in any index", id)
		}
		plain := ageDecrypt(dataFile, filepath.Join(repoDir, "data", l.pack[:2], l.pack))
		cut := plain[l.offset : l.offset+l.length] // tail -c +$((offset+1)) | head -c $length
		if l.compression == "zstd" || l.compression == "base64+zstd" {
			cut = zstdDecode(cut)
		}
		if !strings.HasPrefix(l.compression, "base64") {
			return cut
		}
		// 5. The base64 form: flags, L and T, one byte each below 128,
		// then the bytes to give `base64 -w L`; sed makes the line
		// endings CRLF where flags is 1; base64 ends with one line
		// ending, cut off for T = 0, repeated for T > 1.
		flags, lineLen, trailing := cut[0], cut[1], cut[2]
		if flags > 1 || lineLen >= 128 || trailing >= 128 {
			t.Fatalf("base64 form header % x: not as the recipe reads it", cut[:3])
		}
		text := run(cut[3:], base64Bin, "-w", fmt.Sprint(lineLen))
		eol := "\n"
		if flags == 1 {
			text, eol = run(text, sedBin, `s/$/\r/`), "\r\n"
		}
		if trailing == 0 {
			return text[:len(text)-len(eol)] // head -c -1 (LF) or -2 (CRLF)
		}
		return append(text, strings.Repeat(eol, int(trailing)-1)...)
	}

	// The Message-ID index: the key, then in each run the pages whose
	// range holds it; the newest run's entry wins.
	sum := sha256.Sum256([]byte("q1@example.com"))
	midKey := hex.EncodeToString(sum[:8])
	var idx struct {
		Index int                   `json:"index"`
		Runs  []struct{ ID string } `json:"runs"`
	}
	mustUnmarshal(t, blob(snap.Roots[0].MessageIndex), &idx)
	if idx.Index != 2 {
		t.Fatalf("message index form %d, want 2", idx.Index)
	}
	// A page of form 2: a byte 2; n keys of 8 bytes, n folders of 4, n
	// names of 8 (big-endian); a bitmap of gone entries, LSB first.
	type entry struct {
		Folder, Name []byte
		Gone         bool
	}
	var copies []entry
	for _, r := range idx.Runs { // one run here: the first backup's
		var run struct {
			Run   int `json:"run"`
			Pages []struct {
				ID, First string
				Entries   int
			} `json:"pages"`
		}
		mustUnmarshal(t, blob(r.ID), &run)
		if run.Run != 2 {
			t.Fatalf("run form %d, want 2", run.Run)
		}
		for i, p := range run.Pages {
			if p.First > midKey || i+1 < len(run.Pages) && run.Pages[i+1].First < midKey {
				continue // holds no entry with the key
			}
			pg, n := blob(p.ID), p.Entries
			if len(pg) != 1+20*n+(n+7)/8 || pg[0] != 2 {
				t.Fatalf("page of %d bytes for %d entries", len(pg), n)
			}
			for j := range n {
				e := entry{Folder: pg[1+8*n+4*j:][:4], Name: pg[1+12*n+8*j:][:8], Gone: pg[1+20*n+j/8]>>(j%8)&1 == 1}
				if hex.EncodeToString(pg[1+8*j:][:8]) == midKey && !e.Gone {
					copies = append(copies, e)
				}
			}
		}
	}
	// The folder is the root's folder whose dir's SHA-256 begins with
	// the entry's 4 bytes; the name is the unique name's first 6 bytes
	// and the first 2 of its SHA-256.
	hashOf := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	aliceDir, aliceName := "example.com/alice/Maildir", "1700000000.M1P1Q1.host,S=1"
	if len(copies) != 2 || !bytes.Equal(copies[0].Folder, hashOf(aliceDir)[:4]) ||
		!bytes.Equal(copies[0].Name, append([]byte(aliceName[:6]), hashOf(aliceName)[:2]...)) {
		t.Fatalf("the index gives %+v for <q1@example.com>, want alice's and carol's copies", copies)
	}

	// The folder's tree, and its page that holds the unique name: the
	// last whose first is not after it.
	type message struct {
		Unique string
		Flags  string
		Blobs  []string
	}
	var tree struct {
		Pages []struct{ ID, First string } `json:"pages"`
	}
	mustUnmarshal(t, blob(treeID), &tree)
	if len(tree.Pages) < 2 {
		t.Fatalf("want alice's INBOX tree paged, got %d pages", len(tree.Pages))
	}
	page := ""
	for _, p := range tree.Pages {
		if p.First <= aliceName {
			page = p.ID
		}
	}
	// A version 3 page holds columns: the message is the index of its
	// unique name in each.
	var pg struct {
		Page     int
		Messages struct {
			Unique []string   `json:"unique"`
			Flags  []string   `json:"flags"`
			Blobs  [][]string `json:"blobs"`
		} `json:"messages"`
	}
	mustUnmarshal(t, blob(page), &pg)
	if pg.Page != 2 {
		t.Fatalf("page format %d, want 2 (version 3 columns)", pg.Page)
	}
	var m message
	for i, u := range pg.Messages.Unique {
		if u == aliceName {
			m = message{Unique: u, Flags: pg.Messages.Flags[i], Blobs: pg.Messages.Blobs[i]}
		}
	}
	var got []byte
	for _, id := range m.Blobs {
		got = append(got, blob(id)...)
	}
	if string(got) != msg {
		t.Fatalf("recovered message differs:\n got %d bytes %q…\nwant %d bytes", len(got), got[:min(len(got), 80)], len(msg))
	}
	if name := m.Unique + ":2," + m.Flags; name != "1700000000.M1P1Q1.host,S=1:2,S" {
		t.Errorf("file name %q", name)
	}
	kinds := map[string]int{}
	for _, id := range m.Blobs {
		kinds[where[id].compression]++
	}
	if kinds["base64"] != 1 || kinds["base64+zstd"] != 1 || kinds["zstd"] == 0 {
		t.Errorf("blobs by compression %v: want one of each base64 form and zstd ones", kinds)
	}
}

func writeMaildirMessage(t *testing.T, root, maildir, unique, flags, content string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, maildir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, maildir, "cur", unique+":2,"+flags), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v in %q", err, b[:min(len(b), 200)])
	}
}
