package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func listing(t *testing.T, s *Store) *Listing {
	t.Helper()
	l, err := s.List(t.Context(), alice, Inbox)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func modseqs(l *Listing) map[uint32]uint64 {
	out := map[uint32]uint64{}
	for _, m := range l.Messages {
		out[m.UID] = m.ModSeq
	}
	return out
}

// TestModSeqLifecycle follows one folder's MODSEQs (RFC 7162) through
// arrival, flag changes, a no-op change, an expunge, a restart and a
// rewrite of the log: every change raises HIGHESTMODSEQ, nothing lowers it.
func TestModSeqLifecycle(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, _ := Open(ctx, dir, Options{})
	if err := s.EnsureInbox(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if l := listing(t, s); l.HighestModSeq != 1 {
		t.Fatalf("empty folder: HIGHESTMODSEQ %d, want 1", l.HighestModSeq)
	}
	deliverN(t, s, Inbox, 3)
	l := listing(t, s)
	h0 := l.HighestModSeq
	for _, m := range l.Messages {
		if m.ModSeq < 2 || m.ModSeq > h0 {
			t.Fatalf("message %d: MODSEQ %d, highest %d", m.UID, m.ModSeq, h0)
		}
	}
	ms, err := s.SetFlagsModSeq(ctx, alice, Inbox, 2, "S", Unconditional)
	if err != nil || ms != h0+1 {
		t.Fatalf("SetFlags: %d %v, want %d", ms, err, h0+1)
	}
	// The same flags again: nothing changes.
	if again, err := s.SetFlagsModSeq(ctx, alice, Inbox, 2, "S", Unconditional); err != nil || again != ms {
		t.Fatalf("no-op SetFlags: %d %v, want %d", again, err, ms)
	}
	// UNCHANGEDSINCE below the message's MODSEQ: refused, untouched.
	if got, err := s.SetFlagsModSeq(ctx, alice, Inbox, 2, "F", ms-1); !errors.Is(err, ErrModified) || got != ms {
		t.Fatalf("conditional: %d %v", got, err)
	}
	if got, err := s.SetFlagsModSeq(ctx, alice, Inbox, 1, "F", 0); !errors.Is(err, ErrModified) || got == 0 {
		t.Fatalf("UNCHANGEDSINCE 0: %d %v", got, err)
	}
	if err := s.Expunge(ctx, alice, Inbox, []uint32{3}); err != nil {
		t.Fatal(err)
	}
	l = listing(t, s)
	if l.HighestModSeq != ms+1 || modseqs(l)[2] != ms || l.Messages[1].Flags != "S" {
		t.Fatalf("after expunge: highest %d mods %v", l.HighestModSeq, modseqs(l))
	}
	gone, complete, _, err := s.Expunged(ctx, alice, Inbox, ms)
	if err != nil || !complete || fmt.Sprint(gone) != "[3]" {
		t.Fatalf("Expunged(%d) = %v %v %v", ms, gone, complete, err)
	}
	if gone, _, _, _ := s.Expunged(ctx, alice, Inbox, ms+1); len(gone) != 0 {
		t.Fatalf("Expunged(highest) = %v", gone)
	}

	// A restart keeps MODSEQs and the expunge; HIGHESTMODSEQ goes up to
	// the last reservation (uidlist.go).
	s2, _ := Open(ctx, dir, Options{})
	l2 := listing(t, s2)
	if l2.HighestModSeq != ms+modSeqReserve || fmt.Sprint(modseqs(l2)) != fmt.Sprint(modseqs(l)) {
		t.Fatalf("restart: highest %d/%d mods %v/%v", l2.HighestModSeq, l.HighestModSeq, modseqs(l2), modseqs(l))
	}
	if gone, complete, _, _ := s2.Expunged(ctx, alice, Inbox, ms); !complete || fmt.Sprint(gone) != "[3]" {
		t.Fatalf("restart: Expunged = %v %v", gone, complete)
	}

	// A rewrite keeps HIGHESTMODSEQ (H) and says the expunges are
	// forgotten (E): Expunged is then incomplete for older MODSEQs.
	st, _ := s2.folder(s2.MaildirPath(alice))
	st.mu.Lock()
	err = st.idx.rewrite(s2.fs)
	st.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	s3, _ := Open(ctx, dir, Options{})
	l3 := listing(t, s3)
	if l3.HighestModSeq != l2.HighestModSeq || fmt.Sprint(modseqs(l3)) != fmt.Sprint(modseqs(l)) {
		t.Fatalf("rewrite: highest %d/%d mods %v", l3.HighestModSeq, l.HighestModSeq, modseqs(l3))
	}
	if _, complete, _, _ := s3.Expunged(ctx, alice, Inbox, ms); complete {
		t.Fatal("rewrite: expunges before the rewrite reported complete")
	}
	if _, complete, _, _ := s3.Expunged(ctx, alice, Inbox, l3.HighestModSeq); !complete {
		t.Fatal("rewrite: expunges since the rewrite reported incomplete")
	}
	// The next change is above everything before.
	if ms, err := s3.SetFlagsModSeq(ctx, alice, Inbox, 1, "R", Unconditional); err != nil || ms != l3.HighestModSeq+1 {
		t.Fatalf("after rewrite: %d %v", ms, err)
	}
}

// TestModSeqOutsideChange: flags changed by renaming the file behind the
// store's back (another program on the Maildir) get a new MODSEQ when
// the folder is scanned, in this process and in a new one.
func TestModSeqOutsideChange(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, _ := Open(ctx, dir, Options{})
	deliverN(t, s, Inbox, 2)
	if err := s.SetFlags(ctx, alice, Inbox, 1, "S"); err != nil {
		t.Fatal(err)
	}
	l := listing(t, s)
	rename := func(s *Store, flags string) {
		t.Helper()
		p := listing(t, s).Messages[0].Path
		np := p[:strings.LastIndex(p, ":2,")] + ":2," + flags
		if err := os.Rename(p, np); err != nil {
			t.Fatal(err)
		}
		// The directory's times must move past the stamp (scan.go).
		st, _ := s.folder(s.MaildirPath(alice))
		st.mu.Lock()
		st.trusted = false
		st.mu.Unlock()
	}
	rename(s, "FS")
	l2 := listing(t, s)
	if l2.Messages[0].Flags != "FS" || l2.Messages[0].ModSeq <= l.HighestModSeq || l2.HighestModSeq != l2.Messages[0].ModSeq {
		t.Fatalf("outside change: %+v highest %d (before %d)", l2.Messages[0], l2.HighestModSeq, l.HighestModSeq)
	}
	if l2.Messages[1].ModSeq != l.Messages[1].ModSeq {
		t.Fatalf("untouched message's MODSEQ moved: %d -> %d", l.Messages[1].ModSeq, l2.Messages[1].ModSeq)
	}
	// While the server is down.
	rename(s, "")
	s2, _ := Open(ctx, dir, Options{})
	l3 := listing(t, s2)
	if l3.Messages[0].Flags != "" || l3.Messages[0].ModSeq <= l2.HighestModSeq {
		t.Fatalf("outside change while down: %+v (highest before %d)", l3.Messages[0], l2.HighestModSeq)
	}
}

// TestModSeqOldLog: a log written before MODSEQs (no H, M or modseq in
// X) loads with its UIDs, and its messages get MODSEQs, once.
func TestModSeqOldLog(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, _ := Open(ctx, dir, Options{})
	deliverN(t, s, Inbox, 3)
	l := listing(t, s)
	idx := filepath.Join(s.MaildirPath(alice), indexName)
	old := fmt.Sprintf("mailvault-uidlist 1 V%d N5 R1\n", l.UIDValidity)
	for _, m := range l.Messages {
		old += fmt.Sprintf("A %d %s\n", m.UID, m.Unique)
	}
	old += "X 4\n"
	if err := os.WriteFile(idx, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(ctx, dir, Options{})
	l2 := listing(t, s2)
	if l2.UIDValidity != l.UIDValidity || fmt.Sprint(uids(l2)) != "[1 2 3]" || l2.UIDNext != 5 || l2.HighestModSeq < 1 {
		t.Fatalf("old log: %+v", l2)
	}
	for _, m := range l2.Messages {
		if m.ModSeq == 0 || m.ModSeq > l2.HighestModSeq {
			t.Fatalf("old log: message %d MODSEQ %d highest %d", m.UID, m.ModSeq, l2.HighestModSeq)
		}
	}
	s3, _ := Open(ctx, dir, Options{})
	if l3 := listing(t, s3); fmt.Sprint(modseqs(l3)) != fmt.Sprint(modseqs(l2)) || l3.HighestModSeq < l2.HighestModSeq {
		t.Fatalf("old log reloaded: %v/%v", modseqs(l3), modseqs(l2))
	}
}

// TestUnchangedSinceRace: sessions storing with the same UNCHANGEDSINCE
// at once: exactly one wins.
func TestUnchangedSinceRace(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	deliverN(t, s, Inbox, 1)
	since := listing(t, s).Messages[0].ModSeq
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.SetFlagsModSeq(ctx, alice, Inbox, 1, string("DFRST"[i%5]), since)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, ErrModified):
				lost++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || lost != 7 {
		t.Fatalf("won %d lost %d, want 1 and 7", won, lost)
	}
}

// TestSetFlagsDurability: a flag change is the file's rename and cur/'s
// fsync (a message still in new/ adds new/'s); the UID list's M record is
// fsynced only with a new reservation of MODSEQs, the first change after
// a restart and then every modSeqReserve changes (uidlist.go).
func TestSetFlagsDurability(t *testing.T) {
	s := newStore(t)
	deliverN(t, s, Inbox, 1)
	listing(t, s)
	if err := s.SetFlags(t.Context(), alice, Inbox, 1, "S"); err != nil { // out of new/
		t.Fatal(err)
	}
	rec := &recordingFS{}
	s.fs = rec
	if err := s.SetFlags(t.Context(), alice, Inbox, 1, "FS"); err != nil {
		t.Fatal(err)
	}
	if want := "[rename cur->cur fsyncdir cur]"; fmt.Sprint(rec.ops) != want {
		t.Fatalf("operations %q, want %s", rec.ops, want)
	}
	rec.ops = nil
	for i := range modSeqReserve {
		if err := s.SetFlags(t.Context(), alice, Inbox, 1, []string{"S", "FS"}[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(fmt.Sprint(rec.ops), "fsync Maildir"); n != 1 {
		t.Fatalf("%d fsyncs of the UID list in %d flag changes, want 1", n, modSeqReserve)
	}
}

// TestModSeqLostRecord: a crash loses the unsynced M record of a flag
// change whose rename was durable. After it the message has a MODSEQ
// above any handed out before, and so has HIGHESTMODSEQ.
func TestModSeqLostRecord(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, _ := Open(ctx, dir, Options{})
	deliverN(t, s, Inbox, 2)
	listing(t, s)
	if err := s.SetFlags(ctx, alice, Inbox, 1, "S"); err != nil { // reserves
		t.Fatal(err)
	}
	ms, err := s.SetFlagsModSeq(ctx, alice, Inbox, 1, "FS", Unconditional)
	if err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(s.MaildirPath(alice), indexName)
	data, _ := os.ReadFile(idx)
	last := fmt.Sprintf("M 1 %d FS\n", ms)
	if !strings.HasSuffix(string(data), last) {
		t.Fatalf("log ends %q, want %q", data[max(0, len(data)-40):], last)
	}
	if err := os.WriteFile(idx, data[:len(data)-len(last)], 0o600); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(ctx, dir, Options{})
	l := listing(t, s2)
	if m := l.Messages[0]; m.Flags != "FS" || m.ModSeq <= ms || l.HighestModSeq < m.ModSeq {
		t.Fatalf("after the crash: %+v, highest %d; MODSEQ before %d", m, l.HighestModSeq, ms)
	}
}

// BenchmarkSetFlags is a STORE of one message's flags, back and forth.
func BenchmarkSetFlags(b *testing.B) {
	s, err := Open(b.Context(), b.TempDir(), Options{Hostname: "mx.test"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Deliver(b.Context(), alice, Inbox, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		b.Fatal(err)
	}
	if _, err := s.List(b.Context(), alice, Inbox); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		if err := s.SetFlags(b.Context(), alice, Inbox, 1, []string{"S", "FS"}[i%2]); err != nil {
			b.Fatal(err)
		}
	}
}
