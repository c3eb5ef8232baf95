package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// MutateOptions configures Mutate.
type MutateOptions struct {
	// Seed selects which messages change; use another seed than the tree's.
	Seed uint64
	// FlagChanges messages are renamed: new/ → cur/ with ":2,S" for unread
	// mail, otherwise a changed ":2," flag string in cur/.
	FlagChanges int
	// NewMessages are delivered to new/ of users drawn at random.
	NewMessages int
	// Deletions messages are removed (expunged), drawn after and apart
	// from the flag changes, so that the same seed renames the same
	// messages whatever is deleted.
	Deletions int
	// Keep is a path (relative to the root) that must not be renamed: the
	// probe the benchmark restores afterwards by its path.
	Keep string
	// HeadersOnly and End as for the tree, so new mail looks like the old.
	HeadersOnly bool
	End         time.Time
}

// MutateStats is what Mutate changed.
type MutateStats struct {
	FlagChanges int     `json:"flag_changes"`
	NewMessages int     `json:"new_messages"`
	Deletions   int     `json:"deletions"`
	Seconds     float64 `json:"seconds"`
}

// nextFlags is the flag change a client makes: read, answer, flag, unflag.
var nextFlags = map[string]string{"": "S", "S": "RS", "RS": "FRS", "FS": "S", "FRS": "RS"}

// Mutate renames FlagChanges message files, removes Deletions others and
// delivers NewMessages, the same way for the same seed on the same tree.
func Mutate(root string, o MutateOptions) (*MutateStats, error) {
	start := time.Now()
	if o.End.IsZero() {
		o.End = defaultEnd
	}
	var msgs []string
	var maildirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "Maildir" {
			maildirs = append(maildirs, p)
		}
		if d.Type().IsRegular() {
			switch filepath.Base(filepath.Dir(p)) {
			case "cur", "new":
				msgs = append(msgs, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// WalkDir visits in lexical order already; sorting anyway makes the
	// choice independent of that detail.
	slices.Sort(msgs)
	slices.Sort(maildirs)
	if len(maildirs) == 0 {
		return nil, fmt.Errorf("no Maildir under %s", root)
	}
	keep := ""
	if o.Keep != "" {
		keep = filepath.Join(root, o.Keep)
	}
	r := rngFor(o.Seed, 1<<60)
	st := &MutateStats{}
	// A partial Fisher–Yates shuffle picks distinct messages.
	i := 0
	for ; i < len(msgs) && st.FlagChanges < o.FlagChanges; i++ {
		j := i + r.IntN(len(msgs)-i)
		msgs[i], msgs[j] = msgs[j], msgs[i]
		p := msgs[i]
		if p == keep {
			continue
		}
		dir, name := filepath.Split(p)
		var np string
		if filepath.Base(dir) == "new" {
			np = filepath.Join(filepath.Dir(filepath.Clean(dir)), "cur", name+":2,S")
		} else {
			k := strings.LastIndex(name, ":2,")
			if k < 0 {
				continue
			}
			nf, ok := nextFlags[name[k+3:]]
			if !ok {
				nf = "S"
			}
			np = filepath.Join(dir, name[:k+3]+nf)
		}
		if err := os.Rename(p, np); err != nil {
			return nil, err
		}
		st.FlagChanges++
	}
	// The shuffle goes on where the renames stopped: the deleted messages
	// are others than the renamed ones.
	for ; i < len(msgs) && st.Deletions < o.Deletions; i++ {
		j := i + r.IntN(len(msgs)-i)
		msgs[i], msgs[j] = msgs[j], msgs[i]
		if msgs[i] == keep {
			continue
		}
		if err := os.Remove(msgs[i]); err != nil {
			return nil, err
		}
		st.Deletions++
	}
	g := &userGen{o: Options{Seed: o.Seed, HeadersOnly: o.HeadersOnly, End: o.End}, text: newText(o.Seed), users: len(maildirs), recent: true}
	g.shared = sharedBodies(o.Seed, g.text)
	for q := range o.NewMessages {
		md := maildirs[r.IntN(len(maildirs))]
		user := filepath.Base(filepath.Dir(md))
		domain := filepath.Base(filepath.Dir(filepath.Dir(md)))
		// A user number no generated user has keeps Message-IDs and names
		// apart from the tree's (its pid part is 1000 + user).
		m := g.message(r, 1_000_000_000+int(o.Seed%1000), q, 0, domain, user)
		p := filepath.Join(md, "new", m.unique)
		if err := os.WriteFile(p, m.data, 0o600); err != nil {
			return nil, err
		}
		if err := os.Chtimes(p, m.date, m.date); err != nil {
			return nil, err
		}
		st.NewMessages++
	}
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}
