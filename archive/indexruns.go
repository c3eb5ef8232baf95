package archive

import (
	"unsafe"
)

// A table built from the index files (buildTable) would need its
// entries in memory to sort them: 48 bytes a blob, 490 MB at 10 M blobs,
// and as much again for a moment while the chunks are copied into one
// table. Instead the entries are sorted runEntries at a time into runs of
// a scratch file (unlinked at once, like the index's spill file), and the
// runs — with the table the files are merged into, read back a page at a
// time — are merged straight into the new table file. The heap holds one
// run and a read buffer per run.

// runEntries is the entries sorted in memory into one run (26 MB); a
// variable for tests.
var runEntries = 1 << 19

// taggedEntry is an entry of a run and the attempt (indexBuilder.tag)
// that read it: entries of files that turn out superseded, or that
// failed half-way, are dropped by the merge.
type taggedEntry struct {
	e   indexEntry
	tag uint32
}

const taggedSize = int(unsafe.Sizeof(taggedEntry{}))

// baseTag tags the entries of the table the runs are merged with.
const baseTag = ^uint32(0)

// runSpill is the sorted runs of a table build.
type runSpill = sortedRuns[taggedEntry]

func newRunSpill(dir string) *runSpill {
	return &runSpill{perRun: runEntries, cmp: compareTagged, dir: dir, pattern: ".tmp-runs-"}
}

func compareTagged(a, b taggedEntry) int { return compareEntries(a.e, b.e) }

// mergeRuns writes to tw, in order and each blob once (its first place),
// the entries of base and of the files in live, their packs renumbered
// (dropPacks).
func (b *indexBuilder) mergeRuns(live map[ID]bool, base *indexTable, tw *tableWriter) error {
	s := b.runs
	liveTag := make([]bool, b.attempts)
	for _, f := range b.files {
		liveTag[f.tag] = live[f.id]
	}
	renum := b.dropPacks(live)
	var srcs []func(*taggedEntry) (bool, error)
	if base != nil {
		st := &tableStream{t: base}
		srcs = append(srcs, func(te *taggedEntry) (bool, error) {
			e, ok := st.next()
			if !ok {
				return false, st.err
			}
			te.e, te.tag = *e, baseTag
			return true, nil
		})
	}
	srcs = append(srcs, s.readers(128<<10)...)
	var last ID
	first := true
	err := mergeSorted(srcs, compareTagged, func(te *taggedEntry) error {
		if (te.tag == baseTag || liveTag[te.tag]) && (first || te.e.id != last) {
			e := te.e
			if renum != nil {
				e.pack = e.pack&^entryOrdMask | renum[e.ord()]
			}
			tw.add(&e)
			last, first = e.id, false
		}
		return nil
	})
	s.pending = nil
	return err
}
