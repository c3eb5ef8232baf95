package auth

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

// TestDeleteDomain: refused while the domain has users or aliases (which
// it lists) and nothing written; with force, they go with it and the
// removed users leave other aliases' targets.
func TestDeleteDomain(t *testing.T) {
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "accounts.json"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a.test", "b.test", "empty.test"} {
		if err := db.AddDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"x@a.test", "y@a.test", "z@b.test"} {
		if err := db.AddUser(ctx, u, "long enough password", RoleUser); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AddAlias(ctx, "list@a.test", "z@b.test"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddAlias(ctx, "team@b.test", "x@a.test", "z@b.test"); err != nil {
		t.Fatal(err)
	}

	if _, err := db.DeleteDomain(ctx, "nowhere.test", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown domain: %v", err)
	}
	rm, err := db.DeleteDomain(ctx, "A.TEST", false)
	if !errors.Is(err, ErrInUse) || !slices.Equal(rm.Users, []string{"x@a.test", "y@a.test"}) || !slices.Equal(rm.Aliases, []string{"list@a.test"}) {
		t.Fatalf("in use: %+v, %v", rm, err)
	}
	if !db.IsLocalDomain("a.test") {
		t.Fatal("a refused delete removed the domain")
	}
	if rm, err := db.DeleteDomain(ctx, "empty.test", false); err != nil || len(rm.Users)+len(rm.Aliases) != 0 || db.IsLocalDomain("empty.test") {
		t.Fatalf("empty domain: %+v, %v", rm, err)
	}
	rm, err = db.DeleteDomain(ctx, "a.test", true)
	if err != nil || len(rm.Users) != 2 || len(rm.Aliases) != 1 {
		t.Fatalf("--force: %+v, %v", rm, err)
	}
	if db.IsLocalDomain("a.test") {
		t.Fatal("domain still local")
	}
	us, _ := db.Users(ctx)
	as, _ := db.Aliases(ctx)
	if len(us) != 1 || us[0].Address != "z@b.test" || len(as) != 1 || !slices.Equal(as[0].Targets, []string{"z@b.test"}) {
		t.Fatalf("after --force: users %+v, aliases %+v", us, as)
	}
}
