package control_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/control"
	"github.com/mailvault/mailvault/mailserver/store"
)

// childEnv makes the test binary a control client in another process:
// "quiesce DIR" pauses and waits to be killed; "dial DIR" prints what
// Dial answered.
const childEnv = "MAILVAULT_CONTROL_TEST_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(child(spec))
	}
	os.Exit(m.Run())
}

func child(spec string) int {
	mode, dir, _ := strings.Cut(spec, " ")
	ctx := context.Background()
	c, err := control.Dial(ctx, dir)
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	switch mode {
	case "quiesce":
		if _, err := c.Quiesce(ctx); err != nil {
			fmt.Println("quiesce:", err)
			return 1
		}
		fmt.Println("paused")
		select {} // until killed
	}
	fmt.Println("connected")
	return 0
}

var alice = store.Account{Domain: "example.test", User: "alice"}

// countingQuiescer is the real store with the number of pauses it holds
// and has granted.
type countingQuiescer struct {
	inner control.Quiescer

	mu             sync.Mutex
	active, total  int
	ctxEndedBefore int // Quiesce calls whose ctx ended before they returned
	entered        chan struct{}
}

func (q *countingQuiescer) Quiesce(ctx context.Context) (func(), error) {
	if q.entered != nil {
		q.entered <- struct{}{}
	}
	r, err := q.inner.Quiesce(ctx)
	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		q.ctxEndedBefore++
		return nil, err
	}
	q.active++
	q.total++
	var once sync.Once
	return func() {
		once.Do(func() {
			r()
			q.mu.Lock()
			q.active--
			q.mu.Unlock()
		})
	}, nil
}

func (q *countingQuiescer) counts() (active, total int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active, q.total
}

// blockingQuiescer never gets its writes drained: Quiesce waits for ctx,
// as the store does while a write is in flight.
type blockingQuiescer struct{}

func (blockingQuiescer) Quiesce(ctx context.Context) (func(), error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

type fixture struct {
	dir   string
	store *store.Store
	q     *countingQuiescer
	srv   *control.Server
	audit string
}

// newFixture runs a control server on a fresh data directory whose store
// is real; dir may name the data directory (it is created).
func newFixture(t *testing.T, dir string, opts control.Options) *fixture {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), filepath.Join(dir, "mail"), store.Options{Hostname: "test"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, store: st, q: &countingQuiescer{inner: st}, audit: filepath.Join(dir, "audit.jsonl")}
	al, err := audit.Open(f.audit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	opts.Audit = al
	f.srv, err = control.Listen(dir, f.q, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fixture) dial(t *testing.T) *control.Client {
	t.Helper()
	c, err := control.Dial(t.Context(), f.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// deliverAsync delivers one message; the channel reports when it is done.
func (f *fixture) deliverAsync(t *testing.T, id string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := f.store.Deliver(context.Background(), alice, store.Inbox, strings.NewReader("Subject: "+id+"\r\n\r\n"+id+"\r\n"))
		done <- err
	}()
	return done
}

func (f *fixture) delivered(t *testing.T) int {
	t.Helper()
	e, err := os.ReadDir(filepath.Join(f.store.MaildirPath(alice), "new"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return len(e)
}

// waitStatus polls the server until cond holds; the test's timeout
// bounds it.
func (f *fixture) waitStatus(t *testing.T, cond func(control.Status) bool) control.Status {
	t.Helper()
	for {
		st := f.srv.Status()
		if cond(st) {
			return st
		}
		time.Sleep(time.Millisecond) // a poll, not a bound
	}
}

// auditRecords returns the audit records of an action.
func (f *fixture) auditRecords(t *testing.T, action string) []audit.Record {
	t.Helper()
	rep, err := audit.Verify(f.audit)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	raw, err := os.ReadFile(f.audit)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if line == "" {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Action == action {
			out = append(out, r)
		}
	}
	if rep.Lines < len(out) {
		t.Fatalf("verify saw %d lines, read %d records", rep.Lines, len(out))
	}
	return out
}

func TestQuiesceHoldsWritesUntilResume(t *testing.T) {
	f := newFixture(t, "", control.Options{})
	c := f.dial(t)
	if st, err := c.Status(t.Context()); err != nil || st.Quiesced || st.PID != os.Getpid() || st.DataDir != f.dir || st.MaxPause != control.DefaultMaxPause {
		t.Fatalf("status before: %+v %v", st, err)
	}
	resume, err := c.Quiesce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if active, _ := f.q.counts(); active != 1 {
		t.Fatalf("store pauses held after OK: %d", active)
	}
	done := f.deliverAsync(t, "during")
	// Another client sees the pause.
	if st, err := f.dial(t).Status(t.Context()); err != nil || !st.Quiesced || st.Pauses != 1 || st.Quiesces != 1 {
		t.Fatalf("status while paused: %+v %v", st, err)
	}
	if n := f.delivered(t); n != 0 {
		t.Fatalf("%d messages delivered while paused", n)
	}
	resume()
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := f.delivered(t); n != 1 {
		t.Fatalf("%d messages delivered after resume", n)
	}
	st, err := c.Status(t.Context())
	if err != nil || st.Quiesced || st.Quiesces != 1 || st.Expired != 0 || st.Abandoned != 0 || st.LastPausedAt.IsZero() || st.LastPause <= 0 {
		t.Fatalf("status after: %+v %v", st, err)
	}
	if active, total := f.q.counts(); active != 0 || total != 1 {
		t.Fatalf("store pauses: %d held, %d granted", active, total)
	}
	// The same connection pauses again.
	resume, err = c.Quiesce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	resume()
	if _, total := f.q.counts(); total != 2 || c.Err() != nil {
		t.Fatalf("second pause: %d granted, %v", total, c.Err())
	}
	recs := f.auditRecords(t, "store.quiesce")
	if len(recs) != 2 || !recs[0].Success || !strings.Contains(recs[0].Detail, "resumed: RESUME") || recs[0].Protocol != "control" {
		t.Fatalf("audit: %+v", recs)
	}
	t.Logf("pause held %v", st.LastPause)
}

// TestPauseEndsWithoutResume: a client that goes away (closes, or is
// killed) or holds the pause past the maximum, or a server shutting down,
// never leaves writes paused.
func TestPauseEndsWithoutResume(t *testing.T) {
	tests := []struct {
		name   string
		opts   control.Options
		end    func(t *testing.T, f *fixture, c *control.Client)
		count  func(control.Status) uint64
		detail string
	}{
		{"client closes", control.Options{}, func(t *testing.T, f *fixture, c *control.Client) { c.Close() },
			func(s control.Status) uint64 { return s.Abandoned }, "went away"},
		{"maximum pause", control.Options{MaxPause: 20 * time.Millisecond}, func(t *testing.T, f *fixture, c *control.Client) {},
			func(s control.Status) uint64 { return s.Expired }, "maximum pause 20ms elapsed"},
		{"server closes", control.Options{}, func(t *testing.T, f *fixture, c *control.Client) { f.srv.Close() },
			func(s control.Status) uint64 { return s.Abandoned }, "server shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "", tt.opts)
			c := f.dial(t)
			resume, err := c.Quiesce(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			done := f.deliverAsync(t, "held")
			tt.end(t, f, c)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			st := f.waitStatus(t, func(s control.Status) bool { return tt.count(s) == 1 })
			if st.Quiesced || st.Pauses != 0 {
				t.Fatalf("still paused: %+v", st)
			}
			if active, _ := f.q.counts(); active != 0 {
				t.Fatalf("store pauses held: %d", active)
			}
			resume()
			if tt.name == "maximum pause" {
				// RESUME is answered with ERR: the view may not be of one instant.
				if err := c.Err(); err == nil || !strings.Contains(err.Error(), "maximum pause") {
					t.Fatalf("resume after the maximum pause: Err() = %v", err)
				}
			} else if c.Err() == nil {
				t.Fatal("resume on a closed connection reported no error")
			}
			recs := f.auditRecords(t, "store.quiesce")
			if len(recs) != 1 || recs[0].Success || !strings.Contains(recs[0].Detail, tt.detail) {
				t.Fatalf("audit: %+v", recs)
			}
		})
	}
}

// TestKilledClientResumes: a backup process killed with SIGKILL while it
// holds the pause: the kernel closes its socket and writes resume.
func TestKilledClientResumes(t *testing.T) {
	f := newFixture(t, "", control.Options{})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=quiesce "+f.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "paused" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q", line)
	}
	if !f.srv.Status().Quiesced {
		t.Fatal("not paused while the child holds the pause")
	}
	done := f.deliverAsync(t, "after-kill")
	cmd.Process.Kill()
	cmd.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := f.waitStatus(t, func(s control.Status) bool { return s.Abandoned == 1 })
	if st.Quiesced || f.delivered(t) != 1 {
		t.Fatalf("after kill: %+v, %d delivered", st, f.delivered(t))
	}
}

// TestQuiesceAbandonedWhileWaiting: a client that gives up while the
// store still waits for writes in flight leaves nothing paused.
func TestQuiesceAbandonedWhileWaiting(t *testing.T) {
	dir := t.TempDir()
	q := &countingQuiescer{inner: blockingQuiescer{}, entered: make(chan struct{}, 1)}
	srv, err := control.Listen(dir, q, control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := control.Dial(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-q.entered
		cancel()
	}()
	if _, err := c.Quiesce(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Quiesce with a cancelled context: %v", err)
	}
	// The server cancels its wait when the connection closes.
	for {
		q.mu.Lock()
		n := q.ctxEndedBefore
		q.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond) // a poll, not a bound
	}
	if st := srv.Status(); st.Quiesced || st.Quiesces != 0 {
		t.Fatalf("status: %+v", st)
	}
}

// raw is a bare protocol connection.
type raw struct {
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, dir string) *raw {
	t.Helper()
	c, err := net.Dial("unix", control.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &raw{c, bufio.NewReader(c)}
}

func (r *raw) cmd(t *testing.T, line string) string {
	t.Helper()
	if _, err := io.WriteString(r.c, line+"\n"); err != nil {
		t.Fatal(err)
	}
	ans, err := r.r.ReadString('\n')
	if err != nil {
		return "EOF"
	}
	return strings.TrimSpace(ans)
}

func TestProtocol(t *testing.T) {
	f := newFixture(t, "", control.Options{})
	r := dialRaw(t, f.dir)
	for _, step := range []struct{ send, want string }{
		{"RESUME", "ERR not paused"},
		{"HELO", "ERR unknown command"},
		{"status", `OK {"version":`},
		{"QUIESCE", "OK paused"},
		{"QUIESCE", "ERR already paused"},
		{"RESUME", "OK resumed "},
		{"RESUME", "ERR not paused"},
		{strings.Repeat("x", 1000), "EOF"}, // a line too long ends the connection
	} {
		if got := r.cmd(t, step.send); !strings.HasPrefix(got, step.want) {
			t.Fatalf("%.20s: got %q, want %q…", step.send, got, step.want)
		}
	}
	r = dialRaw(t, f.dir)
	if got := r.cmd(t, "QUIT"); got != "OK bye" {
		t.Fatalf("QUIT: %q", got)
	}
	if _, err := r.r.ReadString('\n'); err != io.EOF {
		t.Fatalf("after QUIT: %v", err)
	}
	if st := f.srv.Status(); st.Quiesces != 1 || st.Quiesced {
		t.Fatalf("status: %+v", st)
	}
}

// TestSocketFile: mode 0600, a second server on the same directory is
// refused, the socket is removed at Close, and a stale socket left by a
// server that died is replaced.
func TestSocketFile(t *testing.T) {
	f := newFixture(t, "", control.Options{})
	path := control.SocketPath(f.dir)
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode() != fs.ModeSocket|0o600 {
		t.Fatalf("socket: %v %v", fi.Mode(), err)
	}
	if _, err := control.Listen(f.dir, f.q, control.Options{}); !errors.Is(err, control.ErrRunning) {
		t.Fatalf("second server: %v", err)
	}
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket after Close: %v", err)
	}
	if _, err := control.Dial(t.Context(), f.dir); !errors.Is(err, control.ErrNotRunning) {
		t.Fatalf("Dial without server: %v", err)
	}

	// A server killed with SIGKILL leaves its socket file; nothing answers.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := control.Dial(t.Context(), f.dir); !errors.Is(err, control.ErrNotRunning) {
		t.Fatalf("Dial on a stale socket: %v", err)
	}
	// and perhaps the temporary directory of a bind it was killed in.
	if err := os.Mkdir(filepath.Join(f.dir, ".control-1234"), 0o700); err != nil {
		t.Fatal(err)
	}
	srv, err := control.Listen(f.dir, f.q, control.Options{})
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	defer srv.Close()
	if _, err := f.dial(t).Status(t.Context()); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(f.dir, ".control-*")); len(left) != 0 {
		t.Fatalf("temporary directories left: %q", left)
	}

	// A file that is not a socket is not replaced.
	other := t.TempDir()
	os.WriteFile(control.SocketPath(other), []byte("mine"), 0o600)
	if _, err := control.Listen(other, f.q, control.Options{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("over a regular file: %v", err)
	}
}

// TestLongDataDir: a data directory whose socket path does not fit in
// sun_path (108 bytes) still works.
func TestLongDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	f := newFixture(t, dir, control.Options{})
	if n := len(control.SocketPath(dir)); n < 120 {
		t.Fatalf("path only %d bytes", n)
	}
	resume, err := f.dial(t).Quiesce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	resume()
	if _, total := f.q.counts(); total != 1 {
		t.Fatalf("pauses: %d", total)
	}
}

// TestUnauthorizedPeer: another user cannot pause the server, neither
// through the file mode nor, when the file mode would let it in,
// through SO_PEERCRED.
func TestUnauthorizedPeer(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test needs root to run a client as another user")
		}
		t.Skip("needs root to run a client as another user")
	}
	base := t.TempDir()
	// User nobody must reach the binary and the data directory.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "data")
	f := newFixture(t, dir, control.Options{})
	os.Chmod(dir, 0o755)
	// The test binary, where user nobody can run it.
	bin := filepath.Join(base, "control.test")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func() string {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=dial "+dir)
		cmd.Dir = base
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		t.Logf("client as nobody: %s (%v)", strings.TrimSpace(string(out)), err)
		return fmt.Sprintf("%s (%v)", strings.TrimSpace(string(out)), err)
	}
	if out := asNobody(); !strings.Contains(out, "dial: control: connect to "+control.SocketPath(dir)+": ") || !strings.Contains(out, "permission denied") {
		t.Fatalf("nobody through a 0600 socket: %q", out)
	}
	if err := os.Chmod(control.SocketPath(dir), 0o666); err != nil {
		t.Fatal(err)
	}
	if out := asNobody(); !strings.Contains(out, `dial: control: STATUS: server answered "ERR permission denied"`) {
		t.Fatalf("nobody through a 0666 socket: %q", out)
	}
	recs := f.auditRecords(t, "control.connect")
	if len(recs) != 1 || recs[0].Success || !strings.Contains(recs[0].Detail, "uid=65534") {
		t.Fatalf("audit: %+v", recs)
	}
	if _, total := f.q.counts(); total != 0 {
		t.Fatalf("pauses granted: %d", total)
	}
}

func TestFind(t *testing.T) {
	base := t.TempDir()
	a := newFixture(t, filepath.Join(base, "a"), control.Options{})
	b := newFixture(t, filepath.Join(base, "b"), control.Options{})
	os.MkdirAll(filepath.Join(a.dir, "mail", "example.test"), 0o700)
	plain := t.TempDir()
	tests := []struct {
		name  string
		paths []string
		want  []string
	}{
		{"data dir", []string{a.dir}, []string{a.dir}},
		{"mail below", []string{filepath.Join(a.dir, "mail")}, []string{a.dir}},
		{"domain below, twice", []string{filepath.Join(a.dir, "mail", "example.test"), filepath.Join(a.dir, "mail")}, []string{a.dir}},
		{"two servers", []string{filepath.Join(b.dir, "mail"), a.dir}, []string{b.dir, a.dir}},
		{"no server", []string{plain}, nil},
		{"above the data dir", []string{base}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := control.Find(tt.paths)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("Find(%q) = %q, want %q", tt.paths, got, tt.want)
			}
		})
	}
}

// TestGroup pauses two servers together and resumes both.
func TestGroup(t *testing.T) {
	a := newFixture(t, "", control.Options{})
	b := newFixture(t, "", control.Options{})
	g := control.Group{a.dial(t), b.dial(t)}
	resume, err := g.Quiesce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !a.srv.Status().Quiesced || !b.srv.Status().Quiesced {
		t.Fatal("not both paused")
	}
	resume()
	if a.srv.Status().Quiesced || b.srv.Status().Quiesced || g.Err() != nil {
		t.Fatalf("after resume: %v", g.Err())
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}
