// Package s3test runs a MinIO server for tests of the S3 backend and of
// the commands that use it.
//
// The binary is found through MAILVAULT_MINIO, the cache that
// scripts/minio.sh builds into (${MAILVAULT_CACHE:-$HOME/.cache/mailvault}/bin/minio)
// or PATH. Without one, tests are skipped — except in CI (CI=true), where
// they fail.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The root credentials of every test server.
const (
	User     = "mailvault-test"
	Password = "mailvault-test-secret"
)

// Binary returns the path of the MinIO binary, or "" if there is none.
func Binary() string {
	if p := os.Getenv("MAILVAULT_MINIO"); p != "" {
		return p
	}
	cache := os.Getenv("MAILVAULT_CACHE")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "mailvault")
		}
	}
	if cache != "" {
		if p := filepath.Join(cache, "bin", "minio"); isExec(p) {
			return p
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Missing is the message for tests that find no binary.
const Missing = "no MinIO binary (set MAILVAULT_MINIO or run scripts/minio.sh)"

// SkipOrFail skips the test for want of a MinIO binary, or fails it in CI.
func SkipOrFail(t testing.TB) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(Missing)
	}
	t.Skip(Missing)
}

// Server is a running MinIO server.
type Server struct {
	Addr string // host:port of the S3 API
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// StartT starts a server for one test, stopped when the test ends.
func StartT(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		SkipOrFail(t)
	}
	srv, err := Start(t.Context(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// Start starts MinIO on free loopback ports with a fresh data directory
// and waits until it serves requests. A port taken between choosing and
// binding it makes MinIO exit; that is tried again. The server is killed
// when the calling process dies, so tests never leave one behind.
func Start(ctx context.Context, bin string) (*Server, error) {
	var err error
	for range 3 {
		var srv *Server
		if srv, err = startOnce(ctx, bin); err == nil {
			return srv, nil
		}
	}
	return nil, err
}

func startOnce(ctx context.Context, bin string) (*Server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mailvault-minio-*")
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "minio.log")
	log, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer log.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cmd := exec.Command(bin, "server", "--quiet",
		"--address", addr,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+User,
		"MINIO_ROOT_PASSWORD="+Password,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	srv := &Server{Addr: addr, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(srv.done) }()

	// Poll until it serves an authenticated S3 request (its health
	// endpoint answers before the object layer is initialized) or exits;
	// the test binary's -timeout bounds a server that never comes up.
	client, err := minio.New(addr, &minio.Options{
		Creds:      credentials.NewStaticV4(User, Password, ""),
		MaxRetries: 1,
	})
	if err != nil {
		srv.Stop()
		return nil, err
	}
	for {
		select {
		case <-srv.done:
			out, _ := os.ReadFile(logPath)
			os.RemoveAll(dir)
			return nil, fmt.Errorf("minio exited: %s", out)
		case <-ctx.Done():
			srv.Stop()
			return nil, ctx.Err()
		default:
		}
		if _, err := client.ListBuckets(ctx); err == nil {
			return srv, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server and removes its data.
func (s *Server) Stop() {
	s.cmd.Process.Kill()
	<-s.done
	os.RemoveAll(s.dir)
}

// NewBucketName returns a fresh random bucket name.
func NewBucketName() string {
	var rnd [6]byte
	rand.Read(rnd[:])
	return "mv-" + hex.EncodeToString(rnd[:])
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
