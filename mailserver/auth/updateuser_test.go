package auth

import (
	"context"
	"errors"
	"testing"
)

// TestUpdateUser covers the per-user changes that share updateUser: each
// changes the user it names and fails with ErrNotFound, writing nothing,
// for an address that is not a user.
func TestUpdateUser(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(ctx context.Context, db *DB, address string) error
		check  func(u User) bool
	}{
		{
			name:   "SetPassword",
			change: func(ctx context.Context, db *DB, a string) error { return db.SetPassword(ctx, a, "new password") },
			check: func(u User) bool {
				ok, err := CheckPassword(u.PasswordHash, "new password")
				return ok && err == nil
			},
		},
		{
			name:   "SetRole",
			change: func(ctx context.Context, db *DB, a string) error { return db.SetRole(ctx, a, RoleAdmin) },
			check:  func(u User) bool { return u.Role == RoleAdmin },
		},
		{
			name: "AddAppPassword",
			change: func(ctx context.Context, db *DB, a string) error {
				_, err := db.AddAppPassword(ctx, a, "phone")
				return err
			},
			check: func(u User) bool { return len(u.AppPasswords) == 1 && u.AppPasswords[0].Name == "phone" },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			ctx := t.Context()
			if err := tc.change(ctx, db, "bob@example.test"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("unknown user: err = %v, want ErrNotFound", err)
			}
			if users, _ := db.Users(ctx); len(users) != 1 {
				t.Fatalf("unknown user: %d users after the change, want 1", len(users))
			}
			if err := tc.change(ctx, db, "Alice@Example.test"); err != nil {
				t.Fatal(err)
			}
			u, err := db.LookupUser(ctx, "alice@example.test")
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(u) {
				t.Fatalf("alice after %s: %+v", tc.name, u)
			}
		})
	}
	db := newDB(t)
	ctx := t.Context()
	for _, err := range []error{
		db.DeleteUser(ctx, "bob@example.test"),
		db.RevokeAppPassword(ctx, "bob@example.test", "phone"),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("err = %v, want ErrNotFound", err)
		}
	}
}
