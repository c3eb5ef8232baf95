package archive

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Object Lock (WORM) makes a repository's durable files immutable for a
// period, so that neither an attacker holding the storage credentials nor
// a buggy client can delete or overwrite backups (S3 Object Lock, AWS S3
// User Guide "Using S3 Object Lock"; MinIO implements the same API). The
// policy lives in the repository config ("object_lock", docs/FORMAT.md),
// so every writer that opens the repository applies it; the backend sets
// the retention on every durable file as it uploads it — never on lock
// files, which must stay deletable. Retention is per object version, not
// a bucket default, for exactly that reason.

// RetentionMode is an Object Lock retention mode.
type RetentionMode string

const (
	// Governance retention can be lifted or shortened by a principal with
	// the s3:BypassGovernanceRetention permission; nobody else can delete
	// a locked version before its date.
	Governance RetentionMode = "governance"
	// Compliance retention cannot be shortened or removed by anyone,
	// the account root included, until the date passes.
	Compliance RetentionMode = "compliance"
)

// ObjectLock is a repository's immutability policy: every durable file is
// kept at least Days days after it is written, and `maintain` extends the
// files still in use before their retention runs out.
type ObjectLock struct {
	Mode RetentionMode `json:"mode"`
	Days int           `json:"days"`
}

// Period is the retention period as a duration.
func (p ObjectLock) Period() time.Duration { return time.Duration(p.Days) * 24 * time.Hour }

// Validate checks the policy.
func (p ObjectLock) Validate() error {
	if p.Mode != Governance && p.Mode != Compliance {
		return fmt.Errorf("object lock mode %q: must be governance or compliance", p.Mode)
	}
	// S3 allows up to 100 years of retention; more is surely a typo.
	if p.Days < 1 || p.Days > 36500 {
		return fmt.Errorf("object lock days %d: must be between 1 and 36500", p.Days)
	}
	return nil
}

// Retention is the lock on one stored file; the zero value means none.
type Retention struct {
	Mode  RetentionMode `json:"mode,omitempty"`
	Until time.Time     `json:"until,omitzero"`
}

// Active reports whether the retention still forbids deletion at now.
func (r Retention) Active(now time.Time) bool { return r.Mode != "" && r.Until.After(now) }

// ObjectLocker is implemented by backends that can make files immutable
// until a date (archive/s3 with S3 Object Lock). A local directory cannot
// (root can always delete files) and does not implement it.
type ObjectLocker interface {
	// EnableObjectLock prepares storage for a new locked repository
	// (S3: creates the bucket with Object Lock, which also turns on
	// versioning, or checks that an existing bucket has it).
	EnableObjectLock(ctx context.Context) error
	// SetObjectLock makes every later Put of a durable file (all types
	// but LockFile) carry retention of p, counted from the upload.
	SetObjectLock(p ObjectLock)
	// Retention returns the retention of a file's current version.
	Retention(ctx context.Context, t FileType, name string) (Retention, error)
	// ExtendRetention sets a file's retention to r (never shorter than
	// what it has: S3 refuses to shorten compliance retention).
	ExtendRetention(ctx context.Context, t FileType, name string, r Retention) error
}

// ErrRetained is wrapped by a backend's Remove when storage refuses to
// delete a file (or one of its versions) under retention.
var ErrRetained = errors.New("file is under object-lock retention")

// ErrObjectLockUnsupported means the repository asks for object lock and
// the backend cannot provide it.
var ErrObjectLockUnsupported = errors.New("this storage cannot lock files (object lock needs an S3 repository)")

// RetainedError is a Remove refused because of retention; Until is when it
// will be allowed (zero if the backend could not tell).
type RetainedError struct {
	Retention
	Err error
}

func (e *RetainedError) Error() string {
	if e.Until.IsZero() {
		return e.Err.Error()
	}
	return fmt.Sprintf("%v (%s retention until %s)", e.Err, e.Mode, e.Until.UTC().Format(time.RFC3339))
}

func (e *RetainedError) Unwrap() []error { return []error{ErrRetained, e.Err} }

// Waiting is a durable file that could not be deleted yet because its
// retention has not run out; deleting it is safe to retry after Until.
type Waiting struct {
	File  string        `json:"file"` // "index/<id>"
	Mode  RetentionMode `json:"mode,omitempty"`
	Until time.Time     `json:"until,omitzero"`
}

func (w Waiting) String() string {
	if w.Until.IsZero() {
		return w.File + " is under retention"
	}
	return fmt.Sprintf("%s is waiting until %s (%s retention)", w.File, w.Until.UTC().Format(time.RFC3339), w.Mode)
}

// applyObjectLock hands a repository's lock policy to its backend when it
// opens (or is created), so that every durable file written from now on
// is locked. A repository that asks for object lock cannot be written
// through a backend without it: files would silently be unprotected.
func applyObjectLock(be Backend, p *ObjectLock) error {
	if p == nil {
		return nil
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	ol, ok := be.(ObjectLocker)
	if !ok {
		return fmt.Errorf("%s: the repository config asks for %s object lock of %d days: %w", be.Location(), p.Mode, p.Days, ErrObjectLockUnsupported)
	}
	ol.SetObjectLock(*p)
	return nil
}

// InitObjectLock creates a repository whose durable files are locked
// under policy p (see ObjectLocker); with src set, it shares src's
// blob-ID key and chunker parameters as InitCopyParams does.
func InitObjectLock(ctx context.Context, be Backend, kr KeyRecipients, p ObjectLock, src *Repository) (ID, error) {
	if err := p.Validate(); err != nil {
		return ID{}, err
	}
	ol, ok := be.(ObjectLocker)
	if !ok {
		return ID{}, fmt.Errorf("%s: %w", be.Location(), ErrObjectLockUnsupported)
	}
	if err := ol.EnableObjectLock(ctx); err != nil {
		return ID{}, err
	}
	return initRepoLocked(ctx, be, kr, src, &p)
}

// ObjectLock returns the repository's lock policy, nil if it has none.
func (r *Repository) ObjectLock() *ObjectLock {
	if r.cfg.ObjectLock == nil {
		return nil
	}
	p := *r.cfg.ObjectLock
	return &p
}

// removeDurable is the one way the archive deletes a durable file (index,
// snapshot, key, pack): on locked storage it asks first and leaves a file
// under retention in place, returning when it may be deleted instead of
// an error. Prune will delete through it too.
//
// A write-only key deletes nothing (docs/FORMAT.md "Keys"): every caller
// refuses it already, and this refuses again so that a new delete path
// cannot forget to. Its own lock files are not durable and do not come
// here (lock.go).
func (r *Repository) removeDurable(ctx context.Context, t FileType, name string) (*Waiting, error) {
	file := string(t) + "/" + name
	if t == ConfigFile {
		file = name
	}
	if r.WriteOnly() {
		return nil, fmt.Errorf("remove %s: %w", file, ErrWriteOnly)
	}
	if ol, ok := r.be.(ObjectLocker); ok && r.cfg.ObjectLock != nil {
		ret, err := ol.Retention(ctx, t, name)
		if err != nil {
			return nil, err
		}
		if ret.Active(time.Now()) {
			return &Waiting{File: file, Mode: ret.Mode, Until: ret.Until}, nil
		}
	}
	err := r.be.Remove(ctx, t, name)
	// An older version may still be locked although the current one is
	// not (the same content written twice); the backend says so.
	var re *RetainedError
	if errors.As(err, &re) {
		return &Waiting{File: file, Mode: re.Mode, Until: re.Until}, nil
	}
	if errors.Is(err, ErrRetained) {
		return &Waiting{File: file}, nil
	}
	return nil, err
}

// MaintainOptions tune Maintain.
type MaintainOptions struct {
	// Window: a file's retention is extended when less than this is
	// left. Zero means half the lock period, so a file is extended at
	// most about twice per period and a missed run or two changes
	// nothing.
	Window time.Duration
	// DryRun only counts what would be extended.
	DryRun bool
	// Now is the time to measure from; zero means time.Now (tests move
	// it instead of waiting days).
	Now time.Time
}

// MaintainCounts counts files by what Maintain did with them.
type MaintainCounts struct {
	Checked  int `json:"checked"`
	Extended int `json:"extended"` // retention extended (or set, where a file had none)
	Current  int `json:"current"`  // retention still longer than the window
}

// MaintainResult says what Maintain did.
type MaintainResult struct {
	Mode      RetentionMode  `json:"mode"`
	Days      int            `json:"days"`
	Window    string         `json:"window"` // "15d", or a Go duration
	DryRun    bool           `json:"dry_run,omitempty"`
	NewUntil  time.Time      `json:"new_until"` // retention given to extended files
	Config    MaintainCounts `json:"config"`
	Keys      MaintainCounts `json:"keys"`
	Snapshots MaintainCounts `json:"snapshots"`
	Indexes   MaintainCounts `json:"indexes"`
	Packs     MaintainCounts `json:"packs"`
	Total     MaintainCounts `json:"total"`
	// Unreferenced packs (no snapshot uses them) and superseded index
	// files (every referenced pack they list is in another kept index
	// file) are left to run out, so that prune can delete them.
	UnreferencedPacks int `json:"unreferenced_packs"`
	SupersededIndexes int `json:"superseded_indexes"`
	// DamagedIndexes cannot be read (check names them); they are not
	// kept either: `repair index` replaces them.
	DamagedIndexes int `json:"damaged_indexes"`
	// AllPacks is set when some snapshot or tree could not be read: not
	// knowing what it needs, Maintain keeps every pack.
	AllPacks bool     `json:"all_packs,omitempty"`
	Problems []string `json:"problems,omitempty"`
	Failed   []string `json:"failed,omitempty"`
}

// Maintain extends the retention of every file the repository still
// needs — config, key files, snapshots, the index files that list the
// packs snapshots use, and those packs — whose retention runs out within
// the window, to now + the lock period. The caller holds a lock and has
// loaded the index (LoadIndex, and IndexPacks for unindexed packs).
// Maintain needs a full key: it reads every snapshot's trees.
func (r *Repository) Maintain(ctx context.Context, opt MaintainOptions) (*MaintainResult, error) {
	p := r.cfg.ObjectLock
	if p == nil {
		return nil, fmt.Errorf("%s: the repository has no object lock (create one with init --object-lock-days)", r.be.Location())
	}
	ol, ok := r.be.(ObjectLocker)
	if !ok {
		return nil, fmt.Errorf("%s: %w", r.be.Location(), ErrObjectLockUnsupported)
	}
	if r.dataID == nil {
		return nil, errors.New("maintain needs a full key: a write-only key cannot read the snapshots to find what they use")
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	window := opt.Window
	if window <= 0 {
		window = p.Period() / 2
	}
	res := &MaintainResult{Mode: p.Mode, Days: p.Days, Window: formatWindow(window), DryRun: opt.DryRun,
		NewUntil: now.Add(p.Period()).UTC().Truncate(time.Second)}

	packs, err := r.referencedPacks(ctx, res)
	if err != nil {
		return nil, err
	}
	indexes, err := r.coveringIndexes(ctx, packs, res)
	if err != nil {
		return nil, err
	}
	keys, err := r.List(ctx, KeyFile)
	if err != nil {
		return nil, err
	}
	snaps, err := r.List(ctx, SnapshotFile)
	if err != nil {
		return nil, err
	}

	type job struct {
		t    FileType
		name string
		c    *MaintainCounts
	}
	var jobs []job
	jobs = append(jobs, job{ConfigFile, "config", &res.Config})
	for _, id := range keys {
		jobs = append(jobs, job{KeyFile, id.String(), &res.Keys})
	}
	// Every snapshot file is kept, damaged ones too: deciding that a
	// snapshot is no longer wanted is the retention policy's job.
	for _, id := range snaps {
		jobs = append(jobs, job{SnapshotFile, id.String(), &res.Snapshots})
	}
	for _, id := range indexes {
		jobs = append(jobs, job{IndexFile, id.String(), &res.Indexes})
	}
	for _, id := range packs {
		jobs = append(jobs, job{PackFile, id.String(), &res.Packs})
	}

	// One HEAD (and maybe one PUT ?retention) per file: a few at once
	// hide the round trips without hammering the server.
	const workers = 8
	var mu sync.Mutex
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	want := Retention{Mode: p.Mode, Until: res.NewUntil}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(j job) {
			defer wg.Done()
			defer func() { <-sem }()
			extended, err := maintainFile(ctx, ol, j.t, j.name, want, now, window, opt.DryRun)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed = append(res.Failed, fmt.Sprintf("%s/%s: %v", j.t, j.name, err))
				return
			}
			j.c.Checked++
			if extended {
				j.c.Extended++
			} else {
				j.c.Current++
			}
		}(j)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Strings(res.Failed)
	for _, c := range []MaintainCounts{res.Config, res.Keys, res.Snapshots, res.Indexes, res.Packs} {
		res.Total.Checked += c.Checked
		res.Total.Extended += c.Extended
		res.Total.Current += c.Current
	}
	return res, nil
}

// maintainFile extends one file's retention to want when less than window
// of it is left at now.
func maintainFile(ctx context.Context, ol ObjectLocker, t FileType, name string, want Retention, now time.Time, window time.Duration, dryRun bool) (bool, error) {
	cur, err := ol.Retention(ctx, t, name)
	if err != nil {
		return false, err
	}
	if cur.Mode != "" && cur.Until.Sub(now) >= window {
		return false, nil
	}
	if cur.Mode == Compliance {
		// Compliance cannot turn into governance.
		want.Mode = Compliance
	}
	if cur.Until.After(want.Until) {
		return false, nil
	}
	if dryRun {
		return true, nil
	}
	return true, ol.ExtendRetention(ctx, t, name, want)
}

// referencedPacks returns the packs holding the blobs that snapshots use
// (each blob in the pack the index reads it from). When a snapshot or
// tree cannot be read, what it uses is unknown, so every pack counts.
func (r *Repository) referencedPacks(ctx context.Context, res *MaintainResult) ([]ID, error) {
	snaps, damaged, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, err := range damaged {
		res.Problems = append(res.Problems, err.Error())
	}
	used := map[ID]struct{}{}
	walked := map[ID]struct{}{}
	var missing int
	for _, s := range snaps {
		blobs, err := r.snapshotBlobs(ctx, s, walked)
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("snapshot %s: %v", s.ID.Short(), err))
			continue
		}
		for _, b := range blobs {
			pack, _, ok := r.idx.Lookup(b)
			if !ok {
				missing++
				continue
			}
			used[pack] = struct{}{}
		}
	}
	if missing > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d blobs used by snapshots are in no pack (run check)", missing))
	}
	all := r.idx.Packs()
	if len(res.Problems) > 0 {
		res.AllPacks = true
		sortIDs(all)
		return all, nil
	}
	out := make([]ID, 0, len(used))
	for id := range used {
		out = append(out, id)
	}
	sortIDs(out)
	res.UnreferencedPacks = len(all) - len(out)
	return out, nil
}

// coveringIndexes picks the index files to keep: greedily the ones in
// force that list the most referenced packs, then any that list a
// referenced pack none picked so far lists, and every file in force that
// supersedes a file still present (were it to run out first, the old file
// would be read again). Superseded files — left in place by retention
// after `repair index` or prune — and damaged ones are left to run out.
func (r *Repository) coveringIndexes(ctx context.Context, packs []ID, res *MaintainResult) ([]ID, error) {
	need := make(map[ID]struct{}, len(packs))
	for _, p := range packs {
		need[p] = struct{}{}
	}
	type cand struct {
		id         ID
		packs      []ID
		supersedes []ID
	}
	byID := map[ID]*cand{}
	scan, err := r.scanIndexFiles(ctx, func(f ID, ic *IndexFileContent) {
		c := &cand{id: f, supersedes: ic.Supersedes}
		for _, p := range ic.Packs {
			if _, ok := need[p.ID]; ok {
				c.packs = append(c.packs, p.ID)
			}
		}
		byID[f] = c
	})
	if err != nil {
		return nil, err
	}
	res.DamagedIndexes += len(scan.all) - len(scan.read)
	res.SupersededIndexes += len(scan.read) - len(scan.live)
	present := make(map[ID]struct{}, len(scan.all))
	for _, f := range scan.all {
		present[f] = struct{}{}
	}
	cands := make([]*cand, 0, len(scan.live))
	for _, f := range scan.live {
		cands = append(cands, byID[f])
	}
	sort.Slice(cands, func(i, j int) bool {
		if len(cands[i].packs) != len(cands[j].packs) {
			return len(cands[i].packs) > len(cands[j].packs)
		}
		return cands[i].id.String() < cands[j].id.String()
	})
	covered := map[ID]struct{}{}
	var keep []ID
	for _, c := range cands {
		adds := false
		for _, p := range c.packs {
			if _, ok := covered[p]; !ok {
				adds = true
				covered[p] = struct{}{}
			}
		}
		for _, s := range c.supersedes {
			if _, ok := present[s]; ok {
				adds = true
			}
		}
		if adds {
			keep = append(keep, c.id)
		} else {
			res.SupersededIndexes++
		}
	}
	return keep, nil
}

// formatWindow writes whole days as "15d", anything else as Go does.
func formatWindow(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func sortIDs(ids []ID) {
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
}
