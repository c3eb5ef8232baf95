package archive

import (
	"bytes"
	"encoding/json"
	"io"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"filippo.io/age"
	"github.com/mailvault/mailvault/maildir"
)

// Seed corpora are valid encodings made by the code itself (plus a few
// hostile variants), so the fuzzer starts from what real repositories
// hold.

func seedID(b byte) ID {
	var id ID
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

func mustJSON(t testing.TB, v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// insideTarget reports whether joining rel below a target stays there.
func insideTarget(rel string) bool {
	const target = "/restore/target"
	p := filepath.Join(target, filepath.FromSlash(rel))
	return p == target || strings.HasPrefix(p, target+"/")
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add(mustJSON(f, IndexFileContent{Version: 1, Packs: []IndexPack{
		{ID: seedID(1), Blobs: []PackedBlob{
			{ID: seedID(2), Type: DataBlob, Offset: 0, Length: 100, RawLength: 300, Compression: Zstd},
			{ID: seedID(3), Type: TreeBlob, Offset: 100, Length: 50, RawLength: 50, Compression: Uncompressed},
			{ID: seedID(4), Type: DataBlob, Offset: 150, Length: 75, RawLength: 100, Compression: Base64},
			{ID: seedID(5), Type: DataBlob, Offset: 225, Length: 10, RawLength: 100, Compression: Base64Zstd},
		}},
		{ID: seedID(4)},
	}}))
	f.Add(mustJSON(f, IndexFileContent{Version: 1}))
	f.Add([]byte(`{"version":1,"packs":[{"id":"` + seedID(5).String() + `","blobs":[{"id":"` + seedID(6).String() + `","type":"data","offset":4294967295,"length":4294967295,"raw_length":1,"compression":"none"}]}]}`))
	var many IndexFileContent
	many.Version = 1
	for i := range 3 {
		p := IndexPack{ID: seedID(byte(10 + i))}
		for j := range 12 {
			p.Blobs = append(p.Blobs, PackedBlob{ID: seedID(byte(100 + 20*i + j)), Type: BlobType(j % 2), Offset: uint32(1000 * j), Length: 1000, RawLength: 3000, Compression: Zstd})
		}
		many.Packs = append(many.Packs, p)
	}
	many.Supersedes = []ID{seedID(7), seedID(8)}
	f.Add(mustJSON(f, many)) // longer than the streaming parser's window
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if fast, ok := decodeIndexFast(data); ok {
			var slow IndexFileContent
			if err := json.Unmarshal(data, &slow); err != nil {
				t.Fatalf("fast index decoder accepted what encoding/json rejects: %v", err)
			}
			if !reflect.DeepEqual(normalizeIndex(fast), normalizeIndex(&slow)) {
				t.Fatalf("fast and encoding/json decoders disagree:\n%+v\n%+v", fast, slow)
			}
		}
		// The streaming parser (LoadIndex's), fed a few bytes at a time
		// through its smallest window, reads what parseIndexFast reads.
		var whole, streamed []any
		collect := func(out *[]any) indexVisitor {
			return indexVisitor{
				pack:       func(id ID) { *out = append(*out, "pack", id) },
				blob:       func(b PackedBlob) { *out = append(*out, b) },
				supersedes: func(id ID) { *out = append(*out, "supersedes", id) },
			}
		}
		okWhole := parseIndexFast(data, collect(&whole))
		okStream, serr := parseIndexStream(iotest.HalfReader(bytes.NewReader(data)), 0, collect(&streamed))
		if serr != nil || okWhole != okStream || (okWhole && !reflect.DeepEqual(whole, streamed)) {
			t.Fatalf("streaming parser: %v %v, whole: %v\n%v\n%v", okStream, serr, okWhole, streamed, whole)
		}

		ic, err := decodeIndex(data)
		// LoadIndex's builder, which decodes straight into its table,
		// accepts exactly what decodeIndex accepts, and finds the same.
		bx := newIndex()
		b := indexBuilder{x: bx}
		sup, berr := b.add(ID{1}, data)
		if (err == nil) != (berr == nil) {
			t.Fatalf("decodeIndex: %v; builder: %v", err, berr)
		}
		if err != nil {
			return
		}
		if !slices.Equal(sup, ic.Supersedes) {
			t.Fatalf("builder read supersedes %v, want %v", sup, ic.Supersedes)
		}
		b.finish(map[ID]bool{{1}: true})
		seen := map[ID]int{}
		for _, p := range ic.Packs {
			for _, b := range p.Blobs {
				seen[b.ID]++
			}
		}
		x := newIndex()
		for _, p := range ic.Packs {
			for _, b := range p.Blobs {
				if b.Type > TreeBlob || b.Compression > maxCompression {
					t.Fatalf("accepted blob type %d compression %d", b.Type, b.Compression)
				}
				if uint64(b.Offset)+uint64(b.Length) > 1<<32 {
					t.Fatalf("accepted blob past 4 GiB")
				}
			}
			x.addPack(p.ID, p.Blobs)
		}
		for _, p := range ic.Packs {
			for _, b := range p.Blobs {
				if _, _, ok := x.Lookup(b.ID); !ok {
					t.Fatalf("blob %s not found after adding", b.ID)
				}
				// Of a blob listed twice, the builder keeps the place
				// in the pack first listed, at the lower offset; addPack
				// the first place read: compare the places of blobs
				// listed once.
				wp, wb, _ := x.Lookup(b.ID)
				if gp, gb, ok := bx.Lookup(b.ID); !ok || (seen[b.ID] == 1 && (gp != wp || gb != wb)) {
					t.Fatalf("blob %s: builder has %v %+v %v, addPack %v %+v", b.ID, gp, gb, ok, wp, wb)
				}
			}
		}
		if bx.Len() != x.Len() {
			t.Fatalf("builder holds %d blobs, addPack %d", bx.Len(), x.Len())
		}
		// What is accepted re-encodes to an index that decodes the same.
		again, err := decodeIndex(mustJSON(t, ic))
		if err != nil {
			t.Fatalf("re-encoded index rejected: %v", err)
		}
		if !reflect.DeepEqual(normIndex(ic), normIndex(again)) {
			t.Fatalf("index changed through re-encoding:\n%+v\n%+v", ic, again)
		}
	})
}

// normIndex makes nil and empty slices compare equal.
func normIndex(ic *IndexFileContent) *IndexFileContent {
	c := *ic
	if len(c.Packs) == 0 {
		c.Packs = nil
	}
	for i := range c.Packs {
		if len(c.Packs[i].Blobs) == 0 {
			c.Packs[i].Blobs = nil
		}
	}
	return &c
}

func FuzzDecodeSnapshot(f *testing.F) {
	parent := seedID(9)
	snap := Snapshot{Version: 1, Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), EndTime: time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC),
		Host: "imap1", Tags: []string{"daily"}, Parent: &parent, Paths: []string{"/var/mail", "/srv/mail"}, Program: "mailvault",
		Roots: []SourceRoot{
			{Path: "/var/mail", Name: "mail", Files: seedID(10), Folders: []FolderEntry{
				{User: "alice@example.com", Folder: "INBOX", Dir: "example.com/alice/Maildir", Tree: seedID(11), Messages: 3, Bytes: 3000,
					Cur: DirStamp{Ino: 5, MTime: 1, CTime: 2}},
				{User: "alice@example.com", Folder: "Archive.2024", Dir: "example.com/alice/Maildir/.Archive.2024", Tree: seedID(12)},
			}},
			{Path: "/srv/mail", Name: "mail-2", Folders: []FolderEntry{{Folder: "INBOX", Dir: ".", Tree: seedID(13)}}},
		},
		Summary: Summary{Messages: 3, MessagesNew: 3, BytesRead: 3000}}
	f.Add(mustJSON(f, snap))
	single := snap
	single.Roots = snap.Roots[:1]
	single.Roots[0].Name = ""
	f.Add(mustJSON(f, single))
	for _, bad := range []string{"../evil", "/etc", "a/../../b", "a/./b", "a//b", ""} {
		s := snap
		s.Roots = []SourceRoot{{Path: "/x", Name: bad, Folders: []FolderEntry{{Dir: bad}}}}
		f.Add(mustJSON(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeSnapshot(data)
		if err != nil {
			return
		}
		for _, root := range s.Roots {
			if root.Name != "" && (CheckRelPath(root.Name) != nil || !insideTarget(root.Name)) {
				t.Fatalf("accepted root name %q", root.Name)
			}
			for _, fe := range root.Folders {
				if CheckRelPath(fe.Dir) != nil || !insideTarget(path.Join(root.Name, fe.Dir)) {
					t.Fatalf("accepted folder dir %q", fe.Dir)
				}
				for _, sub := range []string{"cur", "new", "tmp"} {
					if !insideTarget(path.Join(root.Name, fe.Dir, sub)) {
						t.Fatalf("folder %q escapes", fe.Dir)
					}
				}
			}
		}
		if _, err := decodeSnapshot(mustJSON(t, s)); err != nil {
			t.Fatalf("re-encoded snapshot rejected: %v", err)
		}
	})
}

func FuzzDecodeFolderTree(f *testing.F) {
	tree := FolderTree{Version: 1, Messages: []Message{
		{Unique: "1772445605.M1P2Q3.imap1,S=1234,W=1260", Flags: "FS", MTime: 1772445605e9, Size: 1234, Blobs: []ID{seedID(1), seedID(2)},
			From: []string{"alice@example.org"}, To: []string{"bob@example.com"}, Subject: "hi", Date: "2026-03-02T10:00:00Z", MessageID: "a@b"},
		{Unique: "1772445606.M1P2Q4.imap1", New: true, Size: 10, Blobs: []ID{seedID(3)}},
		{Unique: "1772445607.M1P2Q5.imap1", New: true, Flags: "S"},
	}}
	f.Add(mustJSON(f, tree))
	f.Add(mustJSON(f, FolderTree{Version: 1}))
	for _, m := range []Message{{Unique: "../x", Flags: "S"}, {Unique: "a/b"}, {Unique: "..", New: true}, {Unique: "x", Flags: "/.."}} {
		f.Add(mustJSON(f, FolderTree{Version: 1, Messages: []Message{m}}))
	}
	// Version 2: inline, paged, and the forms it refuses.
	f.Add(mustTree(f, folderTreeV2{Version: 2, Messages: tree.Messages}))
	f.Add(mustTree(f, folderTreeV2{Version: 2}))
	f.Add(mustTree(f, folderTreeV2{Version: 2, Pages: []PageRef{{ID: seedID(4), Messages: 3, First: "a"}, {ID: seedID(5), Messages: 1024, First: "b\xff"}}}))
	f.Add(mustTree(f, folderTreeV2{Version: 2, Pages: []PageRef{{ID: seedID(4), Messages: 3, First: "a"}}}))
	f.Add(mustTree(f, folderTreeV2{Version: 2, Pages: []PageRef{{ID: seedID(4), Messages: 0}, {ID: seedID(5), Messages: 1025}}}))
	f.Add([]byte(`{"version":2,"messages":[{"unique":"a"}],"pages":[{"id":"` + seedID(4).String() + `","messages":1,"first":"a"}]}`))
	// Version 3: the same forms with columns.
	for _, v3 := range [][]byte{folderTreeV3Of(&tree), folderTreeV3Of(&FolderTree{}),
		folderTreeV3Of(&FolderTree{Pages: []PageRef{{ID: seedID(4), Messages: 3, First: "a"}, {ID: seedID(5), Messages: 1024, First: "b\xff"}}}),
		folderTreeV3Of(&FolderTree{Pages: []PageRef{{ID: seedID(4), Messages: 3, First: "a"}}}),
		folderTreeV3Of(&FolderTree{Messages: []Message{{Unique: "../x", Flags: "S"}}}),
	} {
		f.Add(v3)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := decodeFolderTree(data)
		if err != nil {
			return
		}
		if tr.Version == 1 && len(tr.Pages) > 0 || len(tr.Pages) == 1 || len(tr.Pages) > 0 && len(tr.Messages) > 0 {
			t.Fatalf("accepted version %d with %d pages and %d messages", tr.Version, len(tr.Pages), len(tr.Messages))
		}
		for _, p := range tr.Pages {
			if p.Messages < 1 || p.Messages > pageMax || p.FirstRaw != nil {
				t.Fatalf("accepted page entry %+v", p)
			}
		}
		for _, m := range tr.Messages {
			name := m.FileName()
			if CheckFileName(name) != nil || strings.Contains(name, "/") || name == "." || name == ".." {
				t.Fatalf("accepted file name %q", name)
			}
			rel := "example.com/alice/Maildir/" + m.Subdir() + "/" + name
			if CheckRelPath(rel) != nil || !insideTarget(rel) || path.Dir(rel) != "example.com/alice/Maildir/"+m.Subdir() {
				t.Fatalf("message %q lands at %q", name, rel)
			}
		}
		re := mustJSON(t, tr)
		if tr.Version == 3 {
			re = folderTreeV3Of(tr)
		}
		if _, err := decodeFolderTree(re); err != nil {
			t.Fatalf("re-encoded tree rejected: %v", err)
		}
	})
}

// folderTreeV3Of is the version 3 encoding of a decoded tree.
func folderTreeV3Of(t *FolderTree) []byte {
	raw, err := encodeTreeV3(t.Messages, t.Pages)
	if err != nil {
		panic(err)
	}
	return raw
}

// FuzzDecodeFolderPage: a page blob is accepted only with the count and
// first unique name its tree entry gives, and only with safe file names.
func FuzzDecodeFolderPage(f *testing.F) {
	msgs := []Message{
		{Unique: "1772445605.M1P2Q3.imap1,S=1234,W=1260", Flags: "FS", MTime: 1772445605e9, Size: 1234, Blobs: []ID{seedID(1), seedID(2)}, MessageID: "a@b"},
		{Unique: "1772445606.M1P2Q4.imap1\xff", New: true, Size: 10, Blobs: []ID{seedID(3)}},
	}
	f.Add(mustTree(f, folderPage{Page: 1, Messages: msgs}), 2, msgs[0].Unique)
	f.Add(mustTree(f, folderPage{Page: 1, Messages: msgs[1:]}), 1, msgs[1].Unique)
	f.Add(mustTree(f, folderPage{Page: 1}), 0, "")
	f.Add(mustTree(f, folderPage{Page: 2, Messages: msgs}), 2, msgs[0].Unique)
	f.Add(mustTree(f, folderPage{Page: 1, Messages: []Message{{Unique: "../x", Flags: "S"}}}), 1, "../x")
	f.Fuzz(func(t *testing.T, data []byte, n int, first string) {
		got, err := decodeFolderPage(data, PageRef{ID: seedID(9), Messages: n, First: first})
		if err != nil {
			return
		}
		if len(got) != n || n == 0 || got[0].Unique != first {
			t.Fatalf("page of %d messages first %q accepted for an entry of %d first %q", len(got), got[0].Unique, n, first)
		}
		for _, m := range got {
			if CheckFileName(m.FileName()) != nil || m.UniqueRaw != nil || m.NameRaw != nil {
				t.Fatalf("accepted message %+v", m)
			}
		}
	})
}

func FuzzDecodeFilesTree(f *testing.F) {
	f.Add(mustJSON(f, FilesTree{Version: 1, Entries: []FileEntry{
		{Path: "example.com", Type: "dir", Mode: 0o700, MTime: 1},
		{Path: "example.com/alice/Maildir/dovecot-uidlist", Type: "file", Mode: 0o600, MTime: 2, CTime: 3, Ino: 4, Size: 100, Blobs: []ID{seedID(1)}},
		{Path: "example.com/alice/Maildir/.Sent/maildirfolder", Type: "file", Mode: 0o600},
		{Path: "example.com/alice/sieve", Type: "symlink", Link: "../../sieve/alice"},
	}}))
	for _, p := range []string{"../evil", "/abs", "a/../../b", ".", "a/.", ""} {
		f.Add(mustJSON(f, FilesTree{Version: 1, Entries: []FileEntry{{Path: p, Type: "file"}}}))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := decodeFilesTree(data)
		if err != nil {
			return
		}
		for _, e := range tr.Entries {
			if CheckRelPath(e.Path) != nil || !insideTarget(e.Path) || !insideTarget(path.Join("root", e.Path)) {
				t.Fatalf("accepted path %q", e.Path)
			}
			if e.Path != "." && path.Clean(e.Path) != e.Path {
				t.Fatalf("accepted unclean path %q", e.Path)
			}
			switch e.Type {
			case "file", "dir", "symlink":
			default:
				t.Fatalf("accepted type %q", e.Type)
			}
		}
		if _, err := decodeFilesTree(mustJSON(t, tr)); err != nil {
			t.Fatalf("re-encoded tree rejected: %v", err)
		}
	})
}

func FuzzParsePack(f *testing.F) {
	// Seeds: packs written by packBuilder (sealed), decrypted again.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	build := func(blobs ...[]byte) []byte {
		var out bytes.Buffer
		p, err := newPackBuilder(&out, id.Recipient())
		if err != nil {
			f.Fatal(err)
		}
		for i, b := range blobs {
			if err := p.add(seedID(byte(i)), BlobType(i%2), Compression(i%2), len(b)*2, b); err != nil {
				f.Fatal(err)
			}
		}
		if _, err := p.finish(); err != nil {
			f.Fatal(err)
		}
		r, err := age.Decrypt(bytes.NewReader(out.Bytes()), id)
		if err != nil {
			f.Fatal(err)
		}
		plain, err := io.ReadAll(r)
		if err != nil {
			f.Fatal(err)
		}
		return plain
	}
	f.Add(build())
	f.Add(build([]byte("hello")))
	many := build([]byte("header\n\n"), []byte("body of the message"), nil, bytes.Repeat([]byte{0xab}, 300))
	f.Add(many)
	// Format 1, as packs before format 2 have it.
	v1, err := ParsePack(many)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(appendPackHeaderV1([]byte("header\n\nbody of the message"+strings.Repeat("\xab", 300)), v1))
	f.Add(appendPackHeaderV1(nil, nil))
	f.Add(appendPackHeaderFormat([]byte("header\n\nbody of the message"+strings.Repeat("\xab", 300)), v1, 2))
	v3 := slices.Clone(v1)
	v3[0].Compression, v3[1].Compression = Base64, Base64Zstd
	f.Add(appendPackHeader([]byte("header\n\nbody of the message"+strings.Repeat("\xab", 300)), v3))
	f.Add([]byte{0, 4, 0, 0, 0, 'M', 'V', 'P', '2'})
	f.Add([]byte{0, 4, 0, 0, 0, 'M', 'V', 'P', '3'})
	f.Add([]byte("MVP1"))
	f.Add([]byte{1, 0, 0, 0, 'M', 'V', 'P', '1'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 'M', 'V', 'P', '1'})
	f.Fuzz(func(t *testing.T, plain []byte) {
		blobs, err := ParsePack(plain)
		if err != nil {
			return
		}
		// The accepted blobs tile the data area exactly, so rebuilding
		// the pack from them gives back the same bytes.
		var again []byte
		var off uint32
		for i, b := range blobs {
			if b.Offset != off {
				t.Fatalf("blob %d at %d, want %d", i, b.Offset, off)
			}
			if b.Type > TreeBlob || b.Compression > maxCompression {
				t.Fatalf("accepted type %d compression %d", b.Type, b.Compression)
			}
			end := uint64(b.Offset) + uint64(b.Length)
			if end > uint64(len(plain)) {
				t.Fatalf("blob %d ends past the pack", i)
			}
			again = append(again, plain[b.Offset:end]...)
			off += b.Length
		}
		trailer := plain[len(plain)-packTrailer:]
		format, size, err := packHeaderSize(trailer, int64(len(plain)))
		if err != nil || format < 1 || format > 3 {
			t.Fatalf("packHeaderSize = format %d, %v", format, err)
		}
		for _, b := range blobs {
			if format < 3 && b.Compression > Zstd {
				t.Fatalf("format %d pack with compression %v", format, b.Compression)
			}
		}
		if format == 1 {
			again = appendPackHeaderV1(again, blobs)
		} else {
			again = appendPackHeaderFormat(again, blobs, format)
		}
		if !bytes.Equal(again, plain) {
			t.Fatalf("pack does not re-encode to the same bytes")
		}
		// The ranged reader's path agrees with the whole-pack one.
		hdr, err := parsePackHeader(plain[int64(len(plain))-size:len(plain)-packTrailer], format, int64(len(plain)))
		if err != nil || !reflect.DeepEqual(hdr, blobs) {
			t.Fatalf("parsePackHeader disagrees: %v", err)
		}
	})
}

// normalizeIndex makes empty and nil slices compare equal.
func normalizeIndex(ic *IndexFileContent) IndexFileContent {
	out := IndexFileContent{Version: ic.Version}
	for _, p := range ic.Packs {
		np := IndexPack{ID: p.ID}
		np.Blobs = append(np.Blobs, p.Blobs...)
		out.Packs = append(out.Packs, np)
	}
	out.Supersedes = append(out.Supersedes, ic.Supersedes...)
	return out
}

// FuzzNameRoundTrip: every message, folder and file name that backup
// accepts — those CheckFileName passes, the check every reader makes —
// comes back byte for byte from the stored manifests, whatever bytes it
// holds (not UTF-8, backslashes, newlines, ":2," twice). What backup
// accepts, restore gives back.
func FuzzNameRoundTrip(f *testing.F) {
	for _, s := range []string{
		`1700000010.M10P10Q10.host\057name:2,S`, `1700000010.M10P10Q10.host\072name:2,S`,
		"a\xff\xfeb:2,S", "x:2,S:2,T", "y,S=999:2,RS", "new\nline", "u:2,S\xff", ":2,", "..x", "\\",
		"u!2,S", "u;2,ab", strings.Repeat("é", 127) + "\xc3",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, name string, isNew bool) {
		if CheckFileName(name) != nil {
			return // no directory listing can hold it
		}
		m := messageFromName(maildir.ParseName(name), name, isNew)
		m.Blobs = []ID{seedID(1)}
		tree, err := decodeFolderTree(mustTree(t, FolderTree{Version: 1, Messages: []Message{m}}))
		if err != nil {
			t.Fatalf("message %q: stored tree refused: %v", name, err)
		}
		if got := tree.Messages[0]; got.FileName() != name || got.New != isNew || got.Unique != m.Unique {
			t.Fatalf("message %q came back as %q (new %v, unique %q)", name, got.FileName(), got.New, got.Unique)
		}

		dir := "example.com/" + name + "/Maildir/." + name
		snap := Snapshot{Version: 1, Paths: []string{"/src/" + name}, Roots: []SourceRoot{{
			Path: "/src/" + name, Name: name,
			Folders: []FolderEntry{{User: name + "@example.com", Folder: name, Dir: dir}},
		}}}
		s, err := decodeSnapshot(mustJSON(t, snap))
		if err != nil {
			t.Fatalf("folder %q: stored snapshot refused: %v", name, err)
		}
		r, fe := s.Roots[0], s.Roots[0].Folders[0]
		if r.Path != snap.Roots[0].Path || r.Name != name || s.Paths[0] != snap.Paths[0] ||
			fe.User != name+"@example.com" || fe.Folder != name || fe.Dir != dir {
			t.Fatalf("folder %q came back as %+v", name, s)
		}

		files := FilesTree{Version: 1, Entries: []FileEntry{
			{Path: dir + "/" + name, Type: "file"},
			{Path: name, Type: "symlink", Link: "../" + name},
		}}
		ft, err := decodeFilesTree(mustTree(t, files))
		if err != nil {
			t.Fatalf("file %q: stored tree refused: %v", name, err)
		}
		for i, e := range ft.Entries {
			if e.Path != files.Entries[i].Path || e.Link != files.Entries[i].Link {
				t.Fatalf("file %q came back as %q -> %q", name, e.Path, e.Link)
			}
		}
	})
}

// mustTree encodes a tree as backup stores it.
func mustTree(t testing.TB, v any) []byte {
	raw, err := encodeTree(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// FuzzDecodeMsgIndex: the Message-ID index's root, run and page decoders
// refuse what they cannot vouch for: a page only with its entry's count
// and first key, sorted, in either form.
func FuzzDecodeMsgIndex(f *testing.F) {
	entries := []msgEntryJSON{
		{Key: "00a3c1d2e4f50617", Dir: "example.com/alice/Maildir", Unique: "1700000000.M1P2Q3.host"},
		{Key: "00a3c1d2e4f50617", Dir: "example.com/bob/Maildir\xff", Unique: "u\xfe", Gone: true},
		{Key: "ff00000000000000", Dir: ".", Unique: "x"},
	}
	f.Add(mustTree(f, msgPageJSON{Page: 1, Entries: entries}), 3, "00a3c1d2e4f50617")
	f.Add(mustTree(f, msgPageJSON{Page: 1, Entries: []msgEntryJSON{entries[2], entries[0]}}), 2, "ff00000000000000")
	f.Add(encodeMsgPage([]msgEntry{{key: 0x00a3c1d2e4f50617, folder: 7, msg: 9}, {key: 0x00a3c1d2e4f50617, folder: 8, msg: 1, gone: true}, {key: 0xff00000000000000}}), 3, "00a3c1d2e4f50617")
	f.Add(mustJSON(f, msgRun{Run: 1, Pages: []msgPageRef{{ID: seedID(1), First: "00", Entries: 256}}}), 0, "")
	f.Add(mustJSON(f, msgRun{Run: 2, Pages: []msgPageRef{{ID: seedID(1), First: "00", Entries: 1024}}}), 0, "")
	f.Add(mustJSON(f, msgIndexRoot{Index: 1, Runs: []msgRunRef{{ID: seedID(2), Entries: 5}}}), 0, "")
	f.Fuzz(func(t *testing.T, data []byte, n int, first string) {
		if root, err := decodeMsgIndexRoot(data); err == nil && root.Index != 1 && root.Index != 2 {
			t.Fatalf("accepted index format %d", root.Index)
		}
		if run, err := decodeMsgRun(data); err == nil {
			for _, p := range run.Pages {
				if p.Entries < 1 || p.Entries > msgPageEntries || run.Run == 1 && p.Entries > msgPageEntriesJSON {
					t.Fatalf("accepted page entry %+v of run form %d", p, run.Run)
				}
			}
		}
		ref := msgPageRef{ID: seedID(3), First: first, Entries: n}
		if got, err := decodeMsgPage(data, ref); err == nil {
			if len(got) != n || keyHex(got[0].key) != first {
				t.Fatalf("page of %d entries accepted for an entry of %d first %q", len(got), n, first)
			}
			for i := 1; i < len(got); i++ {
				if compareMsgEntries(got[i-1], got[i]) >= 0 {
					t.Fatalf("accepted entries %+v", got)
				}
			}
			if !bytes.Equal(encodeMsgPage(got), data) {
				t.Fatalf("page accepted that its entries do not encode to")
			}
		}
		got, err := decodeMsgPageJSON(data, ref)
		if err != nil {
			return
		}
		if len(got) != n || keyHex(got[0].key) != first {
			t.Fatalf("page of %d entries accepted for an entry of %d first %q", len(got), n, first)
		}
		for i := 1; i < len(got); i++ {
			if got[i-1].key > got[i].key {
				t.Fatalf("accepted entries %+v", got)
			}
		}
	})
}

// FuzzDecodeTreeV3: a version 3 tree or page blob is accepted only when
// its columns fit its messages, and encoding what it decodes to gives a
// blob that decodes the same and encodes to itself (byte for byte).
func FuzzDecodeTreeV3(f *testing.F) {
	msgs := []Message{
		{Unique: "1772445605.M1P2Q3.imap1,S=1234,W=1260", Flags: "FS", MTime: 1772445605e9 + 17, Size: 1234, Blobs: []ID{seedID(1), seedID(2)},
			From: []string{"alice@example.org"}, To: []string{"bob@example.com"}, Subject: "hi", Date: "2026-03-02T10:00:00Z", MessageID: "a@b"},
		{Unique: "1772445606.M1P2Q4.imap1\xff", New: true, Size: 10, Blobs: []ID{seedID(3)}, MTime: -5},
		{Unique: "x", New: true, Flags: "S", Name: "x!2,S\xfe", Cc: []string{"c@d"}},
	}
	for _, m := range [][]Message{msgs, msgs[1:], nil} {
		raw, err := encodeTreeV3(m, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		if raw, err = encodePageV3(m); err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	raw, err := encodeTreeV3(nil, []PageRef{{ID: seedID(4), Messages: 3, First: "a"}, {ID: seedID(5), Messages: 1024, First: "b\xff"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"version":3,"messages":{"unique":["a","b"],"size":[1]}}`))
	f.Add([]byte(`{"version":3,"messages":{"unique":["a","b"],"new":[1,0],"name":{"2":"x"}}}`))
	f.Add([]byte(`{"page":2,"messages":{"unique":["a"],"unique_raw":{"0":"/w=="},"name_raw":{"0":"eA=="}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if tr, err := decodeFolderTree(data); err == nil && tr.Version == 3 {
			a, err := encodeTreeV3(tr.Messages, tr.Pages)
			if err != nil {
				t.Fatal(err)
			}
			tr2, err := decodeFolderTree(a)
			if err != nil {
				t.Fatalf("re-encoded tree rejected: %v", err)
			}
			if b, _ := encodeTreeV3(tr2.Messages, tr2.Pages); !bytes.Equal(a, b) {
				t.Fatalf("round trip changed the tree:\n%s\n%s", a, b)
			}
		}
		var pg struct{ Page int }
		if json.Unmarshal(data, &pg) != nil || pg.Page != 2 {
			return
		}
		var c struct {
			Messages struct{ Unique []string } `json:"messages"`
		}
		json.Unmarshal(data, &c)
		if len(c.Messages.Unique) == 0 {
			return
		}
		first := c.Messages.Unique[0]
		var rc struct {
			Messages struct {
				UniqueRaw map[int][]byte `json:"unique_raw"`
			} `json:"messages"`
		}
		json.Unmarshal(data, &rc)
		if raw, ok := rc.Messages.UniqueRaw[0]; ok {
			first = string(raw)
		}
		got, err := decodeFolderPage(data, PageRef{ID: seedID(9), Messages: len(c.Messages.Unique), First: first})
		if err != nil {
			return
		}
		for _, m := range got {
			if CheckFileName(m.FileName()) != nil || m.UniqueRaw != nil || m.NameRaw != nil {
				t.Fatalf("accepted message %+v", m)
			}
		}
		a, err := encodePageV3(got)
		if err != nil {
			t.Fatal(err)
		}
		got2, err := decodeFolderPage(a, PageRef{ID: seedID(9), Messages: len(got), First: got[0].Unique})
		if err != nil {
			t.Fatalf("re-encoded page rejected: %v", err)
		}
		if b, _ := encodePageV3(got2); !bytes.Equal(a, b) {
			t.Fatalf("round trip changed the page:\n%s\n%s", a, b)
		}
	})
}

// FuzzTreeV3MatchesV2: a message reads back from a version 3 tree exactly
// as from a version 2 one (names not UTF-8, any mtime, any header text).
func FuzzTreeV3MatchesV2(f *testing.F) {
	f.Add("1772445605.M1P2Q3.imap1,S=1234,W=1260", "FS", false, int64(1772445605e9+17), int64(1234), "hi", "a@b", "", "2026-03-02T10:00:05Z")
	f.Add("1772445606.M1P2Q4.imap1\xff,S=99", "", true, int64(-1), int64(0), "\xfe\xff", "", "n\xff", "2026-03-02T10:00:05+02:00")
	f.Add("99999999999999,S=9999999999999999999", "S", false, int64(-1<<63), int64(1<<62), "", "x", "", "0001-01-01T00:00:00Z")
	f.Add("1,S=12", "S", false, int64(1<<63-1), int64(11), "", "x", "", "9999-12-31T23:59:59Z")
	f.Fuzz(func(t *testing.T, unique, flags string, isNew bool, mtime, size int64, subject, msgID, name, date string) {
		if size < 0 {
			size = -(size + 1)
		}
		m := Message{Unique: unique, Flags: flags, New: isNew, MTime: mtime, Size: size, Blobs: []ID{seedID(1)},
			From: []string{subject}, Subject: subject, Date: date, MessageID: msgID, Name: name}
		msgs := []Message{m, {Unique: unique + "1", MTime: mtime / 3, Blobs: []ID{}, Cc: []string{msgID}, Date: subject}}
		v2, err := encodeTree(folderTreeV2{Version: 2, Messages: msgs})
		if err != nil {
			t.Fatal(err)
		}
		want, err2 := decodeFolderTree(v2)
		v3, err := encodeTreeV3(msgs, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err3 := decodeFolderTree(v3)
		if (err2 == nil) != (err3 == nil) {
			t.Fatalf("version 2 decodes with %v, version 3 with %v", err2, err3)
		}
		if err2 != nil {
			return
		}
		a, b := mustJSON(t, want.Messages), mustJSON(t, got.Messages)
		if !bytes.Equal(a, b) {
			t.Fatalf("version 3 gives\n%s\nversion 2\n%s", b, a)
		}
		if got.Messages[0].Unique != unique || got.Messages[0].MTime != mtime || got.Messages[0].Name != name {
			t.Fatalf("message %+v, want unique %q mtime %d name %q", got.Messages[0], unique, mtime, name)
		}
	})
}

// FuzzFastColumnsMatchJSON: the hand-written column reader (treefast.go)
// takes a "messages" object or a page blob only when encoding/json takes
// it too, and decodes it to exactly the same columns.
func FuzzFastColumnsMatchJSON(f *testing.F) {
	msgs := []Message{
		{Unique: "1772445605.M1P2Q3.imap1,S=1234,W=1260", Flags: "FS", MTime: 1772445605e9 + 17, Size: 1234, Blobs: []ID{seedID(1), seedID(2)},
			From: []string{"alice@example.org", "a<b>&é"}, To: []string{"bob@example.com"}, Subject: "hi \"x\"\n\xff", Date: "2026-03-02T10:00:00Z", MessageID: "a@b"},
		{Unique: "1772445606.M1P2Q4.imap1\xff", New: true, Size: 10, Blobs: []ID{seedID(3)}, MTime: -5, Date: "Mon, 2 Mar"},
		{Unique: "x", New: true, Flags: "S", Name: "x!2,S\xfe", Cc: []string{"c@d"}, Blobs: []ID{}},
	}
	for _, m := range [][]Message{msgs, msgs[1:], msgs[2:]} {
		raw, err := encodePageV3(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		if raw, err = encodeTreeV3(m, nil); err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		if raw, err = json.Marshal(encodeColumns(m)); err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"page":2,"messages":{"unique":["a","b"],"size":[1, -0],"new":[01],"name":{"+1":"x"}}}`))
	f.Add([]byte(` { "messages" : {"unique":["a"],"Unique":["b"],"date":[1.5,"\u0041",null]} , "page" : 2 } `))
	f.Add([]byte(`{"page":2,"messages":{"unique":["a","b"],"cc":[null,["x"]],"blobs":[null,["` + strings.Repeat("A", 64) + `"]],"unique_raw":{"0":"/w=="},"name_raw":{"0":"eA=="}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, ok := fastPageV3(data); ok {
			var w struct {
				Page     int             `json:"page"`
				Messages *messageColumns `json:"messages"`
			}
			if err := json.Unmarshal(data, &w); err != nil || w.Page != 2 || w.Messages == nil {
				t.Fatalf("fast page reader took what encoding/json refuses (%v, page %d): %q", err, w.Page, data)
			}
			if !reflect.DeepEqual(&c, w.Messages) {
				t.Fatalf("fast page reader gives\n%#v\nencoding/json\n%#v", c, *w.Messages)
			}
		}
		if c, ok := fastTreeV3(data); ok {
			var w folderTreeV3
			if err := json.Unmarshal(data, &w); err != nil || w.Version != 3 || w.Messages == nil || w.Pages != nil {
				t.Fatalf("fast tree reader took what encoding/json refuses or reads otherwise (%v): %q", err, data)
			}
			if !reflect.DeepEqual(&c, w.Messages) {
				t.Fatalf("fast tree reader gives\n%#v\nencoding/json\n%#v", c, *w.Messages)
			}
		}
		if c, ok := fastColumns(data); ok {
			var want messageColumns
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatalf("fast column reader took what encoding/json refuses (%v): %q", err, data)
			}
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("fast column reader gives\n%#v\nencoding/json\n%#v", c, want)
			}
		}
	})
}
