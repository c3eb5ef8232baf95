// Package corpus generates deterministic Maildir++ mail trees for
// benchmarking the backup engine against other tools, and mutates them the
// way a day of mail traffic would.
//
// The generated mail is shaped like a real server's: RFC 5322 messages with
// Received chains, encoded-word headers, text and HTML bodies drawn from a
// word list (so they compress like text), quoted replies, attachments of
// both compressible and incompressible kinds, and the fan-out of one message
// to many local mailboxes with per-recipient delivery headers. Everything is
// drawn from seeded generators, never the clock, so a seed names a corpus:
// two runs write the same names, bytes and times.
package corpus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailvault/mailvault/maildir"
)

// Options configures Generate. Zero fields take the defaults documented on
// each.
type Options struct {
	// Seed selects the corpus; the same seed gives the same tree.
	Seed uint64
	// TargetBytes is the total size of the message files to write
	// (default 100 MB). Generation stops at the first message past it.
	TargetBytes int64
	// Domains is the number of local domains (default 3).
	Domains int
	// UsersPerDomain is the number of mailboxes per domain (default 20).
	UsersPerDomain int
	// AttachmentFraction is the share of messages with an attachment
	// (default 0.12).
	AttachmentFraction float64
	// Host is the host name in message file names (default "imap1").
	Host string
	// Workers is the number of goroutines writing files (default
	// GOMAXPROCS+1, at least 2). It does not affect the output.
	Workers int
}

func (o Options) withDefaults() Options {
	if o.TargetBytes <= 0 {
		o.TargetBytes = 100e6
	}
	if o.Domains <= 0 {
		o.Domains = 3
	}
	if o.UsersPerDomain <= 0 {
		o.UsersPerDomain = 20
	}
	if o.AttachmentFraction <= 0 {
		o.AttachmentFraction = 0.12
	}
	if o.Host == "" {
		o.Host = "imap1"
	}
	if o.Workers <= 0 {
		o.Workers = max(2, runtime.GOMAXPROCS(0)+1)
	}
	return o
}

// Stats describes a generated corpus.
type Stats struct {
	Users       int   `json:"users"`
	Folders     int   `json:"folders"`      // mail folders, INBOX included
	Messages    int   `json:"messages"`     // distinct messages composed
	Files       int   `json:"files"`        // message files written (copies included)
	Bytes       int64 `json:"bytes"`        // total size of the message files
	Attachments int   `json:"attachments"`  // messages carrying an attachment
	FanOut      int   `json:"fanout_files"` // files that are the 2nd+ local copy of a message
	MetaFiles   int   `json:"meta_files"`   // dovecot-uidlist, subscriptions, ...
}

// The corpus spans two years so that the archive folders fill naturally.
var (
	spanStart = time.Date(2024, 1, 2, 8, 0, 0, 0, time.UTC)
	spanEnd   = time.Date(2025, 12, 30, 18, 0, 0, 0, time.UTC)
)

// Generate writes a corpus under root, which must not already contain one.
func Generate(ctx context.Context, root string, opt Options) (Stats, error) {
	opt = opt.withDefaults()
	var st Stats
	r := rand.New(rand.NewPCG(opt.Seed, 0x636f72707573))
	w := newWorld(r, opt.Domains, opt.UsersPerDomain)
	for _, u := range w.locals {
		if err := makeMaildir(filepath.Join(root, u.dir)); err != nil {
			return st, err
		}
	}
	st.Users = len(w.locals)
	st.Folders = len(w.locals) * (1 + len(folders))

	comp := newComposer(r, w, opt.AttachmentFraction)
	del := newDeliverer(r, root, opt.Host)
	pool := startWriters(ctx, opt.Workers)
	span := spanEnd.Sub(spanStart)
	for st.Bytes < opt.TargetBytes {
		if err := pool.ctx.Err(); err != nil {
			break
		}
		// Time advances with the bytes written, so any target size spans
		// the same two years.
		t := spanStart.Add(time.Duration(float64(span) * float64(st.Bytes) / float64(opt.TargetBytes)))
		t = t.Add(time.Duration(r.IntN(600)) * time.Second)
		m := comp.compose(t)
		j := del.plan(m, func(r *rand.Rand, at time.Time) (string, string, string) { return placeGenerated(r, at) })
		pool.submit(j)
		st.Messages++
		if m.att != nil {
			st.Attachments++
		}
		st.Files += len(j.copies)
		st.FanOut += j.fanOut
		for _, c := range j.copies {
			st.Bytes += int64(len(c.prefix)) + m.size
		}
	}
	if err := pool.wait(); err != nil {
		return st, err
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}

	for i, u := range w.locals {
		n, err := writeMeta(filepath.Join(root, u.dir), uint32(spanStart.Unix())+uint32(i), del.index[u.dir])
		if err != nil {
			return st, err
		}
		st.MetaFiles += n
	}
	if err := setDirTimes(root, spanEnd); err != nil {
		return st, err
	}
	return st, nil
}

// placeGenerated decides where a delivered copy sits after two years of
// use: old mail partly archived, some trashed, most read, the last two
// days' partly still in new/.
func placeGenerated(r *rand.Rand, t time.Time) (folder, sub, flags string) {
	x := r.Float64()
	switch {
	case x < 0.04:
		return ".Trash", "cur", []string{"S", "ST"}[r.IntN(2)]
	case t.Year() == 2024 && x < 0.55:
		return ".Archive.2024", "cur", readFlags(r)
	case t.Year() == 2025 && spanEnd.Sub(t) > 90*24*time.Hour && x < 0.35:
		return ".Archive.2025", "cur", readFlags(r)
	}
	if spanEnd.Sub(t) < 48*time.Hour && r.IntN(10) < 7 {
		return "", "new", ""
	}
	return "", "cur", readFlags(r)
}

func readFlags(r *rand.Rand) string {
	if r.IntN(100) < 8 {
		return "" // seen by the client but not read
	}
	f := "S"
	if r.IntN(100) < 20 {
		f += "R"
	}
	if r.IntN(100) < 5 {
		f += "F"
	}
	return maildir.NormalizeFlags(f)
}

func makeMaildir(dir string) error {
	for _, f := range append([]string{""}, folders...) {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, f, sub), 0o700); err != nil {
				return fmt.Errorf("create maildir: %w", err)
			}
		}
		if f != "" {
			// Maildir++ marks subfolders with this empty file so that
			// delivery agents know they are folders, not maildirs of
			// their own.
			if err := os.WriteFile(filepath.Join(dir, f, "maildirfolder"), nil, 0o600); err != nil {
				return fmt.Errorf("create maildir: %w", err)
			}
		}
	}
	return nil
}

// copyJob is one message file to write.
type copyJob struct {
	path   string
	prefix []byte
	mtime  time.Time
}

// job is one message and all its copies: the writer renders the message
// once and writes it as many times as it was delivered.
type job struct {
	m      *message
	copies []copyJob
	fanOut int
}

// placer decides the folder ("" for INBOX), subdirectory and flags of a
// copy delivered at t.
type placer func(r *rand.Rand, t time.Time) (folder, sub, flags string)

// deliverer names and places message copies as Dovecot's LMTP would.
type deliverer struct {
	r       *rand.Rand
	root    string
	host    string
	q       int
	pid     int
	pidLeft int
	// index lists, per user Maildir (relative), the files delivered to
	// each folder, in delivery order, for dovecot-uidlist.
	index map[string]map[string][]string
}

func newDeliverer(r *rand.Rand, root, host string) *deliverer {
	return &deliverer{r: r, root: root, host: host, index: make(map[string]map[string][]string)}
}

// unique returns a Dovecot-style unique name for a file of the given size
// and CRLF size delivered at t.
func (d *deliverer) unique(t time.Time, size, wsize int64) string {
	// One LMTP process delivers a run of messages, then a new one starts.
	if d.pidLeft == 0 {
		d.pid, d.pidLeft = 1000+d.r.IntN(60000), 1+d.r.IntN(200)
	}
	d.pidLeft--
	d.q++
	return fmt.Sprintf("%d.M%dP%dQ%d.%s,S=%d,W=%d", t.Unix(), d.r.IntN(1000000), d.pid, d.q, d.host, size, wsize)
}

func (d *deliverer) add(j *job, u *person, folder, sub, flags string, prefix []byte, m *message, t time.Time) {
	size := int64(len(prefix)) + m.size
	lines := int64(strings.Count(string(prefix), "\n")) + m.lines
	name := d.unique(t, size, size+lines)
	if sub == "cur" {
		name = maildir.FileName(name, flags)
	}
	j.copies = append(j.copies, copyJob{path: filepath.Join(d.root, u.dir, folder, sub, name), prefix: prefix, mtime: t})
	if d.index[u.dir] == nil {
		d.index[u.dir] = make(map[string][]string)
	}
	d.index[u.dir][folder] = append(d.index[u.dir][folder], name)
}

// plan lays out the copies of m: one per local recipient (lists expanded),
// each with its own delivery headers, and the sender's Sent copy.
func (d *deliverer) plan(m *message, place placer) job {
	j := job{m: m}
	seen := map[*person]bool{m.from: true}
	var rcpts []*person
	for _, p := range append(append([]*person{}, m.to...), m.cc...) {
		members := []*person{p}
		if m.list != nil && p.addr == m.list.addr {
			members = m.list.members
		}
		for _, u := range members {
			if u.local && !seen[u] {
				seen[u] = true
				rcpts = append(rcpts, u)
			}
		}
	}
	at := m.date.Add(time.Duration(2+d.r.IntN(30)) * time.Second)
	for i, u := range rcpts {
		at = at.Add(time.Duration(d.r.IntN(400)) * time.Millisecond)
		folder, sub, flags := place(d.r, at)
		prefix := append(deliveryPrefix(d.r, m, u, at), m.chain...)
		d.add(&j, u, folder, sub, flags, prefix, m, at)
		if i > 0 {
			j.fanOut++
		}
	}
	if m.from.local {
		d.add(&j, m.from, ".Sent", "cur", "S", nil, m, m.date)
		if d.r.IntN(50) == 0 {
			// A draft the client never cleaned up.
			d.add(&j, m.from, ".Drafts", "cur", "DS", nil, m, m.date.Add(-time.Duration(1+d.r.IntN(3600))*time.Second))
		}
	}
	return j
}

// writers is the pool that renders and writes jobs. Output does not depend
// on scheduling: every byte and name was decided by the planner.
type writers struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	ch     chan job
	wg     sync.WaitGroup
}

func startWriters(ctx context.Context, n int) *writers {
	w := &writers{ch: make(chan job, 4*n)}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	for range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			var body, scratch []byte
			for j := range w.ch {
				if w.ctx.Err() != nil {
					continue // drain
				}
				var err error
				if body, scratch, err = writeJob(j, body[:0], scratch); err != nil {
					w.cancel(err)
				}
			}
		}()
	}
	return w
}

func (w *writers) submit(j job) {
	select {
	case w.ch <- j:
	case <-w.ctx.Done():
	}
}

func (w *writers) wait() error {
	close(w.ch)
	w.wg.Wait()
	err := context.Cause(w.ctx)
	w.cancel(nil)
	return err
}

// render appends the message core to body.
func render(m *message, body, scratch []byte) ([]byte, []byte) {
	for _, s := range m.core {
		if s.att != nil {
			body, scratch = s.att.appendEncoded(body, scratch)
		} else {
			body = append(body, s.text...)
		}
	}
	return body, scratch
}

func writeJob(j job, body, scratch []byte) ([]byte, []byte, error) {
	body, scratch = render(j.m, body, scratch)
	for _, c := range j.copies {
		if err := writeMessage(c.path, c.prefix, body, c.mtime); err != nil {
			return body, scratch, err
		}
	}
	return body, scratch, nil
}

func writeMessage(path string, prefix, body []byte, mtime time.Time) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	_, err = f.Write(prefix)
	if err == nil {
		_, err = f.Write(body)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(path, mtime, mtime)
	}
	if err != nil {
		return fmt.Errorf("write message %s: %w", path, err)
	}
	return nil
}

// writeMeta writes the small non-message files Dovecot keeps in a user's
// Maildir and returns how many it wrote.
func writeMeta(dir string, validity uint32, index map[string][]string) (int, error) {
	n := 0
	write := func(name string, data []byte) error {
		n++
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		return nil
	}
	if err := write("dovecot-uidvalidity", fmt.Appendf(nil, "%08x\n", validity)); err != nil {
		return n, err
	}
	if err := write(fmt.Sprintf("dovecot-uidvalidity.%08x", validity), nil); err != nil {
		return n, err
	}
	subs := "V\t2\n\n"
	for _, f := range folders {
		subs += strings.TrimPrefix(f, ".") + "\n"
	}
	if err := write("subscriptions", []byte(subs)); err != nil {
		return n, err
	}
	for i, f := range append([]string{""}, folders...) {
		names := index[f]
		uids := make(map[string]int, len(names))
		for k, name := range names {
			uids[maildir.ParseName(name).Unique] = k + 1
		}
		if err := write(filepath.Join(f, "dovecot-uidlist"), uidList(validity+uint32(i), uids)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// uidList renders a dovecot-uidlist (version 3) from unique name → uid.
func uidList(validity uint32, uids map[string]int) []byte {
	type entry struct {
		uid    int
		unique string
	}
	entries := make([]entry, 0, len(uids))
	next := 1
	for u, id := range uids {
		entries = append(entries, entry{id, u})
		next = max(next, id+1)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].uid < entries[j].uid })
	b := fmt.Appendf(nil, "3 V%d N%d G%016x%016x\n", validity, next, uint64(validity)*0x9e3779b97f4a7c15, uint64(next))
	for _, e := range entries {
		b = fmt.Appendf(b, "%d :%s\n", e.uid, e.unique)
	}
	return b
}

// setDirTimes gives every directory and every file that is not a message
// under root the time t, so that the tree (including what a backup tool
// records for directories) is the same on every run.
func setDirTimes(root string, t time.Time) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if parent := filepath.Base(filepath.Dir(p)); d.IsDir() || (parent != "cur" && parent != "new") {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set directory times: %w", err)
	}
	for _, d := range dirs {
		if err := os.Chtimes(d, t, t); err != nil {
			return fmt.Errorf("set directory times: %w", err)
		}
	}
	return nil
}
