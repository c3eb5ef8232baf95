package s3

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/s3/s3test"
	"github.com/mailvault/mailvault/bench/corpus"
)

// rawClient talks to the test server directly, as an admin (or an
// attacker holding the same credentials) would.
func rawClient(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(testServer.Addr, &minio.Options{Creds: credentials.NewStaticV4(s3test.User, s3test.Password, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// lockedRepo creates a repository with object lock in a fresh bucket.
func lockedRepo(t *testing.T, p archive.ObjectLock) (*Backend, archive.Credentials) {
	t.Helper()
	be, err := New(t.Context(), newBucket(t, "vault"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.InitObjectLock(t.Context(), be, archive.KeyRecipients{Recipients: []string{id.Recipient().String()}}, p, nil); err != nil {
		t.Fatal(err)
	}
	return be, archive.Credentials{Identities: []age.Identity{id}}
}

func openLocked(t *testing.T, be archive.Backend, creds archive.Credentials) *archive.Repository {
	t.Helper()
	r, err := archive.Open(t.Context(), be, creds, archive.Options{Compression: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	unindexed, err := r.LoadIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r.IndexPacks(t.Context(), unindexed)
	return r
}

// objects lists the bucket's current objects below the prefix.
func objects(t *testing.T, c *minio.Client, be *Backend) []minio.ObjectInfo {
	t.Helper()
	var out []minio.ObjectInfo
	for obj := range c.ListObjects(t.Context(), be.cfg.Bucket, minio.ListObjectsOptions{Prefix: be.cfg.Prefix + "/", Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		out = append(out, obj)
	}
	return out
}

// TestObjectLockGovernance follows a governance-mode repository through
// backup, the refusals MinIO gives to deletes, maintenance, repair and
// key removal.
func TestObjectLockGovernance(t *testing.T) {
	ctx := t.Context()
	policy := archive.ObjectLock{Mode: archive.Governance, Days: 1}
	be, creds := lockedRepo(t, policy)
	c := rawClient(t)

	enabled, mode, _, _, err := c.GetObjectLockConfig(ctx, be.cfg.Bucket)
	if err != nil || enabled != "Enabled" {
		t.Fatalf("bucket object lock: %q, %v", enabled, err)
	}
	if mode != nil && *mode != "" {
		t.Errorf("bucket has a default retention %s; lock files would be locked", *mode)
	}

	root := t.TempDir()
	srcA, srcB := filepath.Join(root, "a"), filepath.Join(root, "b")
	for i, dir := range []string{srcA, srcB} {
		if _, err := corpus.Generate(ctx, dir, corpus.Options{Seed: uint64(40 + i), TargetBytes: 4e5, Domains: 1, UsersPerDomain: 2}); err != nil {
			t.Fatal(err)
		}
	}
	r := openLocked(t, be, creds)
	if got := r.ObjectLock(); got == nil || *got != policy {
		t.Fatalf("config object lock = %v, want %v", got, policy)
	}
	start := time.Now()
	resA, err := r.Backup(ctx, archive.BackupOptions{Paths: []string{srcA}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	r = openLocked(t, be, creds)
	resB, err := r.Backup(ctx, archive.BackupOptions{Paths: []string{srcB}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}

	// Every durable object carries governance retention of one day from
	// its upload; no lock file is left behind.
	kinds := map[string]int{}
	for _, obj := range objects(t, c, be) {
		rel := strings.TrimPrefix(obj.Key, be.cfg.Prefix+"/")
		kind, _, _ := strings.Cut(rel, "/")
		kinds[kind]++
		m, until, err := c.GetObjectRetention(ctx, be.cfg.Bucket, obj.Key, "")
		if err != nil {
			t.Fatalf("%s: retention: %v", rel, err)
		}
		if *m != minio.Governance {
			t.Errorf("%s: mode %s, want GOVERNANCE", rel, *m)
		}
		if lo, hi := start.Add(24*time.Hour-time.Minute), time.Now().Add(24*time.Hour+time.Minute); until.Before(lo) || until.After(hi) {
			t.Errorf("%s: retained until %s, want about a day after upload", rel, until)
		}
	}
	for _, kind := range []string{"config", "keys", "data", "index", "snapshots"} {
		if kinds[kind] == 0 {
			t.Errorf("no %s objects: %v", kind, kinds)
		}
	}
	if kinds["locks"] != 0 {
		t.Errorf("%d lock files left", kinds["locks"])
	}

	// Lock files are not locked, and removing one removes every version:
	// nothing accumulates in the versioned bucket.
	if err := be.Put(ctx, archive.LockFile, "l1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if ret, err := be.Retention(ctx, archive.LockFile, "l1"); err != nil || ret.Mode != "" {
		t.Fatalf("lock file retention = %+v, %v; want none", ret, err)
	}
	if err := be.Remove(ctx, archive.LockFile, "l1"); err != nil {
		t.Fatalf("remove lock file: %v", err)
	}
	for v := range c.ListObjects(ctx, be.cfg.Bucket, minio.ListObjectsOptions{Prefix: be.cfg.Prefix + "/locks/", WithVersions: true, Recursive: true}) {
		t.Errorf("lock file version left: %s %s (delete marker %v)", v.Key, v.VersionID, v.IsDeleteMarker)
	}

	// MinIO refuses to delete a locked version of a pack. (The test
	// user is root and may bypass governance retention; without the
	// bypass header it may not.)
	packKey := ""
	for _, obj := range objects(t, c, be) {
		if strings.Contains(obj.Key, "/data/") {
			packKey = obj.Key
			break
		}
	}
	st, err := c.StatObject(ctx, be.cfg.Bucket, packKey, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveObject(ctx, be.cfg.Bucket, packKey, minio.RemoveObjectOptions{VersionID: st.VersionID}); err == nil {
		t.Fatalf("deleting locked version %s of %s succeeded", st.VersionID, packKey)
	} else {
		t.Logf("MinIO refused the delete: %v (code %s)", err, minio.ToErrorResponse(err).Code)
	}
	// Overwriting a locked object only adds a version; shortening its
	// retention without bypass is refused too.
	short := time.Now().Add(time.Hour)
	gov := minio.Governance
	if err := c.PutObjectRetention(ctx, be.cfg.Bucket, packKey, minio.PutObjectRetentionOptions{Mode: &gov, RetainUntilDate: &short, VersionID: st.VersionID}); err == nil {
		t.Errorf("shortening retention without governance bypass succeeded")
	}

	// The backend's Remove of a locked file says it is retained, and
	// until when; the file stays.
	pack := filepath.Base(packKey)
	err = be.Remove(ctx, archive.PackFile, pack)
	var re *archive.RetainedError
	if !errors.As(err, &re) || !errors.Is(err, archive.ErrRetained) || re.Until.Before(time.Now()) {
		t.Fatalf("remove locked pack: %v, want a RetainedError with a future date", err)
	}
	if _, err := be.Stat(ctx, archive.PackFile, pack); err != nil {
		t.Fatalf("locked pack gone after refused remove: %v", err)
	}

	// An admin with bypass permission can still delete in governance
	// mode: drop snapshot B, so its packs become unreferenced.
	snapKey := be.join("snapshots/" + resB.Snapshot.ID.String())
	st, err = c.StatObject(ctx, be.cfg.Bucket, snapKey, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveObject(ctx, be.cfg.Bucket, snapKey, minio.RemoveObjectOptions{VersionID: st.VersionID, GovernanceBypass: true}); err != nil {
		t.Fatalf("governance bypass delete: %v", err)
	}

	// Maintain, as if run 12 hours and a minute from now: every file
	// still needed has less than half its period left and is extended;
	// B's packs are left to run out.
	r = openLocked(t, be, creds)
	packsAll := len(r.Index().Packs())
	future := time.Now().Add(12*time.Hour + time.Minute)
	res, err := r.Maintain(ctx, archive.MaintainOptions{Now: future})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("maintain: %+v", res)
	if len(res.Failed) != 0 || len(res.Problems) != 0 {
		t.Fatalf("maintain failed: %v %v", res.Failed, res.Problems)
	}
	if res.Total.Extended != res.Total.Checked || res.Total.Checked == 0 {
		t.Errorf("maintain extended %d of %d files, want all", res.Total.Extended, res.Total.Checked)
	}
	if res.Snapshots.Checked != 1 || res.Config.Extended != 1 || res.Keys.Extended != 1 {
		t.Errorf("maintain counts: snapshots %+v config %+v keys %+v", res.Snapshots, res.Config, res.Keys)
	}
	if res.UnreferencedPacks == 0 || res.Packs.Checked+res.UnreferencedPacks != packsAll {
		t.Errorf("maintain: %d packs kept + %d unreferenced, want %d in all with some unreferenced", res.Packs.Checked, res.UnreferencedPacks, packsAll)
	}
	snapA := be.join("snapshots/" + resA.Snapshot.ID.String())
	if _, until, err := c.GetObjectRetention(ctx, be.cfg.Bucket, snapA, ""); err != nil || until.Before(future.Add(24*time.Hour-time.Minute)) {
		t.Errorf("snapshot A retained until %v (%v), want a day after %s", until, err, future)
	}
	// Run now, nothing needs it.
	res, err = r.Maintain(ctx, archive.MaintainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.Extended != 0 || res.Total.Current != res.Total.Checked {
		t.Errorf("second maintain extended %d of %d", res.Total.Extended, res.Total.Checked)
	}

	// repair index cannot remove the old index files: it says until when.
	unlock, err := r.Lock(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := r.RebuildIndex(ctx)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	if rb.IndexesRemoved != 0 || len(rb.Waiting) != 2 {
		t.Fatalf("repair index: removed %d, waiting %v; want 0 removed and the 2 old ones waiting", rb.IndexesRemoved, rb.Waiting)
	}
	for _, w := range rb.Waiting {
		if !strings.HasPrefix(w.File, "index/") || w.Mode != archive.Governance || w.Until.Before(time.Now().Add(12*time.Hour)) {
			t.Errorf("waiting %+v", w)
		}
	}
	// Maintenance keeps the new index file and lets the two old ones,
	// which list nothing it does not, run out.
	r = openLocked(t, be, creds)
	res, err = r.Maintain(ctx, archive.MaintainOptions{DryRun: true, Now: future.Add(12 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Indexes.Checked != 1 || res.SupersededIndexes != 2 {
		t.Errorf("after repair: %d index files kept, %d superseded; want 1 and 2", res.Indexes.Checked, res.SupersededIndexes)
	}

	// key remove of a locked key file reports the wait.
	added, err := r.AddKey(ctx, archive.KeyRecipients{Passphrase: "second"})
	if err != nil {
		t.Fatal(err)
	}
	err = r.RemoveKey(ctx, added[0])
	if !errors.Is(err, archive.ErrRetained) || !strings.Contains(err.Error(), "waiting until") {
		t.Fatalf("remove locked key: %v", err)
	}

	// And the repository is whole.
	cr, err := r.Check(ctx, archive.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	// Snapshot B was deleted by the admin above; its packs are simply
	// unused, which check does not mind.
	if !cr.OK() || cr.Snapshots != 1 || cr.PacksRead != packsAll {
		t.Fatalf("check: ok=%v snapshots=%d packs read %d of %d: %+v", cr.OK(), cr.Snapshots, cr.PacksRead, packsAll, cr.Errors)
	}
}

// TestObjectLockRetentionRunsOut: once a file's retention has passed,
// removal deletes every version of it. Governance bypass shortens the
// retention to a second from now instead of waiting a day.
func TestObjectLockRetentionRunsOut(t *testing.T) {
	ctx := t.Context()
	be, creds := lockedRepo(t, archive.ObjectLock{Mode: archive.Governance, Days: 1})
	c := rawClient(t)
	r := openLocked(t, be, creds)
	added, err := r.AddKey(ctx, archive.KeyRecipients{Passphrase: "second"})
	if err != nil {
		t.Fatal(err)
	}
	k := be.join("keys/" + added[0].String())
	soon := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
	gov := minio.Governance
	// The key file and its description (keys/<id>.info), written
	// together with the same retention; maintain extends only the key
	// file, so the description's never runs out later.
	for _, k := range []string{k, k + ".info"} {
		if err := c.PutObjectRetention(ctx, be.cfg.Bucket, k, minio.PutObjectRetentionOptions{Mode: &gov, RetainUntilDate: &soon, GovernanceBypass: true}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(soon) + 100*time.Millisecond)
	if err := r.RemoveKey(ctx, added[0]); err != nil {
		t.Fatalf("remove key after its retention: %v", err)
	}
	for v := range c.ListObjects(ctx, be.cfg.Bucket, minio.ListObjectsOptions{Prefix: k, WithVersions: true}) {
		t.Errorf("version left after remove: %s %s (delete marker %v)", v.Key, v.VersionID, v.IsDeleteMarker)
	}
}

// TestObjectLockCompliance: in compliance mode not even a caller allowed
// to bypass governance (the root user) can delete a locked version or
// shorten its retention.
func TestObjectLockCompliance(t *testing.T) {
	ctx := t.Context()
	be, creds := lockedRepo(t, archive.ObjectLock{Mode: archive.Compliance, Days: 1})
	c := rawClient(t)
	r := openLocked(t, be, creds)
	if _, err := r.AddKey(ctx, archive.KeyRecipients{Passphrase: "x"}); err != nil {
		t.Fatal(err)
	}
	k := be.join("config")
	st, err := c.StatObject(ctx, be.cfg.Bucket, k, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := c.GetObjectRetention(ctx, be.cfg.Bucket, k, st.VersionID)
	if err != nil || *m != minio.Compliance {
		t.Fatalf("config retention mode %v, %v; want COMPLIANCE", m, err)
	}
	for _, bypass := range []bool{false, true} {
		if err := c.RemoveObject(ctx, be.cfg.Bucket, k, minio.RemoveObjectOptions{VersionID: st.VersionID, GovernanceBypass: bypass}); err == nil {
			t.Fatalf("deleting a compliance-locked version (bypass %v) succeeded", bypass)
		}
	}
	short := time.Now().Add(time.Hour)
	comp := minio.Compliance
	if err := c.PutObjectRetention(ctx, be.cfg.Bucket, k, minio.PutObjectRetentionOptions{Mode: &comp, RetainUntilDate: &short, VersionID: st.VersionID, GovernanceBypass: true}); err == nil {
		t.Errorf("shortening compliance retention succeeded")
	}
	// Extending is allowed, and what maintain does.
	res, err := r.Maintain(ctx, archive.MaintainOptions{Now: time.Now().Add(13 * time.Hour)})
	if err != nil || res.Total.Extended != res.Total.Checked || res.Mode != archive.Compliance {
		t.Fatalf("maintain: %+v, %v", res, err)
	}
	if _, until, err := c.GetObjectRetention(ctx, be.cfg.Bucket, k, st.VersionID); err != nil || until.Before(time.Now().Add(36*time.Hour)) {
		t.Errorf("config retained until %v, %v; want extended past 36 h", until, err)
	}
	// The backend's own Remove reports the retention.
	if err := be.Remove(ctx, archive.ConfigFile, "config"); !errors.Is(err, archive.ErrRetained) {
		t.Errorf("remove config: %v, want ErrRetained", err)
	}
	if _, err := be.Stat(ctx, archive.ConfigFile, "config"); err != nil {
		t.Errorf("config gone: %v", err)
	}
}

// TestObjectLockExistingBucket: init --object-lock-days on a bucket made
// without Object Lock fails with a clear error instead of writing files
// that cannot be locked.
func TestObjectLockExistingBucket(t *testing.T) {
	be := newBackend(t, "plain")
	err := be.EnableObjectLock(t.Context())
	if err == nil || !strings.Contains(err.Error(), "without Object Lock") {
		t.Fatalf("EnableObjectLock on a plain bucket: %v", err)
	}
}

// TestObjectLockUndelete: someone with the bucket's credentials deletes
// config, keys, a snapshot and a pack and overwrites an index file. The
// locked versions survive; Undelete makes them current again and the
// repository is whole.
func TestObjectLockUndelete(t *testing.T) {
	ctx := t.Context()
	be, creds := lockedRepo(t, archive.ObjectLock{Mode: archive.Governance, Days: 1})
	c := rawClient(t)
	src := filepath.Join(t.TempDir(), "mail")
	if _, err := corpus.Generate(ctx, src, corpus.Options{Seed: 12, TargetBytes: 3e5, Domains: 1, UsersPerDomain: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := openLocked(t, be, creds).Backup(ctx, archive.BackupOptions{Paths: []string{src}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	overwritten := ""
	for _, obj := range objects(t, c, be) {
		rel := strings.TrimPrefix(obj.Key, be.cfg.Prefix+"/")
		kind, _, _ := strings.Cut(rel, "/")
		switch {
		case kind == "index" && overwritten == "":
			if _, err := c.PutObject(ctx, be.cfg.Bucket, obj.Key, strings.NewReader("garbage"), 7, minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			overwritten = rel
			continue
		case kind == "data" && len(deleted) > 3:
			continue // one pack is enough
		}
		// A plain delete: allowed, it only adds a delete marker.
		if err := c.RemoveObject(ctx, be.cfg.Bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatalf("delete %s: %v", rel, err)
		}
		deleted = append(deleted, rel)
	}
	if _, err := archive.Open(ctx, be, creds, archive.Options{}); !errors.Is(err, archive.ErrNoRepository) {
		t.Fatalf("open after the deletes: %v, want no repository", err)
	}

	fresh, err := New(ctx, be.cfg) // as the CLI would: no policy known yet
	if err != nil {
		t.Fatal(err)
	}
	dry, err := fresh.Undelete(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Restored) != len(deleted)+1 {
		t.Fatalf("dry run would restore %v; deleted %v and overwrote %s", dry.Restored, deleted, overwritten)
	}
	if _, err := be.Stat(ctx, archive.ConfigFile, "config"); err == nil {
		t.Fatal("dry run restored config")
	}
	res, err := fresh.Undelete(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Restored) != len(deleted)+1 {
		t.Fatalf("restored %v; deleted %v and overwrote %s", res.Restored, deleted, overwritten)
	}
	for _, rel := range append(deleted, overwritten) {
		if m, until, err := c.GetObjectRetention(ctx, be.cfg.Bucket, be.join(rel), ""); err != nil || *m != minio.Governance || until.Before(time.Now().Add(23*time.Hour)) {
			t.Errorf("%s restored with retention %v %v, %v", rel, m, until, err)
		}
	}
	if again, err := fresh.Undelete(ctx, false); err != nil || len(again.Restored) != 0 {
		t.Errorf("second undelete: %+v, %v", again, err)
	}
	r := openLocked(t, be, creds)
	cr, err := r.Check(ctx, archive.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !cr.OK() || cr.Snapshots != 1 || len(cr.Warnings) != 0 {
		t.Fatalf("check after undelete: %+v", cr)
	}
}
