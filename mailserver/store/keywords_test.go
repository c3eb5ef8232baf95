package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeywordsLikeDovecot(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       map[byte]string
	}{
		{"dovecot's own", "0 $Junk\n1 NonJunk\n2 $label1\n", map[byte]string{'a': "$Junk", 'b': "NonJunk", 'c': "$label1"}},
		{"gaps and order", "25 last\n3 d\n", map[byte]string{'z': "last", 'd': "d"}},
		{"bad lines skipped", "x y\n26 over\n-1 neg\n1\n2 has space\n3 \"q\"\n0 ok\n0 again\n4 OK\n", map[byte]string{'a': "ok"}},
		{"empty", "", map[byte]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := parseKeywords([]byte(tc.file))
			for i := range k {
				l := byte('a' + i)
				if k.Name(l) != tc.want[l] {
					t.Errorf("%c = %q, want %q", l, k.Name(l), tc.want[l])
				}
			}
			again := parseKeywords(formatKeywords(&k))
			if again != k {
				t.Errorf("format/parse round trip: %v != %v", again, k)
			}
		})
	}
}

func TestValidKeyword(t *testing.T) {
	for name, ok := range map[string]bool{
		"$Forwarded": true, "$Junk": true, "Work-2024": true, "a.b:c": true, "[x": true,
		"": false, "two words": false, `\Seen`: false, "a*": false, "a%": false, "(x": false,
		"x)": false, `q"`: false, "x]": false, "{3}": false, "tab\t": false, "caf\xc3\xa9": false,
		strings.Repeat("k", 256): false,
	} {
		if err := ValidKeyword(name); (err == nil) != ok {
			t.Errorf("ValidKeyword(%q) = %v", name, err)
		}
	}
}

// AddKeywords gives letters in order, once per name whatever its case,
// writes Dovecot's file, and refuses the 27th keyword without adding any.
func TestAddKeywordsAndLimit(t *testing.T) {
	s := newStore(t)
	deliverN(t, s, "", 1)
	ctx := t.Context()
	k, err := s.AddKeywords(ctx, alice, Inbox, []string{"$Junk", "Work", "$junk"})
	if err != nil {
		t.Fatal(err)
	}
	if k.Letter("$JUNK") != 'a' || k.Letter("work") != 'b' || len(k.Names()) != 2 {
		t.Fatalf("table %v", k.Names())
	}
	file := filepath.Join(s.MaildirPath(alice), "dovecot-keywords")
	if b, _ := os.ReadFile(file); string(b) != "0 $Junk\n1 Work\n" {
		t.Fatalf("dovecot-keywords %q", b)
	}
	if _, err := s.AddKeywords(ctx, alice, Inbox, []string{"bad word"}); !errors.Is(err, ErrBadKeyword) {
		t.Fatalf("bad keyword: %v", err)
	}
	var more []string
	for i := 2; i < MaxKeywords; i++ {
		more = append(more, fmt.Sprintf("k%d", i))
	}
	if k, err = s.AddKeywords(ctx, alice, Inbox, more); err != nil || !k.Full() {
		t.Fatalf("filling up: %v %v", k.Names(), err)
	}
	before, _ := os.ReadFile(file)
	if _, err := s.AddKeywords(ctx, alice, Inbox, []string{"Work", "one-too-many"}); !errors.Is(err, ErrTooManyKeywords) {
		t.Fatalf("27th keyword: %v", err)
	}
	if after, _ := os.ReadFile(file); string(after) != string(before) {
		t.Fatal("a refused keyword changed the file")
	}
	if _, err := s.AddKeywords(ctx, alice, Inbox, []string{"WORK", "k25"}); err != nil {
		t.Fatalf("known keywords in a full folder: %v", err)
	}
	l, err := s.List(ctx, alice, Inbox)
	if err != nil || l.Keywords != k {
		t.Fatalf("List keywords %v, %v", l.Keywords.Names(), err)
	}
}

// Keyword letters are per folder: COPY and MOVE rewrite them for the
// destination's table, adding what it lacks; letters with no keyword are
// dropped.
func TestCopyMoveTranslateKeywords(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	deliverN(t, s, "", 2)
	if err := s.CreateFolder(ctx, alice, "Archive"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddKeywords(ctx, alice, Inbox, []string{"$Junk", "Work"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddKeywords(ctx, alice, "Archive", []string{"Other"}); err != nil {
		t.Fatal(err)
	}
	for _, uid := range []uint32{1, 2} {
		if err := s.SetFlags(ctx, alice, Inbox, uid, "Sabq"); err != nil { // q: no keyword
			t.Fatal(err)
		}
	}
	if _, err := s.Copy(ctx, alice, Inbox, "Archive", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Move(ctx, alice, Inbox, "Archive", 2); err != nil {
		t.Fatal(err)
	}
	l, err := s.List(ctx, alice, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Keywords.Names(); strings.Join(got, " ") != "Other $Junk Work" {
		t.Fatalf("Archive keywords %q", got)
	}
	for _, m := range l.Messages {
		if m.Flags != "Sbc" {
			t.Errorf("message %d in Archive has flags %q, want Sbc", m.UID, m.Flags)
		}
	}
	if l, _ := s.List(ctx, alice, Inbox); len(l.Messages) != 1 || l.Messages[0].Flags != "Sabq" {
		t.Fatalf("INBOX after copy and move: %+v", l.Messages)
	}
}

// Another process (Dovecot) may rewrite the file: List reads it anew.
func TestKeywordsFileChangedOutside(t *testing.T) {
	s := newStore(t)
	deliverN(t, s, "", 1)
	ctx := t.Context()
	if _, err := s.AddKeywords(ctx, alice, Inbox, []string{"mine"}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(s.MaildirPath(alice), "dovecot-keywords")
	if err := os.WriteFile(file+".new", []byte("0 mine\n1 theirs\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".new", file); err != nil {
		t.Fatal(err)
	}
	l, err := s.List(ctx, alice, Inbox)
	if err != nil || strings.Join(l.Keywords.Names(), " ") != "mine theirs" {
		t.Fatalf("after an outside change: %v %v", l.Keywords.Names(), err)
	}
}
