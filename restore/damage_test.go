package restore_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/bench/corpus"
	"github.com/mailvault/mailvault/internal/testutil"
	"github.com/mailvault/mailvault/restore"
)

// backedUp is a generated Maildir tree backed up into a fresh repository
// of small, uncompressed packs, so that a few MB spread over several.
type backedUp struct {
	src  string
	dir  string // the repository's directory
	repo *archive.Repository
	snap *archive.Snapshot
	// uses lists, for every message and other file of the snapshot (by
	// its path below a restore target), where its blobs are.
	uses map[string][]located
	// msgs are the snapshot's messages by path.
	msgs map[string]archive.Message
}

type located struct {
	pack archive.ID
	blob archive.PackedBlob
}

func backUpCorpus(t *testing.T, seed uint64, size int64) *backedUp {
	t.Helper()
	src := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(t.Context(), src, corpus.Options{Seed: seed, TargetBytes: size, Domains: 2, UsersPerDomain: 4}); err != nil {
		t.Fatal(err)
	}
	tr := createRepo(t, 1<<20)
	dir := tr.dir
	r := tr.open(t, archive.Options{Compression: 0})
	res, err := r.Backup(t.Context(), archive.BackupOptions{Paths: []string{src}, Host: "testhost"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := &backedUp{src: src, dir: dir, repo: r, snap: res.Snapshot, uses: map[string][]located{}, msgs: map[string]archive.Message{}}
	idx := r.Index()
	locate := func(rel string, blobs []archive.ID) {
		for _, id := range blobs {
			pack, pb, ok := idx.Lookup(id)
			if !ok {
				t.Fatalf("%s: blob %s not indexed", rel, id)
			}
			b.uses[rel] = append(b.uses[rel], located{pack, pb})
		}
		if len(blobs) == 0 {
			b.uses[rel] = nil
		}
	}
	for _, root := range b.snap.Roots {
		for _, f := range root.Folders {
			tree, err := r.LoadFolderTree(t.Context(), f.Tree)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tree.Messages {
				rel := path.Join(root.Name, f.Dir, m.Subdir(), m.FileName())
				b.msgs[rel] = m
				locate(rel, m.Blobs)
			}
		}
		ft, err := r.LoadFilesTree(t.Context(), root.Files)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ft.Entries {
			if e.Type == "file" {
				locate(path.Join(root.Name, e.Path), e.Blobs)
			}
		}
	}
	return b
}

func (b *backedUp) packPath(p archive.ID) string {
	return filepath.Join(b.dir, "data", p.String()[:2], p.String())
}

// cipherOffset maps an offset in the plaintext of an age file to the
// offset of that byte in the file: header, 16-byte nonce, then 64 KiB
// chunks each followed by a 16-byte tag.
func cipherOffset(t *testing.T, sealed []byte, plainOff int64) int64 {
	t.Helper()
	i := bytes.Index(sealed, []byte("\n--- "))
	if i < 0 {
		t.Fatal("no age header end")
	}
	j := bytes.IndexByte(sealed[i+1:], '\n')
	hdr := int64(i + 1 + j + 1)
	return hdr + 16 + plainOff/ageChunk*(ageChunk+16) + plainOff%ageChunk
}

const ageChunk = 64 << 10

// assertNoPartialFiles checks the target after a restore that did not
// restore everything: every file under a final name is the source's file
// byte for byte, no temporary file is left, and (if want is given) the
// target holds exactly the source's files but those in lost.
func assertNoPartialFiles(t *testing.T, src, target string, lost map[string]bool, complete bool) {
	t.Helper()
	wf, _ := testutil.ReadTree(t, src)
	gf, _ := testutil.ReadTree(t, target)
	for rel, g := range gf {
		if strings.HasPrefix(path.Base(rel), ".mailvault-restore-") {
			t.Errorf("temporary file left: %s", rel)
			continue
		}
		w, ok := wf[rel]
		if !ok {
			t.Errorf("%s: not in the source", rel)
			continue
		}
		if !bytes.Equal(g.Content, w.Content) {
			t.Errorf("%s: partially written or wrong: %d bytes, source %d", rel, len(g.Content), len(w.Content))
		}
		if lost[rel] {
			t.Errorf("%s: restored although it needs the damaged pack", rel)
		}
	}
	if !complete {
		return
	}
	for rel, w := range wf {
		g, ok := gf[rel]
		switch {
		case lost[rel]:
		case !ok:
			t.Errorf("%s: not restored although none of its content is damaged", rel)
		case !w.ModTime.Equal(g.ModTime):
			t.Errorf("%s: mtime %v, want %v", rel, g.ModTime, w.ModTime)
		}
	}
}

// TestRestorePastDamagedPack flips one byte in one data pack and restores
// the whole snapshot: the restore must go on past the pack, restore every
// message and file that needs nothing from it byte for byte, write no
// partial file and leave no temporary one, and list exactly the messages
// and files it could not restore — with user, folder, Message-ID and
// subject — and the damaged pack.
func TestRestorePastDamagedPack(t *testing.T) {
	tests := []struct {
		name string
		// at picks the plaintext offset to damage among the pack's
		// blobs (sorted by offset), or reports that the pack does not
		// suit the case.
		at func(blobs []archive.PackedBlob) (int64, bool)
	}{
		// The first chunk: the pack gives nothing, and every file
		// with content in it is lost.
		{"first blob", func(blobs []archive.PackedBlob) (int64, bool) { return int64(blobs[0].Offset), true }},
		// The chunk where the last blob starts, after the chunk where
		// the first one ends: the blobs before it are delivered
		// before the pack fails, and the files they complete are
		// restored.
		{"last blob", func(blobs []archive.PackedBlob) (int64, bool) {
			first, last := blobs[0], blobs[len(blobs)-1]
			off := int64(last.Offset)
			return off, (int64(first.Offset)+int64(first.Length)-1)/ageChunk < off/ageChunk
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := backUpCorpus(t, 21, 8e6)

			// The data pack with the most files using it, of those
			// not everything uses.
			users := map[archive.ID]map[string]bool{}
			for rel, ls := range b.uses {
				for _, l := range ls {
					if users[l.pack] == nil {
						users[l.pack] = map[string]bool{}
					}
					users[l.pack][rel] = true
				}
			}
			// lostWith lists the files that damage at plaintext offset
			// off of pack p takes: a blob whose last chunk comes before
			// the damaged one is delivered; the others are lost.
			lostWith := func(p archive.ID, off int64) map[string]bool {
				badChunk := off / ageChunk
				lostBlob := func(pb archive.PackedBlob) bool {
					return (int64(pb.Offset)+max(int64(pb.Length), 1)-1)/ageChunk >= badChunk
				}
				lost := map[string]bool{}
				for rel, ls := range b.uses {
					if slices.ContainsFunc(ls, func(l located) bool { return l.pack == p && lostBlob(l.blob) }) {
						lost[rel] = true
					}
				}
				return lost
			}
			byPack := b.repo.Index().PackBlobs()
			var pack archive.ID
			var off int64
			for p, u := range users {
				blobs := slices.Clone(byPack[p])
				sort.Slice(blobs, func(i, j int) bool { return blobs[i].Offset < blobs[j].Offset })
				dataOnly := !slices.ContainsFunc(blobs, func(pb archive.PackedBlob) bool { return pb.Type != archive.DataBlob })
				o, ok := tc.at(blobs)
				if !ok || !dataOnly || len(u) >= len(b.uses) {
					continue
				}
				// "last blob" wants a pack where some users keep
				// their files: a blob every user shares (a common
				// attachment) in the damaged chunk would lose them all.
				if n := len(lostWith(p, o)); tc.name == "last blob" && (n == 0 || n == len(u)) {
					continue
				}
				if pack.IsNull() || len(u) > len(users[pack]) {
					pack, off = p, o
				}
			}
			if pack.IsNull() {
				t.Fatalf("no data pack suits the case among %d", len(users))
			}
			sealed, err := os.ReadFile(b.packPath(pack))
			if err != nil {
				t.Fatal(err)
			}
			sealed[cipherOffset(t, sealed, off)] ^= 0x40
			if err := os.WriteFile(b.packPath(pack), sealed, 0o600); err != nil {
				t.Fatal(err)
			}

			lost := lostWith(pack, off)
			if tc.name == "first blob" && len(lost) != len(users[pack]) {
				t.Fatalf("%d files lost, want all %d users of the pack", len(lost), len(users[pack]))
			}
			if tc.name == "last blob" && len(lost) == len(users[pack]) {
				t.Fatalf("all %d users of the pack lost: the damage is not after some of its blobs", len(lost))
			}
			if len(lost) == 0 || len(lost) == len(b.uses) {
				t.Fatalf("%d of %d files lost; want some", len(lost), len(b.uses))
			}
			t.Logf("pack %s: %d blobs, %d files use it, %d lost", pack.Short(), len(byPack[pack]), len(users[pack]), len(lost))

			target := filepath.Join(t.TempDir(), "restored")
			res, err := restore.Restore(t.Context(), b.repo, b.snap, restore.Options{Target: target})
			if !errors.Is(err, restore.ErrIncomplete) || !errors.Is(err, archive.ErrCorrupt) {
				t.Fatalf("Restore = %v, want ErrIncomplete and ErrCorrupt", err)
			}
			if res == nil {
				t.Fatal("no result with ErrIncomplete")
			}
			if len(res.DamagedPacks) != 1 || res.DamagedPacks[0].Pack != pack {
				t.Errorf("damaged packs %+v, want %s", res.DamagedPacks, pack)
			}
			var got []string
			for _, f := range res.Failed {
				got = append(got, f.Path)
				if f.Kind == "file" {
					if _, isMsg := b.msgs[f.Path]; isMsg {
						t.Errorf("%s: listed as a file, not as a message", f.Path)
					}
					continue
				}
				m, ok := b.msgs[f.Path]
				switch {
				case f.Kind != "message" || !ok:
					t.Errorf("unexpected failure %+v", f)
				case f.Unique != m.Unique || f.MessageID != m.MessageID || f.Subject != m.Subject || f.MessageID == "" ||
					f.User == "" || f.Folder == "" || !strings.Contains(f.Err, pack.String()):
					t.Errorf("failure %+v does not describe message %s <%s> %q in pack %s", f, m.Unique, m.MessageID, m.Subject, pack)
				}
			}
			var want []string
			for rel := range lost {
				want = append(want, rel)
			}
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Errorf("not restored:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			var lostMsgs int64
			for rel := range lost {
				if _, ok := b.msgs[rel]; ok {
					lostMsgs++
				}
			}
			if res.Messages != int64(len(b.msgs))-lostMsgs {
				t.Errorf("result counts %d messages restored, want %d", res.Messages, int64(len(b.msgs))-lostMsgs)
			}
			assertNoPartialFiles(t, b.src, target, lost, true)
		})
	}
}

// faultyRepo is a real repository whose pack reads fail on purpose: a
// read error that is not damage (a network failure) must end a restore.
type faultyRepo struct {
	*archive.Repository
	// stop reports whether to fail instead of delivering b, given the
	// blobs delivered so far.
	stop func(b archive.ID, delivered map[archive.ID]bool) bool

	mu        sync.Mutex
	delivered map[archive.ID]bool
	stopped   bool
}

var errInjected = errors.New("injected read error: connection reset")

func (f *faultyRepo) ReadBlobs(ctx context.Context, pack archive.ID, blobs []archive.PackedBlob, fn func(archive.PackedBlob, []byte) error) error {
	return f.Repository.ReadBlobs(ctx, pack, blobs, func(b archive.PackedBlob, data []byte) error {
		f.mu.Lock()
		if f.delivered == nil {
			f.delivered = map[archive.ID]bool{}
		}
		if f.stopped || f.stop(b.ID, f.delivered) {
			f.stopped = true
			f.mu.Unlock()
			return errInjected
		}
		f.delivered[b.ID] = true
		f.mu.Unlock()
		return fn(b, data)
	})
}

// TestRestoreInterruptedLeavesNoPartialFile ends restores midway — a read
// error in the middle of a message (after its first blob was written), a
// cancellation, and a file that cannot be renamed into place — and checks
// that no file under a final name is partially written and that no
// temporary file remains.
func TestRestoreInterruptedLeavesNoPartialFile(t *testing.T) {
	b := backUpCorpus(t, 22, 2e6)
	// blobUsers maps each blob to the files using it.
	blobUsers := map[archive.ID][]string{}
	for rel, ls := range b.uses {
		for _, l := range ls {
			blobUsers[l.blob.ID] = append(blobUsers[l.blob.ID], rel)
		}
	}
	// midFile stops before a blob of a file that already has another
	// blob written: that file is then half written.
	midFile := func(id archive.ID, delivered map[archive.ID]bool) bool {
		for _, rel := range blobUsers[id] {
			if slices.ContainsFunc(b.uses[rel], func(l located) bool { return delivered[l.blob.ID] }) {
				return true
			}
		}
		return false
	}
	var multi int
	for _, ls := range b.uses {
		if len(ls) > 1 {
			multi++
		}
	}
	if multi == 0 {
		t.Fatal("no file of several blobs in the corpus")
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, target string) (restore.Repository, context.Context)
		opt     restore.Options
		wantErr error // nil: any error but ErrIncomplete
	}{
		{"read error mid-file", func(t *testing.T, target string) (restore.Repository, context.Context) {
			return &faultyRepo{Repository: b.repo, stop: midFile}, t.Context()
		}, restore.Options{Workers: 1}, errInjected},
		{"canceled mid-file", func(t *testing.T, target string) (restore.Repository, context.Context) {
			ctx, cancel := context.WithCancel(t.Context())
			t.Cleanup(cancel)
			return &faultyRepo{Repository: b.repo, stop: func(id archive.ID, delivered map[archive.ID]bool) bool {
				if midFile(id, delivered) {
					cancel()
				}
				return false
			}}, ctx
		}, restore.Options{Workers: 1}, context.Canceled},
		{"rename refused", func(t *testing.T, target string) (restore.Repository, context.Context) {
			// A non-empty directory where the last message goes: the
			// rename fails, a write error of the target.
			var last string
			for rel := range b.msgs {
				last = max(last, rel)
			}
			if err := os.MkdirAll(filepath.Join(target, filepath.FromSlash(last), "x"), 0o700); err != nil {
				t.Fatal(err)
			}
			return b.repo, t.Context()
		}, restore.Options{Overwrite: true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "restored")
			repo, ctx := tc.prepare(t, target)
			opt := tc.opt
			opt.Target = target
			_, err := restore.Restore(ctx, repo, b.snap, opt)
			if err == nil || errors.Is(err, restore.ErrIncomplete) {
				t.Fatalf("Restore = %v, want it to end with %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Restore = %v, want %v", err, tc.wantErr)
			}
			t.Logf("Restore: %v", err)
			// The directory planted in the target is no file of the
			// source: ReadTree skips directories.
			assertNoPartialFiles(t, b.src, target, nil, false)
		})
	}
}

// TestRestoreMissingContent: content that no pack holds — a message's
// blob, a folder's tree, a files tree — loses only what needs it; the
// rest is restored and the losses are listed.
func TestRestoreMissingContent(t *testing.T) {
	gone := archive.ID{9, 9, 9}
	tests := []struct {
		name string
		// lostTree, lostFiles and lostBlob replace the second folder's
		// tree, the files tree or the second message's blob by gone.
		lostTree, lostFiles, lostBlob bool
		want                          restore.Failure
	}{
		{name: "message blob", lostBlob: true,
			want: restore.Failure{Kind: "message", Path: "u/cur/m2:2,S", User: "u", Folder: "INBOX", Unique: "m2", MessageID: "m2@x", Subject: "two",
				Err: "blob " + gone.String() + " is not in any pack"}},
		{name: "folder tree", lostTree: true,
			want: restore.Failure{Kind: "folder", Path: "u/.Sent", User: "u", Folder: "Sent"}},
		{name: "files tree", lostFiles: true,
			want: restore.Failure{Kind: "files", Path: "."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t)
			one := saveData(t, r, "Subject: one\n\n1\n")
			two := saveData(t, r, "Subject: two\n\n2\n")
			if tc.lostBlob {
				two = gone
			}
			inbox := saveTree(t, r, archive.FolderTree{Version: 1, Messages: []archive.Message{
				{Unique: "m1", Flags: "S", Size: 16, Blobs: []archive.ID{one}, MessageID: "m1@x", Subject: "one"},
				{Unique: "m2", Flags: "S", Size: 16, Blobs: []archive.ID{two}, MessageID: "m2@x", Subject: "two"},
			}})
			sent := saveTree(t, r, archive.FolderTree{Version: 1, Messages: []archive.Message{
				{Unique: "s1", Flags: "S", Size: 16, Blobs: []archive.ID{one}},
			}})
			files := saveTree(t, r, archive.FilesTree{Version: 1, Entries: []archive.FileEntry{
				{Path: "u/subscriptions", Type: "file", Mode: 0o600, Size: 16, Blobs: []archive.ID{one}},
			}})
			if tc.lostTree {
				sent = gone
			}
			if tc.lostFiles {
				files = gone
			}
			snap, err := saveSnapshot(t, r, archive.Snapshot{Version: 1, Roots: []archive.SourceRoot{{Path: "/src", Files: files, Folders: []archive.FolderEntry{
				{User: "u", Folder: "INBOX", Dir: "u", Tree: inbox},
				{User: "u", Folder: "Sent", Dir: "u/.Sent", Tree: sent},
			}}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.LoadIndex(t.Context()); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(t.TempDir(), "restored")
			res, err := restore.Restore(t.Context(), r, snap, restore.Options{Target: target})
			if !errors.Is(err, restore.ErrIncomplete) || res == nil {
				t.Fatalf("Restore = %v, want ErrIncomplete", err)
			}
			if len(res.Failed) != 1 {
				t.Fatalf("failed %+v, want one", res.Failed)
			}
			got := res.Failed[0]
			if tc.want.Err == "" {
				// A damaged tree's error is the loader's; it names the blob.
				if !strings.Contains(got.Err, gone.String()) {
					t.Errorf("error %q does not name %s", got.Err, gone)
				}
				got.Err = ""
			}
			if got != tc.want {
				t.Errorf("failed %+v, want %+v", got, tc.want)
			}
			want := map[string]string{
				"u/cur/m1:2,S":       "Subject: one\n\n1\n",
				"u/cur/m2:2,S":       "Subject: two\n\n2\n",
				"u/.Sent/cur/s1:2,S": "Subject: one\n\n1\n",
				"u/subscriptions":    "Subject: one\n\n1\n",
			}
			delete(want, tc.want.Path)
			if tc.lostTree {
				delete(want, "u/.Sent/cur/s1:2,S")
			}
			if tc.lostFiles {
				delete(want, "u/subscriptions")
			}
			if got := listTree(t, target); !maps.Equal(got, want) {
				t.Errorf("restored %q, want %q", got, want)
			}
		})
	}
}
