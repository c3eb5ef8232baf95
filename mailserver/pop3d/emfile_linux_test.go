package pop3d

import (
	"bufio"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestAcceptSurvivesEMFILE runs the process out of file descriptors while
// a client connects: the server's accept fails with EMFILE, is logged and
// waited out, and once descriptors are free again the waiting client gets
// its greeting. Before ratelimit.Listener waited such errors out, pop3d's
// accept loop returned on them and the port stayed shut.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	e := newTestEnv(t, nil)
	// A port of its own, to see Serve return if it gives up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln, false) }()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	low := saved
	low.Cur = uint64(len(fds) + 32)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	// Take every descriptor left, then give one back for the client's
	// socket: the server's accept4 has none.
	var fill []*os.File
	defer func() {
		for _, f := range fill {
			f.Close()
		}
	}()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fill = append(fill, f)
	}
	if len(fill) == 0 {
		t.Fatal("no descriptor to take")
	}
	fill[len(fill)-1].Close()
	fill = fill[:len(fill)-1]
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial with one descriptor free: %v", err)
	}
	defer c.Close()
	for !strings.Contains(e.Logs(), "too many open files") {
		select {
		case err := <-served:
			t.Fatalf("Serve returned on running out of descriptors: %v", err)
		default:
			runtime.Gosched()
		}
	}
	for _, f := range fill {
		f.Close()
	}
	fill = nil
	restore()
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "+OK mx.test POP3 server ready") {
		t.Fatalf("greeting after the descriptors came back: %q, %v", greeting, err)
	}
}
