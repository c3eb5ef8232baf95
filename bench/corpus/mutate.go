package corpus

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailvault/mailvault/maildir"
)

// MutateOptions configures Mutate. Counts are upper bounds: a corpus with
// fewer candidate messages gets fewer changes. Zero means none.
type MutateOptions struct {
	// Seed selects the changes; the same seed on the same tree makes the
	// same changes.
	Seed uint64
	// NewMessages is the number of new messages to deliver (each may fan
	// out to several mailboxes, like generated mail).
	NewMessages int
	// FlagChanges is the number of messages whose flags change. About half
	// are new/ → cur/ moves (a client reading new mail), as long as new/
	// has mail; the rest are renames within cur/.
	FlagChanges int
	// Moves is the number of messages moved to another folder of the same
	// user.
	Moves int
	// Deletes is the number of messages expunged.
	Deletes int
	// AttachmentFraction is the share of new messages with an attachment
	// (default 0.12).
	AttachmentFraction float64
	// Host is the host name in new message file names (default "imap1").
	Host string
}

// MutateStats reports what Mutate changed.
type MutateStats struct {
	NewMessages  int   `json:"new_messages"`
	NewFiles     int   `json:"new_files"`
	NewBytes     int64 `json:"new_bytes"`
	FlagChanges  int   `json:"flag_changes"` // renames within cur/
	NewToCur     int   `json:"new_to_cur"`   // moves from new/ to cur/
	Moves        int   `json:"moves"`
	Deletes      int   `json:"deletes"`
	DeletedBytes int64 `json:"deleted_bytes"`
}

// userDir is a mailbox found on disk.
type userDir struct {
	domain, user string
	dir          string // relative to the corpus root: <domain>/<user>/Maildir
	folders      []string
}

// msgFile is a message file found on disk.
type msgFile struct {
	user   int
	folder string
	sub    string
	name   string
	size   int64
	mtime  time.Time
}

func (f msgFile) path(root string, users []userDir) string {
	return filepath.Join(root, users[f.user].dir, f.folder, f.sub, f.name)
}

// scan lists the mailboxes and messages of a corpus in lexical order.
func scan(root string) ([]userDir, []msgFile, error) {
	var users []userDir
	var files []msgFile
	domains, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, fmt.Errorf("scan corpus: %w", err)
	}
	for _, d := range domains {
		if !d.IsDir() {
			continue
		}
		us, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, nil, fmt.Errorf("scan corpus: %w", err)
		}
		for _, u := range us {
			dir := filepath.Join(d.Name(), u.Name(), "Maildir")
			entries, err := os.ReadDir(filepath.Join(root, dir))
			if err != nil {
				continue // not a mailbox
			}
			ud := userDir{domain: d.Name(), user: u.Name(), dir: dir, folders: []string{""}}
			for _, e := range entries {
				if e.IsDir() && strings.HasPrefix(e.Name(), ".") {
					ud.folders = append(ud.folders, e.Name())
				}
			}
			for _, f := range ud.folders {
				for _, sub := range []string{"cur", "new"} {
					ms, err := os.ReadDir(filepath.Join(root, dir, f, sub))
					if err != nil {
						return nil, nil, fmt.Errorf("scan corpus: %w", err)
					}
					for _, m := range ms {
						info, err := m.Info()
						if err != nil {
							return nil, nil, fmt.Errorf("scan corpus: %w", err)
						}
						files = append(files, msgFile{user: len(users), folder: f, sub: sub, name: m.Name(), size: info.Size(), mtime: info.ModTime()})
					}
				}
			}
			users = append(users, ud)
		}
	}
	if len(users) == 0 {
		return nil, nil, fmt.Errorf("scan corpus: no mailboxes under %s", root)
	}
	return users, files, nil
}

// Mutate changes a corpus the way mail traffic would between two backups.
// Its times follow the newest message already in the tree, never the clock.
func Mutate(ctx context.Context, root string, opt MutateOptions) (MutateStats, error) {
	var st MutateStats
	if opt.AttachmentFraction <= 0 {
		opt.AttachmentFraction = 0.12
	}
	if opt.Host == "" {
		opt.Host = "imap1"
	}
	users, files, err := scan(root)
	if err != nil {
		return st, err
	}
	r := rand.New(rand.NewPCG(opt.Seed, 0x6d7574617465))
	now := spanEnd
	for _, f := range files {
		if f.mtime.After(now) {
			now = f.mtime
		}
	}
	now = now.Truncate(time.Second).Add(time.Minute)

	touched := make(map[[2]string]bool) // {user dir, folder}
	touch := func(u int, folder string) { touched[[2]string{users[u].dir, folder}] = true }
	taken := make([]bool, len(files))
	order := r.Perm(len(files))
	// pickFrom returns the next untaken file in random order that ok accepts.
	pos := 0
	pickFrom := func(ok func(msgFile) bool) (int, bool) {
		for ; pos < len(order); pos++ {
			if i := order[pos]; !taken[i] && ok(files[i]) {
				taken[i] = true
				pos++
				return i, true
			}
		}
		return 0, false
	}
	anyFile := func(msgFile) bool { return true }

	for range opt.Deletes {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		i, ok := pickFrom(anyFile)
		if !ok {
			break
		}
		f := files[i]
		if err := os.Remove(f.path(root, users)); err != nil {
			return st, fmt.Errorf("delete message: %w", err)
		}
		touch(f.user, f.folder)
		st.Deletes++
		st.DeletedBytes += f.size
	}

	for range opt.Moves {
		i, ok := pickFrom(func(f msgFile) bool { return len(users[f.user].folders) > 1 })
		if !ok {
			break
		}
		f := files[i]
		fs := users[f.user].folders
		dest := fs[r.IntN(len(fs))]
		for dest == f.folder {
			dest = fs[r.IntN(len(fs))]
		}
		// A move keeps the unique part of the name; mail from new/ lands
		// in cur/ as read.
		name := f.name
		if f.sub == "new" {
			name = maildir.FileName(maildir.ParseName(f.name).Unique, "S")
		}
		to := filepath.Join(root, users[f.user].dir, dest, "cur", name)
		if err := os.Rename(f.path(root, users), to); err != nil {
			return st, fmt.Errorf("move message: %w", err)
		}
		touch(f.user, f.folder)
		touch(f.user, dest)
		st.Moves++
	}

	// Reading new mail first, then flag changes of older mail.
	pos = 0
	for range (opt.FlagChanges + 1) / 2 {
		i, ok := pickFrom(func(f msgFile) bool { return f.sub == "new" })
		if !ok {
			break
		}
		f := files[i]
		name := maildir.FileName(maildir.ParseName(f.name).Unique, []string{"S", "S", "RS", "FS"}[r.IntN(4)])
		if err := os.Rename(f.path(root, users), filepath.Join(root, users[f.user].dir, f.folder, "cur", name)); err != nil {
			return st, fmt.Errorf("change flags: %w", err)
		}
		touch(f.user, f.folder)
		st.NewToCur++
	}
	pos = 0
	for st.NewToCur+st.FlagChanges < opt.FlagChanges {
		i, ok := pickFrom(func(f msgFile) bool { return f.sub == "cur" })
		if !ok {
			break
		}
		f := files[i]
		n := maildir.ParseName(f.name)
		flag := []string{"S", "R", "F", "F", "T"}[r.IntN(5)]
		flags := n.Flags + flag
		if strings.Contains(n.Flags, flag) {
			flags = strings.ReplaceAll(n.Flags, flag, "")
		}
		name := maildir.FileName(n.Unique, flags)
		if err := os.Rename(f.path(root, users), filepath.Join(root, users[f.user].dir, f.folder, "cur", name)); err != nil {
			return st, fmt.Errorf("change flags: %w", err)
		}
		touch(f.user, f.folder)
		st.FlagChanges++
	}

	if opt.NewMessages > 0 {
		w := worldFromTree(r, users)
		comp := newComposer(r, w, opt.AttachmentFraction)
		del := newDeliverer(r, root, opt.Host)
		inNew := func(*rand.Rand, time.Time) (string, string, string) { return "", "new", "" }
		var body, scratch []byte
		for range opt.NewMessages {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			now = now.Add(time.Duration(10+r.IntN(300)) * time.Second)
			m := comp.compose(now)
			j := del.plan(m, inNew)
			if body, scratch, err = writeJob(j, body[:0], scratch); err != nil {
				return st, err
			}
			st.NewMessages++
			st.NewFiles += len(j.copies)
			for _, c := range j.copies {
				st.NewBytes += int64(len(c.prefix)) + m.size
			}
		}
		for _, u := range w.locals {
			for folder := range del.index[u.dir] {
				touched[[2]string{u.dir, folder}] = true
			}
		}
	}

	now = now.Add(time.Minute)
	keys := make([][2]string, 0, len(touched))
	for k := range touched {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1]) })
	for _, k := range keys {
		if err := updateFolder(filepath.Join(root, k[0], k[1]), now); err != nil {
			return st, err
		}
	}
	return st, nil
}

// updateFolder rewrites a folder's dovecot-uidlist after changes, keeping
// the uids of messages that stayed and numbering new arrivals after them,
// and stamps the folder's directories with the mutation time.
func updateFolder(dir string, now time.Time) error {
	validity, next, old := readUIDList(filepath.Join(dir, "dovecot-uidlist"))
	var arrivals []string
	uids := make(map[string]int)
	for _, sub := range []string{"cur", "new"} {
		es, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return fmt.Errorf("update folder: %w", err)
		}
		for _, e := range es {
			u := maildir.ParseName(e.Name()).Unique
			if id, ok := old[u]; ok {
				uids[u] = id
			} else {
				arrivals = append(arrivals, u)
			}
		}
	}
	slices.Sort(arrivals) // unique names start with the delivery time
	for _, u := range arrivals {
		uids[u] = next
		next++
	}
	if validity == 0 {
		validity = uint32(now.Unix())
	}
	list := filepath.Join(dir, "dovecot-uidlist")
	if err := os.WriteFile(list, uidList(validity, uids), 0o600); err != nil {
		return fmt.Errorf("update folder: %w", err)
	}
	for _, p := range []string{list, filepath.Join(dir, "cur"), filepath.Join(dir, "new"), dir} {
		if err := os.Chtimes(p, now, now); err != nil {
			return fmt.Errorf("update folder: %w", err)
		}
	}
	return nil
}

// readUIDList parses a dovecot-uidlist, tolerating a missing or damaged
// one (the corpus is then simply renumbered).
func readUIDList(path string) (validity uint32, next int, uids map[string]int) {
	uids = make(map[string]int)
	next = 1
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, next, uids
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			for _, f := range fields[1:] {
				switch {
				case strings.HasPrefix(f, "V"):
					v, _ := strconv.ParseUint(f[1:], 10, 32)
					validity = uint32(v)
				case strings.HasPrefix(f, "N"):
					n, _ := strconv.Atoi(f[1:])
					next = max(next, n)
				}
			}
			continue
		}
		idStr, rest, ok := strings.Cut(line, " ")
		_, name, ok2 := strings.Cut(rest, ":")
		id, err := strconv.Atoi(idStr)
		if !ok || !ok2 || err != nil {
			continue
		}
		uids[maildir.ParseName(name).Unique] = id
		next = max(next, id+1)
	}
	return validity, next, uids
}
