package mailserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/smtpd"
	"github.com/mailvault/mailvault/mailserver/store"
)

const childEnv = "MAILVAULT_TEST_CHILD_SERVER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		runChildServer(spec)
		return
	}
	os.Exit(m.Run())
}

// runChildServer serves MX on the given address (and implicit-TLS IMAP on
// a second one, if given) for the kill -9 tests and never returns: the
// parent kills it.
func runChildServer(spec string) {
	dataDir, addrs, _ := strings.Cut(spec, "|")
	addr, imaps, _ := strings.Cut(addrs, "|")
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Hostname = dataDir, "mx.test"
	cfg.Listen = Listen{SMTP: addr, IMAPS: imaps}
	cfg.SMTP.ConnsPerMinute, cfg.SMTP.MessagesPerMinute, cfg.SMTP.MaxConnsPerIP = 1e9, 1e9, 1000
	cfg.IMAP.ConnsPerMinute, cfg.IMAP.MaxConnsPerIP = 1e9, 1000
	ctx := context.Background()
	srv, err := New(ctx, cfg, Options{Resolver: &smtpd.StaticResolver{}, Auth: cheapHash})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if err := srv.Start(ctx); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}

type child struct {
	cmd *exec.Cmd
}

// startChild starts the server child process (MX on addr, IMAPS on
// imaps[0] if given); it may run outside the test goroutine, so it reports
// errors rather than failing the test.
func startChild(t *testing.T, dataDir, addr string, imaps ...string) (*child, error) {
	spec := dataDir + "|" + addr
	if len(imaps) > 0 {
		spec += "|" + imaps[0]
	}
	for {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+spec)
		// The child dies with the test process, even if the test panics.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) == "ready" {
			c := &child{cmd: cmd}
			t.Cleanup(c.kill)
			return c, nil
		}
		cmd.Wait()
		if !strings.Contains(line, "address already in use") {
			return nil, fmt.Errorf("child server: %q", line)
		}
		// The killed server's socket may linger a moment; try again.
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

// bobDataDir makes a data directory with the user bob@example.test.
func bobDataDir(t *testing.T) string {
	dataDir := t.TempDir()
	d, err := OpenData(dataDir, cheapHash)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Accounts.AddUser(t.Context(), "bob@example.test", "bob password", auth.RoleUser); err != nil {
		t.Fatal(err)
	}
	d.Close()
	return dataDir
}

// freeAddrs returns n loopback addresses nothing listens on now.
func freeAddrs(t *testing.T, n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	return addrs
}

// killer runs the child server and, from a goroutine of its own, kills it
// with SIGKILL and starts it again each time acked reaches the next count
// of killAt. If a restart fails, the test fails and stopped turns true,
// so that the clients give up instead of retrying forever.
type killer struct {
	t      *testing.T
	mu     sync.Mutex // guards srv
	srv    *child
	killed int // written by the kill goroutine, read after done
	want   int
	stop   atomic.Bool
	done   sync.WaitGroup
}

func startKiller(t *testing.T, dataDir string, acked *atomic.Int64, killAt []int64, addr string, imaps ...string) *killer {
	srv, err := startChild(t, dataDir, addr, imaps...)
	if err != nil {
		t.Fatal(err)
	}
	k := &killer{t: t, srv: srv, want: len(killAt)}
	k.done.Go(func() {
		for _, at := range killAt {
			for acked.Load() < at && !k.stop.Load() {
				time.Sleep(time.Millisecond)
			}
			k.mu.Lock()
			k.srv.kill()
			var err error
			k.srv, err = startChild(t, dataDir, addr, imaps...)
			k.mu.Unlock()
			if err != nil {
				t.Error(err)
				k.stop.Store(true)
				return
			}
			k.killed++
		}
	})
	return k
}

// stopped reports whether the server could not be started again.
func (k *killer) stopped() bool { return k.stop.Load() }

// finish waits for the kills, kills the last server and fails the test
// unless every kill happened.
func (k *killer) finish() {
	k.done.Wait()
	k.mu.Lock()
	k.srv.kill()
	k.mu.Unlock()
	if k.killed != k.want {
		k.t.Fatalf("server killed %d times, want %d", k.killed, k.want)
	}
}

// TestKill9Durability: 50 concurrent SMTP clients deliver 1,000 messages
// while the server is killed with SIGKILL and restarted twice; every
// message that got a 250 must be in the Maildir afterwards.
func TestKill9Durability(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	dataDir := bobDataDir(t)
	addr := freeAddrs(t, 1)[0]
	const clients, total = 50, 1000
	var next, acked atomic.Int64
	ackedIDs := make([]bool, total)
	k := startKiller(t, dataDir, &acked, []int64{300, 700}, addr)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range clients {
		wg.Go(func() {
			for {
				id := next.Add(1) - 1
				if id >= total {
					return
				}
				body := fmt.Sprintf("From: carol@remote.test\r\nSubject: durable-%d\r\n\r\nmessage %d\r\n", id, id)
				for {
					err := sendPlain(addr, "carol@remote.test", "bob@example.test", body)
					if err == nil {
						break
					}
					if k.stopped() {
						return
					}
					if failures.Add(1) < 5 || failures.Load()%1000 == 0 {
						t.Logf("send %d: %v", id, err)
					}
					time.Sleep(5 * time.Millisecond) // server down: retry
				}
				ackedIDs[id] = true
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	k.finish()
	t.Logf("%d send attempts failed while the server was down", failures.Load())

	st, err := store.Open(t.Context(), dataDir+"/mail", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.List(t.Context(), store.Account{Domain: ExampleDomain, User: "bob"}, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	present := make([]bool, total)
	for _, m := range l.Messages {
		b, err := os.ReadFile(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		var id int
		if i := strings.Index(string(b), "Subject: durable-"); i >= 0 {
			fmt.Sscanf(string(b[i:]), "Subject: durable-%d", &id)
			present[id] = true
		}
	}
	missing := 0
	for id := range total {
		if ackedIDs[id] && !present[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d acknowledged messages missing after kill -9", missing)
	}
	if int(acked.Load()) != total || len(l.Messages) < total {
		t.Fatalf("acked %d, stored %d", acked.Load(), len(l.Messages))
	}
}

// sendPlain sends one message over plain SMTP (MX, no STARTTLS).
func sendPlain(addr, from, to, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, []string{to}, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}
