package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary a store writer for TestKill9ModSeq.
const childEnv = "MAILVAULT_STORE_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		runChild(dir)
		return
	}
	os.Exit(m.Run())
}

// runChild changes flags, delivers and expunges in alice's INBOX under
// dir until it is killed, printing the MODSEQ of every change once the
// store has returned it ("what a client was told").
func runChild(dir string) {
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{Hostname: "mx.test"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		l, err := s.List(ctx, alice, Inbox)
		if err != nil || len(l.Messages) == 0 {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		m := l.Messages[i%len(l.Messages)]
		switch i % 10 {
		case 7: // an arrival
			if _, err := s.Deliver(ctx, alice, Inbox, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
		case 9: // an expunge
			if len(l.Messages) > 3 {
				if err := s.Expunge(ctx, alice, Inbox, []uint32{m.UID}); err != nil {
					fmt.Println("error:", err)
					os.Exit(1)
				}
			}
		default:
			ms, err := s.SetFlagsModSeq(ctx, alice, Inbox, m.UID, []string{"S", "FS", "F", ""}[i%4], Unconditional)
			if err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
			fmt.Println(ms)
		}
	}
}

// TestKill9ModSeq kills a process changing flags with SIGKILL, three
// times at different points, and reopens the folder each time: it loads,
// its HIGHESTMODSEQ is at least every MODSEQ the process handed out, and
// the next change is above them (RFC 7162 section 3.1.2.1: HIGHESTMODSEQ
// never goes down within a UIDVALIDITY).
func TestKill9ModSeq(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := t.TempDir()
	s, _ := Open(t.Context(), dir, Options{})
	deliverN(t, s, Inbox, 3)
	validity := listing(t, s).UIDValidity
	var told uint64
	for round, after := range []int{50, 337, 1001} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(out)
		if l, _ := r.ReadString('\n'); l != "ready\n" {
			t.Fatalf("child: %q", l)
		}
		for n := 0; n < after; n++ {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("round %d: child: %v", round, err)
			}
			var ms uint64
			if _, err := fmt.Sscanf(l, "%d", &ms); err != nil {
				t.Fatalf("round %d: child: %q", round, l)
			}
			told = max(told, ms) // a change to the same flags keeps its MODSEQ
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		s2, err := Open(t.Context(), dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		l := listing(t, s2)
		if l.UIDValidity != validity || l.HighestModSeq < told {
			t.Fatalf("round %d: UIDVALIDITY %d (was %d), HIGHESTMODSEQ %d below %d handed out", round, l.UIDValidity, validity, l.HighestModSeq, told)
		}
		ms, err := s2.SetFlagsModSeq(t.Context(), alice, Inbox, l.Messages[0].UID, "DR", Unconditional)
		if err != nil || ms <= told {
			t.Fatalf("round %d: next MODSEQ %d (%v), handed out up to %d", round, ms, err, told)
		}
		told = ms
	}
}
