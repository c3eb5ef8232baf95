package archive

import (
	"errors"
	"testing"
)

// TestRemoveDurableWriteOnly: the one delete path refuses a write-only key
// whatever the file, so that a caller that forgets to refuse it (as
// `repair index` once did, issue 9) still deletes nothing.
func TestRemoveDurableWriteOnly(t *testing.T) {
	for _, ft := range []FileType{PackFile, IndexFile, SnapshotFile, KeyFile, ConfigFile} {
		t.Run(string(ft), func(t *testing.T) {
			be := newMemBackend()
			if err := be.Put(t.Context(), ft, "f", []byte("x")); err != nil {
				t.Fatal(err)
			}
			r := &Repository{be: be, key: &KeyFileContent{Kind: WriteOnlyKey}}
			w, err := r.removeDurable(t.Context(), ft, "f")
			if !errors.Is(err, ErrWriteOnly) || w != nil {
				t.Fatalf("removeDurable with a write-only key: %v, %v; want ErrWriteOnly", w, err)
			}
			if _, err := be.Stat(t.Context(), ft, "f"); err != nil {
				t.Fatalf("the file is gone: %v", err)
			}
		})
	}
}

func TestLostMessageString(t *testing.T) {
	snap := ID{0x1a, 0x2b, 0x3c, 0x4d}
	for _, tc := range []struct {
		m    LostMessage
		want string
	}{
		{LostMessage{Snapshot: snap, User: "a@x", Folder: "INBOX", MessageID: "1@x", Subject: "hi", Unique: "17.M1.h"},
			`snapshot 1a2b3c4d a@x/INBOX: Message-ID "1@x", subject "hi" (17.M1.h)`},
		{LostMessage{Snapshot: snap, User: "a@x", Folder: "Sent", Unique: "17.M1.h"},
			`snapshot 1a2b3c4d a@x/Sent: no Message-ID, subject "" (17.M1.h)`},
		{LostMessage{Snapshot: snap, User: "a@x", Folder: "INBOX", Messages: 7},
			`snapshot 1a2b3c4d a@x/INBOX: the whole folder (7 messages; its message list is gone)`},
		{LostMessage{Snapshot: snap, Root: "/var/mail", File: "x/a/Maildir/dovecot-uidlist"},
			`snapshot 1a2b3c4d file x/a/Maildir/dovecot-uidlist`},
		{LostMessage{Snapshot: snap, Root: "/var/mail"},
			`snapshot 1a2b3c4d all other files (not messages) of /var/mail`},
	} {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
