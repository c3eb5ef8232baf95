package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotRunning means no server answers on the data directory's control
// socket: there is none, or it was left by a server that is gone.
var ErrNotRunning = errors.New("control: no mailvault serve is running on this data directory")

// resumeTimeout bounds waiting for RESUME's answer; the server answers at
// once, and if it does not, closing the connection resumes too.
const resumeTimeout = 10 * time.Second

// Client is a connection to a running server's control socket. Its
// Quiesce makes it a snapshot.Quiescer.
type Client struct {
	dataDir string

	mu   sync.Mutex // one command at a time
	conn net.Conn
	r    *bufio.Reader
	err  error // of the last resume
}

// Dial connects to the server running on dataDir and checks, with
// STATUS, that it answers and lets us in. ErrNotRunning (wrapped) means
// no server runs there.
func Dial(ctx context.Context, dataDir string) (*Client, error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	name, release, err := sockName(SocketPath(dir))
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", name)
	release()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (%s)", ErrNotRunning, dir)
		}
		return nil, fmt.Errorf("control: connect to %s: %w", SocketPath(dir), err)
	}
	c := &Client{dataDir: dir, conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	if _, err := c.Status(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// DataDir is the server's data directory.
func (c *Client) DataDir() string { return c.dataDir }

// Close closes the connection; a pause it holds ends.
func (c *Client) Close() error { return c.conn.Close() }

// Status asks the server for its state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	ans, err := c.do(ctx, "STATUS")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(ans), &st); err != nil {
		return st, fmt.Errorf("control: STATUS answer %q: %w", ans, err)
	}
	return st, nil
}

// Unlock lifts the login lockout of an account name (ip false) or an IP
// address (ip true) in the running server, and returns what the server
// had counted for it.
func (c *Client) Unlock(ctx context.Context, key string, ip bool) (Lockout, error) {
	var res Lockout
	if key == "" || strings.ContainsAny(key, " \t\r\n") {
		return res, fmt.Errorf("control: UNLOCK: %q is not one word", key)
	}
	kind := "ACCOUNT"
	if ip {
		kind = "IP"
	}
	ans, err := c.do(ctx, "UNLOCK "+kind+" "+key)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal([]byte(ans), &res); err != nil {
		return res, fmt.Errorf("control: UNLOCK answer %q: %w", ans, err)
	}
	return res, nil
}

// Quiesce pauses the server's writers: it returns once no write is in
// flight there and new writes wait. resume lets them go on; if the pause
// had already ended (the server's maximum pause elapsed) or RESUME could
// not be confirmed, Err says so afterwards. If ctx ends first, the
// connection is closed, which ends the server's pause or its wait.
func (c *Client) Quiesce(ctx context.Context) (resume func(), err error) {
	if _, err := c.do(ctx, "QUIESCE"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.err = nil
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), resumeTimeout)
			defer cancel()
			_, err := c.do(ctx, "RESUME")
			if err != nil {
				// The server resumes when the connection closes.
				c.conn.Close()
			}
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
		})
	}, nil
}

// Err is the error of the last resume: non-nil means the writes may not
// have stayed paused until then, so a view taken in the pause may not
// show one instant.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// do sends one command and returns the text after "OK ". A failure
// other than an ERR answer closes the connection: the stream is out of
// step.
func (c *Client) do(ctx context.Context, cmd string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	// Cancelling ctx unblocks the read or write at once.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := c.roundTrip(cmd)
	if err != nil {
		c.conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", fmt.Errorf("control: %s: %w", cmd, err)
	}
	if rest, ok := strings.CutPrefix(line, "OK"); ok {
		return strings.TrimSpace(rest), nil
	}
	return "", fmt.Errorf("control: %s: server answered %q", cmd, line)
}

func (c *Client) roundTrip(cmd string) (string, error) {
	_, werr := fmt.Fprintf(c.conn, "%s\n", cmd)
	// A server that refuses the peer answers "ERR …" and closes at once,
	// possibly before the command arrives, so the write can fail with a
	// broken pipe although the answer is waiting: read it either way.
	line, err := c.r.ReadString('\n')
	switch {
	case err != nil && werr != nil:
		return "", werr
	case err != nil:
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// Group pauses the servers of several data directories together (a
// backup of paths in more than one), in order, resuming in reverse.
type Group []*Client

// Quiesce pauses every server; if one fails, those already paused resume.
func (g Group) Quiesce(ctx context.Context) (func(), error) {
	var resumes []func()
	resumeAll := func() {
		for i := len(resumes) - 1; i >= 0; i-- {
			resumes[i]()
		}
	}
	for _, c := range g {
		r, err := c.Quiesce(ctx)
		if err != nil {
			resumeAll()
			return nil, err
		}
		resumes = append(resumes, r)
	}
	return resumeAll, nil
}

// Err joins the members' Err.
func (g Group) Err() error {
	var errs []error
	for _, c := range g {
		errs = append(errs, c.Err())
	}
	return errors.Join(errs...)
}

// Close closes every member.
func (g Group) Close() error {
	var errs []error
	for _, c := range g {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
