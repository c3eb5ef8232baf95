package auth

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestCheckMinimum(t *testing.T) {
	const mib = 1024
	for _, tc := range []struct {
		p  Params
		ok bool
	}{
		{DefaultParams(), true},
		{Params{Memory: 19 * mib, Time: 2, Threads: 1}, true},
		{Params{Memory: 46 * mib, Time: 1, Threads: 1}, true},
		{Params{Memory: 19*mib - 1, Time: 2, Threads: 1}, false},
		{Params{Memory: 19 * mib, Time: 1, Threads: 1}, false},
		{Params{Memory: 46*mib - 1, Time: 1, Threads: 1}, false},
		{Params{Memory: 46 * mib, Time: 0, Threads: 1}, false},
		{Params{Memory: 64 * mib, Time: 3, Threads: 0}, false},
		{Params{Memory: MaxMemory, Time: 1, Threads: 4}, true},
		{Params{Memory: MaxMemory + 1, Time: 1, Threads: 4}, false},
	} {
		if err := tc.p.CheckMinimum(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

// New hashes take the cost set with SetParams, shown in their PHC string;
// hashes made before keep verifying with theirs, and an unknown user is
// checked against a dummy of the new cost.
func TestSetParams(t *testing.T) {
	db := newDB(t) // alice has a hash of cheap's cost
	custom := Params{Time: 2, Memory: 128, Threads: 3, KeyLen: 32}
	db.SetParams(custom)
	if err := db.AddUser(t.Context(), "bob@example.test", "bob's password", RoleUser); err != nil {
		t.Fatal(err)
	}
	bob, err := db.LookupUser(t.Context(), "bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(bob.PasswordHash, "$argon2id$v=19$m=128,t=2,p=3$") {
		t.Fatalf("new hash %s", bob.PasswordHash)
	}
	var checked []string
	db.check = func(encoded, password string) (bool, error) {
		checked = append(checked, encoded)
		return CheckPassword(encoded, password)
	}
	for _, login := range []struct{ user, pw string }{{"bob@example.test", "bob's password"}, {"alice@example.test", "correct horse"}} {
		if _, err := db.Authenticate(t.Context(), login.user, login.pw); err != nil {
			t.Fatalf("%s: %v", login.user, err)
		}
	}
	if _, err := db.Authenticate(t.Context(), "nobody@example.test", "x"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatal(err)
	}
	if !strings.HasPrefix(checked[2], "$argon2id$v=19$m=128,t=2,p=3$") {
		t.Fatalf("unknown user checked against %s", checked[2])
	}
}

// SetMaxConcurrentHashes changes the bound of a DB in use: raised, the
// waiters go in at once; lowered, it applies as running checks end.
func TestSetMaxConcurrentHashes(t *testing.T) {
	opts := cheap
	opts.MaxConcurrentHashes = 1
	db, err := Open(filepath.Join(t.TempDir(), "accounts.json"), opts)
	if err != nil {
		t.Fatal(err)
	}
	h := holdChecks(db)
	running := func() int {
		n, _, _ := h.counts()
		return n
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { db.Authenticate(context.Background(), "nobody@example.test", "password") })
	}
	<-h.entered
	settle()
	if n := running(); n != 1 {
		t.Fatalf("%d checks with a bound of 1", n)
	}
	db.SetMaxConcurrentHashes(3)
	<-h.entered
	<-h.entered
	settle()
	if n := running(); n != 3 || db.MaxConcurrentHashes() != 3 {
		t.Fatalf("%d checks (bound %d) after raising it to 3", n, db.MaxConcurrentHashes())
	}
	// Lowered to 1: the three running finish, then one at a time.
	db.SetMaxConcurrentHashes(1)
	for range 3 {
		h.release <- struct{}{}
	}
	<-h.entered
	settle()
	if n := running(); n != 1 {
		t.Fatalf("%d checks after lowering the bound to 1", n)
	}
	close(h.release)
	wg.Wait()
	if _, peak, _ := h.counts(); peak != 3 {
		t.Fatalf("peak %d, want 3", peak)
	}
}
