package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailvault/mailvault/mailmeta"
	"github.com/mailvault/mailvault/mailserver/control"
	"github.com/mailvault/mailvault/snapshot/zfstest"
)

// startServe runs `mailvault serve` (the cobra command, over real
// sockets) on dataDir with only the submission listener, and returns its
// address; the server stops when the test ends.
func startServe(t *testing.T, dataDir string) string {
	t.Helper()
	addrs, _ := runServe(t, `
hostname: mx.test
listen: {smtp: off, submission: 127.0.0.1:0, submissions: off, imap: off, imaps: off, pop3: off, pop3s: off}
smtp: {connections_per_minute: 1000000, messages_per_minute: 1000000, max_connections_per_ip: 1000}
log_level: warn
drain_timeout: 1m
`, dataDir, 1)
	if addrs["submission"] == "" {
		t.Fatalf("serve printed %v", addrs)
	}
	return addrs["submission"]
}

// submitter is one SMTP client that keeps submitting over one session and
// notes when each message was acknowledged.
type submitter struct {
	c *smtp.Client
}

func newSubmitter(addr, user string) (*submitter, error) {
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	if err := c.Auth(sasl.NewPlainClient("", user, user+" password")); err != nil {
		c.Close()
		return nil, err
	}
	return &submitter{c}, nil
}

// send submits one message with Message-ID <id@test>; nil means 250.
func (s *submitter) send(from, to, id string) error {
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nMessage-ID: <%s@test>\r\nSubject: %s\r\n\r\nbody of %s\r\n", from, to, id, id, id)
	return s.c.SendMail(from, []string{to}, strings.NewReader(msg))
}

// ack is one acknowledged submission.
type ack struct {
	id string
	at time.Time // after the 250 was read
}

// restoredIDs counts the messages restored below dir by Message-ID
// (mailmeta, as the archive's manifests do), with the folder of each copy.
func restoredIDs(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if sub := filepath.Base(filepath.Dir(p)); d.IsDir() || (sub != "cur" && sub != "new") {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		id := strings.TrimSuffix(mailmeta.Parse(raw).MessageID, "@test")
		rel, _ := filepath.Rel(dir, filepath.Dir(filepath.Dir(p)))
		out[id] = append(out[id], rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var pauseRE = regexp.MustCompile(`backing up a point-in-time view" .* pause=(\S+) servers_paused=\[(.*)\]`)

// TestBackupQuiescesRunningServer: `mailvault serve` runs and several
// SMTP clients submit mail without pause, while `mailvault backup
// --snapshot hardlink|zfs <data>/mail`, a separate process, runs several
// times. Each backup finds the server through <data>/control.sock (or
// --data) and pauses it once (the server's STATUS counts it); no client
// sees an error; and the restore of each snapshot holds every message
// acknowledged before its pause began exactly once, and nothing that was
// never submitted. On ZFS, `snapshot take` pauses the server too.
func TestBackupQuiescesRunningServer(t *testing.T) {
	t.Run("hardlink", func(t *testing.T) {
		backupUnderDelivery(t, filepath.Join(t.TempDir(), "data"), "hardlink")
	})
	t.Run("zfs", func(t *testing.T) {
		zfstest.Start(t)
		p := zfstest.NewPool(t)
		zfstest.Run(t, "zfs", "create", p.Name+"/data")
		dataDir := filepath.Join(p.Mount, "data")
		ctl := backupUnderDelivery(t, dataDir, "zfs")
		before, err := ctl.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		out, stderr, code := runCLI(t, "--json", "snapshot", "take", dataDir)
		if code != exitOK {
			t.Fatalf("snapshot take: exit %d: %s", code, stderr)
		}
		after, err := ctl.Status(t.Context())
		if err != nil || after.Quiesces != before.Quiesces+1 || after.Quiesced {
			t.Fatalf("snapshot take: server status before %+v, after %+v (%v): want one pause", before, after, err)
		}
		t.Logf("snapshot take: %s; writers held up %v", strings.TrimSpace(out), after.LastPause)
	})
}

// backupUnderDelivery runs the test above with one view mode and returns
// a control connection to the server, still running.
func backupUnderDelivery(t *testing.T, dataDir, mode string) *control.Client {
	addr := startServe(t, dataDir)
	users := []string{"alice@example.test", "bob@example.test"}
	for _, u := range users {
		if _, err := runCmd(t, newUserCmd(), u+" password\n", "add", "--data", dataDir, u, "--password-stdin"); err != nil {
			t.Fatal(err)
		}
	}
	ctl, err := control.Dial(t.Context(), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })

	var (
		mu        sync.Mutex
		acks      []ack
		submitted = map[string]bool{}
		failures  []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer halt()
	const clients, perClient = 4, 20000 // a bound; the cycles end first
	for c := range clients {
		from := users[c%2]
		s, err := newSubmitter(addr, from)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer s.c.Close()
			for i := range perClient {
				select {
				case <-stop:
					s.c.Quit()
					return
				default:
				}
				id := fmt.Sprintf("c%d-%d", c, i)
				mu.Lock()
				submitted[id] = true
				mu.Unlock()
				if err := s.send(from, users[i%2], id); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", id, err))
					mu.Unlock()
					return
				}
				now := time.Now()
				mu.Lock()
				acks = append(acks, ack{id, now})
				mu.Unlock()
			}
		})
	}
	acked := func() int { mu.Lock(); defer mu.Unlock(); return len(acks) }

	e := newCLIEnv(t)
	mailDir := filepath.Join(dataDir, "mail")
	type cycle struct {
		snapshot string
		must     []string // acknowledged before the pause began
	}
	var cycles []cycle
	var pauses []string
	const nCycles = 5
	for c := range nCycles {
		// Let mail arrive between cycles: wait for acknowledgements, not
		// for a time.
		for acked() < (c+1)*100 {
			mu.Lock()
			failed := len(failures) > 0
			mu.Unlock()
			if failed {
				halt()
				t.Fatalf("submissions failed: %q", failures)
			}
			time.Sleep(time.Millisecond) // a poll, not a bound
		}
		before, err := ctl.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"--verbose", "--json", "backup", "--snapshot", mode}
		if c%2 == 1 {
			args = append(args, "--data", dataDir) // named, not found
		}
		cmd := e.process(t, append(args, mailDir)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("cycle %d: backup: %v\n%s", c, err, stderr.String())
		}
		after, err := ctl.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if after.Quiesces != before.Quiesces+1 || after.Expired != 0 || after.Abandoned != 0 || after.Quiesced {
			t.Fatalf("cycle %d: server status before %+v, after %+v: want exactly one pause, resumed by the backup", c, before, after)
		}
		m := pauseRE.FindStringSubmatch(stderr.String())
		if m == nil || m[2] != dataDir {
			t.Fatalf("cycle %d: backup did not log a view that paused %s:\n%s", c, dataDir, stderr.String())
		}
		var res struct {
			Snapshot string `json:"snapshot"`
			Summary  struct {
				Messages int `json:"messages"`
			} `json:"summary"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("cycle %d: %v: %s", c, err, stdout.String())
		}
		var must []string
		mu.Lock()
		for _, a := range acks {
			if a.at.Before(after.LastPausedAt) {
				must = append(must, a.id)
			}
		}
		n := len(acks)
		mu.Unlock()
		pauses = append(pauses, after.LastPause.String())
		t.Logf("cycle %d: writers paused %v by the server's clock, view pause %s by the backup's; %d messages in the snapshot, %d acknowledged before the pause, %d by the end of the backup",
			c, after.LastPause, m[1], res.Summary.Messages, len(must), n)
		cycles = append(cycles, cycle{res.Snapshot, must})
	}
	halt()
	if len(failures) > 0 {
		t.Fatalf("submissions failed while backups ran: %q", failures)
	}
	t.Logf("%d submissions acknowledged by %d clients, none failed; server pauses: %v", acked(), clients, pauses)

	for c, cy := range cycles {
		target := filepath.Join(t.TempDir(), "restored")
		if _, stderr, code := e.cli(t, "restore", cy.snapshot, "--target", target); code != 0 {
			t.Fatalf("restore: exit %d: %s", code, stderr)
		}
		got := restoredIDs(t, target)
		for id, where := range got {
			if len(where) != 1 {
				t.Errorf("cycle %d: message %s restored %d times, in %q", c, id, len(where), where)
			}
			if !submitted[id] {
				t.Errorf("cycle %d: restored message %q was never submitted", c, id)
			}
		}
		missing := slices.DeleteFunc(slices.Clone(cy.must), func(id string) bool { _, ok := got[id]; return ok })
		if len(missing) > 0 {
			t.Errorf("cycle %d: %d messages acknowledged before the pause are missing, e.g. %q", c, len(missing), missing[0])
		}
		t.Logf("cycle %d: %d messages restored, all %d acknowledged before the pause present once", c, len(got), len(cy.must))
	}
	return ctl
}

// TestBackupWithoutRunningServer: with the server stopped, or a stale
// socket left by one that died, a backup through a view proceeds without
// pausing anything and says so at debug level; a server that refuses the
// connection stops the backup instead of letting it run unpaused.
func TestBackupWithoutRunningServer(t *testing.T) {
	e := newCLIEnv(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	mailDir := filepath.Join(dataDir, "mail", "example.test", "alice", "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(mailDir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mailDir, "cur", "1.M1P1.test,S=20:2,S"), []byte("Subject: x\r\n\r\nhello\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	backup := func(extra ...string) (string, int) {
		_, stderr, code := e.cli(t, append([]string{"--verbose", "backup", "--snapshot", "hardlink"}, append(extra, filepath.Join(dataDir, "mail"))...)...)
		return stderr, code
	}
	if stderr, code := backup(); code != exitOK || !strings.Contains(stderr, "no control socket in or above the paths") {
		t.Fatalf("no server: exit %d:\n%s", code, stderr)
	}
	if stderr, code := backup("--data", dataDir); code != exitOK || !strings.Contains(stderr, "no mailvault serve is running on the data directory") {
		t.Fatalf("--data, no server: exit %d:\n%s", code, stderr)
	}

	// What a server killed with SIGKILL leaves behind.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: control.SocketPath(dataDir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if stderr, code := backup(); code != exitOK || !strings.Contains(stderr, "no mailvault serve is running on the data directory") {
		t.Fatalf("stale socket: exit %d:\n%s", code, stderr)
	}

	// Something answers on the socket, but not OK: the backup must not
	// run as if the server were paused.
	os.Remove(control.SocketPath(dataDir))
	l, err := net.Listen("unix", control.SocketPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "ERR permission denied\n")
			c.Close()
		}
	}()
	if stderr, code := backup(); code != exitError || !strings.Contains(stderr, "pausing the mail server") {
		t.Fatalf("refused: exit %d:\n%s", code, stderr)
	}
	if stderr, code := backup("--snapshot", "none"); code != exitOK {
		t.Fatalf("--snapshot none does not pause, so does not ask: exit %d:\n%s", code, stderr)
	}
}
