package corpus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mailvault/mailvault/maildir"
)

// small keeps tests to a few MB.
var small = Options{Seed: 42, TargetBytes: 6e6, Domains: 2, UsersPerDomain: 4}

func generate(t *testing.T, opt Options) (string, Stats) {
	t.Helper()
	root := t.TempDir()
	st, err := Generate(context.Background(), root, opt)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return root, st
}

// treeHash hashes names, types, sizes, mtimes and contents of a tree.
func treeHash(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s %v %d %d\n", rel, info.Mode(), info.Size(), info.ModTime().UnixNano())
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("hash tree: %v", err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// messages returns the message files of a tree, relative to root.
func messages(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if parent := filepath.Base(filepath.Dir(p)); !d.IsDir() && (parent == "cur" || parent == "new") {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return out
}

func TestGenerateDeterministic(t *testing.T) {
	tests := []struct {
		name string
		a, b Options
		same bool
	}{
		{"same seed", small, small, true},
		{"same seed, other worker count", small, func() Options { o := small; o.Workers = 7; return o }(), true},
		{"other seed", small, func() Options { o := small; o.Seed++; return o }(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ra, sa := generate(t, tc.a)
			rb, sb := generate(t, tc.b)
			if ha, hb := treeHash(t, ra), treeHash(t, rb); (ha == hb) != tc.same {
				t.Errorf("tree hashes equal = %v, want %v", ha == hb, tc.same)
			}
			if tc.same && sa != sb {
				t.Errorf("stats differ: %+v vs %+v", sa, sb)
			}
		})
	}
}

func TestGenerateLayout(t *testing.T) {
	root, st := generate(t, small)
	if st.Bytes < small.TargetBytes {
		t.Errorf("Bytes = %d, want at least %d", st.Bytes, small.TargetBytes)
	}
	if st.Users != 8 || st.Folders != 8*6 || st.MetaFiles != 8*9 {
		t.Errorf("stats = %+v, want 8 users, 48 folders, 72 meta files", st)
	}
	for _, dom := range []string{"acme.example", "globex.example"} {
		users, err := os.ReadDir(filepath.Join(root, dom))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			md := filepath.Join(root, dom, u.Name(), "Maildir")
			for _, f := range []string{"dovecot-uidlist", "dovecot-uidvalidity", "subscriptions"} {
				if _, err := os.Stat(filepath.Join(md, f)); err != nil {
					t.Errorf("missing %v", err)
				}
			}
			for _, f := range append([]string{""}, folders...) {
				for _, sub := range []string{"cur", "new", "tmp"} {
					if fi, err := os.Stat(filepath.Join(md, f, sub)); err != nil || !fi.IsDir() {
						t.Errorf("missing folder dir %s/%s: %v", f, sub, err)
					}
				}
				if f != "" {
					if fi, err := os.Stat(filepath.Join(md, f, "maildirfolder")); err != nil || fi.Size() != 0 {
						t.Errorf("bad maildirfolder in %s: %v", f, err)
					}
				}
			}
		}
	}

	files := messages(t, root)
	if len(files) != st.Files {
		t.Errorf("found %d message files, stats say %d", len(files), st.Files)
	}
	var total int64
	attachments := 0
	for _, rel := range files {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		total += int64(len(data))
		fi, _ := os.Stat(filepath.Join(root, rel))
		base := filepath.Base(rel)
		n := maildir.ParseName(base)
		inNew := filepath.Base(filepath.Dir(rel)) == "new"
		if n.HasInfo == inNew {
			t.Errorf("%s: info part present = %v in %s", rel, n.HasInfo, filepath.Dir(rel))
		}
		if n.Size != int64(len(data)) {
			t.Errorf("%s: S=%d, size %d", rel, n.Size, len(data))
		}
		if w := int64(len(data) + bytes.Count(data, []byte("\n"))); !strings.Contains(n.Unique, ",W="+strconv.FormatInt(w, 10)) {
			t.Errorf("%s: want W=%d", rel, w)
		}
		if n.Flags != maildir.NormalizeFlags(n.Flags) || strings.Trim(n.Flags, "DFRST") != "" {
			t.Errorf("%s: bad flags %q", rel, n.Flags)
		}
		if sec, _, _ := strings.Cut(base, "."); sec != strconv.FormatInt(fi.ModTime().Unix(), 10) {
			t.Errorf("%s: mtime %v does not match name", rel, fi.ModTime())
		}
		attachments += checkMessage(t, rel, data)
	}
	if total != st.Bytes {
		t.Errorf("total size %d, stats say %d", total, st.Bytes)
	}
	if attachments == 0 {
		t.Errorf("no attachments in %d files", len(files))
	}
}

// checkMessage parses a message fully, decoding every MIME part, and
// returns the number of attachments it carries.
func checkMessage(t *testing.T, rel string, data []byte) int {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s: %v", rel, err)
		return 0
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Errorf("%s: Date: %v", rel, err)
	}
	for _, h := range []string{"From", "To"} {
		if _, err := msg.Header.AddressList(h); err != nil {
			t.Errorf("%s: %s: %v", rel, h, err)
		}
	}
	if msg.Header.Get("Message-ID") == "" {
		t.Errorf("%s: no Message-ID", rel)
	}
	if _, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		t.Errorf("%s: Subject: %v", rel, err)
	}
	return checkPart(t, rel, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
}

func checkPart(t *testing.T, rel, ctype, cte string, body io.Reader) int {
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		t.Errorf("%s: Content-Type %q: %v", rel, ctype, err)
		return 0
	}
	if !strings.HasPrefix(mt, "multipart/") {
		if cte == "base64" {
			if _, err := io.Copy(io.Discard, base64.NewDecoder(base64.StdEncoding, body)); err != nil {
				t.Errorf("%s: base64 part: %v", rel, err)
			}
			return 1
		}
		return 0
	}
	n := 0
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Errorf("%s: multipart: %v", rel, err)
			return n
		}
		n += checkPart(t, rel, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p)
	}
}

func TestFanOutCopies(t *testing.T) {
	root, st := generate(t, small)
	if st.FanOut == 0 {
		t.Fatalf("no fan-out in %+v", st)
	}
	// Group the copies by Message-ID; strip each delivered copy's
	// prepended headers, which end with the LMTP Received line naming
	// the recipient.
	type copyInfo struct {
		rel, rest string
		sent      bool
	}
	groups := make(map[string][]copyInfo)
	for _, rel := range messages(t, root) {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		id := msg.Header.Get("Message-ID")
		rcpt := msg.Header.Get("Delivered-To")
		if rcpt == "" {
			groups[id] = append(groups[id], copyInfo{rel: rel, rest: string(data), sent: true})
			continue
		}
		if !strings.HasPrefix(string(data), "Return-Path: ") {
			t.Errorf("%s: delivered copy does not start with Return-Path", rel)
		}
		mark := "for <" + rcpt + ">; "
		i := strings.Index(string(data), mark)
		j := strings.IndexByte(string(data[i:]), '\n')
		if i < 0 || j < 0 {
			t.Fatalf("%s: no LMTP Received line for %s", rel, rcpt)
		}
		groups[id] = append(groups[id], copyInfo{rel: rel, rest: string(data[i+j+1:])})
	}
	multi := 0
	for id, cs := range groups {
		var delivered []copyInfo
		for _, c := range cs {
			if !c.sent {
				delivered = append(delivered, c)
			}
		}
		if len(delivered) > 1 {
			multi++
		}
		for _, c := range delivered[min(1, len(delivered)):] {
			if c.rest != delivered[0].rest {
				t.Errorf("%s: copies %s and %s differ beyond the delivery headers", id, c.rel, delivered[0].rel)
			}
		}
		for _, c := range cs {
			if c.sent && len(delivered) > 0 && !strings.HasSuffix(delivered[0].rest, c.rest) {
				t.Errorf("%s: sent copy %s is not the tail of delivered copy %s", id, c.rel, delivered[0].rel)
			}
		}
	}
	if multi == 0 {
		t.Errorf("no message delivered to several mailboxes")
	}
}

// snapshot maps the unique part of every message to its folder and name.
func snapshot(t *testing.T, root string) map[string][2]string {
	t.Helper()
	out := make(map[string][2]string)
	for _, rel := range messages(t, root) {
		sub := filepath.Dir(rel)
		out[maildir.ParseName(filepath.Base(rel)).Unique] = [2]string{filepath.Dir(sub), filepath.Base(sub) + "/" + filepath.Base(rel)}
	}
	return out
}

func TestMutate(t *testing.T) {
	tests := []struct {
		name string
		opt  MutateOptions
	}{
		{"everything", MutateOptions{Seed: 1, NewMessages: 20, FlagChanges: 15, Moves: 7, Deletes: 5}},
		{"only new mail", MutateOptions{Seed: 2, NewMessages: 3}},
		{"nothing", MutateOptions{Seed: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, _ := generate(t, small)
			before := snapshot(t, root)
			st, err := Mutate(context.Background(), root, tc.opt)
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			after := snapshot(t, root)
			var deleted, moved, renamed, toCur, added int
			for u, b := range before {
				a, ok := after[u]
				switch {
				case !ok:
					deleted++
				case a[0] != b[0]:
					moved++
				case strings.HasPrefix(b[1], "new/") && strings.HasPrefix(a[1], "cur/"):
					toCur++
				case a[1] != b[1]:
					renamed++
				}
			}
			for u := range after {
				if _, ok := before[u]; !ok {
					added++
				}
			}
			want := [5]int{tc.opt.Deletes, tc.opt.Moves, st.FlagChanges, st.NewToCur, st.NewFiles}
			if got := [5]int{deleted, moved, renamed, toCur, added}; got != want {
				t.Errorf("observed deleted, moved, renamed, new→cur, added = %v, want %v (stats %+v)", got, want, st)
			}
			if st.Deletes != tc.opt.Deletes || st.Moves != tc.opt.Moves || st.FlagChanges+st.NewToCur != tc.opt.FlagChanges || st.NewMessages != tc.opt.NewMessages {
				t.Errorf("stats %+v do not match options %+v", st, tc.opt)
			}
			if st.NewFiles < st.NewMessages {
				t.Errorf("NewFiles %d < NewMessages %d", st.NewFiles, st.NewMessages)
			}
		})
	}
}

func TestMutateDeterministic(t *testing.T) {
	opt := MutateOptions{Seed: 9, NewMessages: 10, FlagChanges: 10, Moves: 4, Deletes: 3}
	var hashes []string
	for range 2 {
		root, _ := generate(t, small)
		if _, err := Mutate(context.Background(), root, opt); err != nil {
			t.Fatalf("Mutate: %v", err)
		}
		// A second round finds mail in new/ from the first.
		if _, err := Mutate(context.Background(), root, MutateOptions{Seed: 10, FlagChanges: 6}); err != nil {
			t.Fatalf("Mutate: %v", err)
		}
		hashes = append(hashes, treeHash(t, root))
	}
	if hashes[0] != hashes[1] {
		t.Errorf("same mutations on the same corpus gave different trees")
	}
}

func TestUIDListRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"cur", "new"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	uids := map[string]int{"100.M1P1Q1.h,S=1,W=2": 1, "101.M1P1Q2.h,S=1,W=2": 2, "102.M1P1Q3.h,S=1,W=2": 3}
	if err := os.WriteFile(filepath.Join(dir, "dovecot-uidlist"), uidList(77, uids), 0o600); err != nil {
		t.Fatal(err)
	}
	// Message 1 expunged, 2 read, a new one arrived.
	for _, name := range []string{"cur/" + maildir.FileName("101.M1P1Q2.h,S=1,W=2", "S"), "new/102.M1P1Q3.h,S=1,W=2", "new/103.M1P1Q4.h,S=1,W=2"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := updateFolder(dir, spanEnd); err != nil {
		t.Fatal(err)
	}
	validity, next, got := readUIDList(filepath.Join(dir, "dovecot-uidlist"))
	want := map[string]int{"101.M1P1Q2.h,S=1,W=2": 2, "102.M1P1Q3.h,S=1,W=2": 3, "103.M1P1Q4.h,S=1,W=2": 4}
	if validity != 77 || next != 5 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("uidlist = V%d N%d %v, want V77 N5 %v", validity, next, got, want)
	}
}
