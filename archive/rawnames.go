package archive

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// A Linux file name is any bytes but '/' and NUL; a JSON string holds only
// UTF-8, and encoding/json replaces every invalid byte with U+FFFD. So
// that a Latin-1 folder name or a unique name with a stray 0xff byte
// restores as it was, every name field X of the manifests has a wire twin
// X_raw: when X is not valid UTF-8, X_raw holds its exact bytes (base64,
// as encoding/json writes []byte) and X a readable form with U+FFFD for
// the bad bytes (docs/FORMAT.md "Names"). A reader takes X_raw when it is
// there. Valid names — all but a few — have no twin and cost one UTF-8
// scan.
//
// The twins are filled on a copy: for trees by encodeTree, through which
// every tree blob is stored, and for snapshots by SourceRoot's MarshalJSON
// (it holds the FolderEntry list), so that every path that stores a
// snapshot — backup, copy, the write-only parent cache, repair — encodes
// them alike. The decode functions in snapshot.go consume them and then
// validate the names.

// rawOf is the wire twin of s: nil when s is valid UTF-8.
func rawOf(s string) []byte {
	if utf8.ValidString(s) {
		return nil
	}
	return []byte(s)
}

// takeRaw replaces *s by its twin, if any, and clears the twin.
func takeRaw(s *string, raw *[]byte) {
	if *raw != nil {
		*s = string(*raw)
		*raw = nil
	}
}

func (m *Message) needsRaw() bool {
	return !utf8.ValidString(m.Unique) || !utf8.ValidString(m.Name)
}

func (m *Message) encodeRaw() {
	m.UniqueRaw, m.NameRaw = rawOf(m.Unique), rawOf(m.Name)
}

func (m *Message) decodeRaw() {
	takeRaw(&m.Unique, &m.UniqueRaw)
	takeRaw(&m.Name, &m.NameRaw)
}

func (e *FileEntry) needsRaw() bool {
	return !utf8.ValidString(e.Path) || !utf8.ValidString(e.Link)
}

func (e *FileEntry) encodeRaw() {
	e.PathRaw, e.LinkRaw = rawOf(e.Path), rawOf(e.Link)
}

func (e *FileEntry) decodeRaw() {
	takeRaw(&e.Path, &e.PathRaw)
	takeRaw(&e.Link, &e.LinkRaw)
}

func (f *FolderEntry) needsRaw() bool {
	return !utf8.ValidString(f.User) || !utf8.ValidString(f.Folder) || !utf8.ValidString(f.Dir)
}

func (f *FolderEntry) encodeRaw() {
	f.UserRaw, f.FolderRaw, f.DirRaw = rawOf(f.User), rawOf(f.Folder), rawOf(f.Dir)
}

func (f *FolderEntry) decodeRaw() {
	takeRaw(&f.User, &f.UserRaw)
	takeRaw(&f.Folder, &f.FolderRaw)
	takeRaw(&f.Dir, &f.DirRaw)
}

// withRaw returns items, or a copy of it with the twins filled in where
// an item needs them.
func withRaw[T any](items []T, needs func(*T) bool, encode func(*T)) []T {
	for i := range items {
		if !needs(&items[i]) {
			continue
		}
		out := append([]T(nil), items...)
		for j := i; j < len(out); j++ {
			if needs(&out[j]) {
				encode(&out[j])
			}
		}
		return out
	}
	return items
}

// encodeTree is the JSON of a tree blob (FolderTree or FilesTree) with the
// wire twins filled in. Not a MarshalJSON method: encoding/json re-scans
// whatever such a method returns, which doubled the time to encode a
// 20,000-message folder (BenchmarkEncodeFolderTree); every tree is stored
// through this function instead.
func encodeTree(v any) ([]byte, error) {
	switch t := v.(type) {
	case FolderTree:
		t.Messages = withRaw(t.Messages, (*Message).needsRaw, (*Message).encodeRaw)
		v = t
	case folderTreeV2:
		t.Messages = withRaw(t.Messages, (*Message).needsRaw, (*Message).encodeRaw)
		t.Pages = withRaw(t.Pages, func(p *PageRef) bool { return !utf8.ValidString(p.First) }, func(p *PageRef) { p.FirstRaw = rawOf(p.First) })
		v = t
	case msgPageJSON:
		t.Entries = withRaw(t.Entries, (*msgEntryJSON).needsRaw, (*msgEntryJSON).encodeRaw)
		v = t
	case folderPage:
		t.Messages = withRaw(t.Messages, (*Message).needsRaw, (*Message).encodeRaw)
		v = t
	case FilesTree:
		t.Entries = withRaw(t.Entries, (*FileEntry).needsRaw, (*FileEntry).encodeRaw)
		v = t
	}
	return json.Marshal(v)
}

// MarshalJSON writes the root with wire twins for its own and its
// folders' names that are not UTF-8.
func (r SourceRoot) MarshalJSON() ([]byte, error) {
	type plain SourceRoot
	r.PathRaw, r.NameRaw = rawOf(r.Path), rawOf(r.Name)
	r.Folders = withRaw(r.Folders, (*FolderEntry).needsRaw, (*FolderEntry).encodeRaw)
	return json.Marshal(plain(r))
}

// decodeRaw puts the exact names back into a decoded snapshot. Paths has
// no twins: it lists the roots' paths again, so an entry that is the
// readable form of a root's path is that path.
func (s *Snapshot) decodeRaw() {
	for i := range s.Roots {
		r := &s.Roots[i]
		takeRaw(&r.Path, &r.PathRaw)
		takeRaw(&r.Name, &r.NameRaw)
		for j := range r.Folders {
			r.Folders[j].decodeRaw()
		}
		if utf8.ValidString(r.Path) {
			continue
		}
		shown := readable(r.Path)
		for k, p := range s.Paths {
			if p == shown {
				s.Paths[k] = r.Path
			}
		}
	}
}

// readable is s as encoding/json writes it: each byte that is not part of
// a valid UTF-8 sequence becomes U+FFFD.
func readable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
