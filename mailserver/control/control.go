// Package control is the running server's control socket: a unix-domain
// stream socket at <data>/control.sock through which `mailvault backup`
// and `mailvault snapshot take`, separate processes, pause the server's
// writers for the instant of a snapshot.
//
// The protocol is one command per line and one answer line per command,
// "OK ..." or "ERR ..." (in the manner of SMTP's or POP3's replies,
// RFC 5321 §4.2, RFC 1939 §3, with words instead of codes):
//
//	STATUS    OK {"version":…,"pid":…,"quiesced":false,"quiesces":3,…}   (Status as JSON)
//	QUIESCE   OK paused       once no write is in flight; new writes wait
//	RESUME    OK resumed 12.3ms, or ERR when the pause had already ended
//	          (maximum pause elapsed): the view may not show one instant
//	UNLOCK ACCOUNT name   OK {"key":"alice@example.test","failures":5,"locked_until":…}
//	UNLOCK IP address     OK {"key":"192.0.2.7","failures":20,…}   (IPv6: the /64)
//	          forget the failed logins counted for a name or an IP and
//	          lift its lockout; the answer is what was counted (failures
//	          0: nothing was). Audited as "user.unlock" / "ip.unlock".
//	QUIT      OK bye, then the server closes the connection
//
// Lockouts are kept in the server's memory only (a failed login must not
// cost a disk write, and the counts may be lost at a restart: a restart
// lifts them all), so lifting one is a command to the running server —
// this socket, which only the server's user and root reach — rather than
// a change to a file the server would have to re-read at every login.
//
// A pause holds until RESUME, until the connection closes (a backup that
// crashed or was killed never leaves the server paused: the kernel closes
// its socket), until the server's maximum pause elapses, or until the
// server shuts down. Each pause is logged and recorded in the audit log
// once writes have resumed.
//
// Authorization: the socket file is mode 0600 in the data directory, so
// only its owner (and root) can connect (unix(7): connecting needs write
// permission on the socket file); on top of that each connection's peer
// credentials (SO_PEERCRED, unix(7)) must be the server's own uid or
// root, or the connection is refused, logged and audited.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailvault/mailvault/mailserver/audit"
)

// DefaultMaxPause bounds a pause when Options.MaxPause is zero: far longer
// than a snapshot takes (milliseconds), short enough that a hung backup
// does not hold mail up for long.
const DefaultMaxPause = 30 * time.Second

// maxLine bounds a command line: UNLOCK ACCOUNT and an address of up to
// 254 bytes (RFC 5321's path limit) is the longest.
const maxLine = 512

// writeTimeout bounds writing an answer to a client that does not read.
const writeTimeout = 5 * time.Second

// Quiescer pauses the server's writers; mailserver/store.Store is one.
type Quiescer interface {
	Quiesce(ctx context.Context) (resume func(), err error)
}

// Options tune a Server.
type Options struct {
	// MaxPause ends a pause that RESUME has not ended; DefaultMaxPause if 0.
	MaxPause time.Duration
	Logger   *slog.Logger
	// Audit records pauses and refused connections; nothing if nil.
	Audit audit.Recorder
	// Unlock lifts the login lockout of an account name (ip false) or of
	// an IP address (ip true) and returns what had been counted; nil
	// answers UNLOCK with ERR.
	Unlock func(key string, ip bool) (Lockout, error)
}

// Lockout is the answer to UNLOCK: what the server had counted for the
// name or IP (its auth.Limiter's auth.Lockout).
type Lockout struct {
	// Key is the account name as counted (lower case), or the IP (IPv6:
	// its /64).
	Key      string `json:"key"`
	Failures int    `json:"failures"`
	// LockedUntil is when the lockout would have ended; zero when the
	// key was not locked out.
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

// Status is the answer to STATUS.
type Status struct {
	Version string `json:"version"`
	PID     int    `json:"pid"`
	DataDir string `json:"data_dir"`
	// Quiesced says whether writes are paused now; Pauses is how many
	// clients hold a pause.
	Quiesced bool `json:"quiesced"`
	Pauses   int  `json:"pauses"`
	// Quiesces counts the pauses granted since the server started;
	// Expired those ended by MaxPause, Abandoned those ended because
	// the client went away without RESUME.
	Quiesces  uint64 `json:"quiesces"`
	Expired   uint64 `json:"expired"`
	Abandoned uint64 `json:"abandoned"`
	// MaxPause is the server's bound on a pause.
	MaxPause time.Duration `json:"max_pause_ns"`
	// LastPausedAt is when the latest pause took hold: no write was in
	// flight from then on. LastPause is how long, once it ended, new
	// writes were held up: from QUIESCE (writes in flight finish, new
	// ones wait) to the resume.
	LastPausedAt time.Time     `json:"last_paused_at,omitzero"`
	LastPause    time.Duration `json:"last_pause_ns"`
}

// Server answers on a data directory's control socket.
type Server struct {
	dir, path string
	q         Quiescer
	log       *slog.Logger
	audit     audit.Recorder
	ln        *net.UnixListener
	ino       uint64 // the socket file's inode, to remove only our own
	uid       int
	maxPause  atomic.Int64
	version   string
	unlock    func(key string, ip bool) (Lockout, error)

	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu           sync.Mutex
	conns        map[*net.UnixConn]struct{}
	closed       bool
	pauses       int
	quiesces     uint64
	expired      uint64
	abandoned    uint64
	lastPausedAt time.Time
	lastPause    time.Duration
}

// ErrRunning means another server answers on the data directory's socket.
var ErrRunning = errors.New("control: another mailvault serve is running on this data directory")

// Listen creates the control socket of dataDir and serves it until Close.
// A socket file left by a server that is gone (nothing answers on it) is
// replaced; one on which a server answers is ErrRunning.
func Listen(dataDir string, q Quiescer, opts Options) (*Server, error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rec := opts.Audit
	if rec == nil {
		rec = audit.Discard{}
	}
	s := &Server{
		dir: dir, path: SocketPath(dir), q: q, log: log, audit: rec,
		uid: os.Geteuid(), version: version(), unlock: opts.Unlock,
		done: make(chan struct{}), conns: map[*net.UnixConn]struct{}{},
	}
	s.SetMaxPause(opts.MaxPause)
	if s.ln, err = s.bind(); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.accept()
	log.Info("control socket listening", "path", s.path)
	return s, nil
}

// bind creates the socket in a private temporary directory, sets its mode
// and renames it into place: no other user can connect in the instant
// between bind (which applies the umask) and chmod, and a stale socket is
// replaced atomically.
func (s *Server) bind() (*net.UnixListener, error) {
	if _, err := os.Lstat(s.path); err == nil {
		if c, err := s.dialExisting(); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w (%s)", ErrRunning, s.path)
		}
		if !isSocket(s.path) {
			return nil, fmt.Errorf("control: %s exists and is not a socket", s.path)
		}
		s.log.Info("replacing the control socket of a server that is gone", "path", s.path)
	}
	// Temporary directories of a server killed while binding.
	if old, err := filepath.Glob(filepath.Join(s.dir, ".control-*")); err == nil {
		for _, d := range old {
			os.RemoveAll(d)
		}
	}
	tmp, err := os.MkdirTemp(s.dir, ".control-")
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	name, release, err := sockName(tmpPath)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	release()
	if err != nil {
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	// Close removes s.path itself, not the temporary name.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	fi, err := os.Lstat(tmpPath)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	if err := os.Rename(tmpPath, s.path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return ln, nil
}

func (s *Server) dialExisting() (net.Conn, error) {
	name, release, err := sockName(s.path)
	if err != nil {
		return nil, err
	}
	defer release()
	return net.DialTimeout("unix", name, time.Second)
}

// SetMaxPause changes the bound on pauses that begin from now on (a
// configuration reload); DefaultMaxPause if d <= 0.
func (s *Server) SetMaxPause(d time.Duration) {
	if d <= 0 {
		d = DefaultMaxPause
	}
	s.maxPause.Store(int64(d))
}

// Status reports the server's state.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{
		Version: s.version, PID: os.Getpid(), DataDir: s.dir,
		Quiesced: s.pauses > 0, Pauses: s.pauses,
		Quiesces: s.quiesces, Expired: s.expired, Abandoned: s.abandoned,
		MaxPause:     time.Duration(s.maxPause.Load()),
		LastPausedAt: s.lastPausedAt, LastPause: s.lastPause,
	}
}

// Close stops accepting, ends every connection (resuming the writes they
// paused) and removes the socket file. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	// Only remove the socket if it is still ours: a server started on
	// the same directory after this one was wrongly considered gone
	// would own it.
	if fi, e := os.Lstat(s.path); e == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == s.ino {
			os.Remove(s.path)
		}
	}
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// Out of file descriptors or the like: try again later,
			// as net/http's Serve does, rather than stop answering.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("control socket: accept; retrying", "err", err, "in", backoff)
			select {
			case <-s.done:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// peer is who is on the other end of a connection (SO_PEERCRED).
type peer struct {
	pid, uid int
}

func (p peer) String() string { return fmt.Sprintf("uid=%d pid=%d", p.uid, p.pid) }

func peerOf(c *net.UnixConn) (peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return peer{}, err
	}
	if credErr != nil {
		return peer{}, credErr
	}
	return peer{pid: int(cred.Pid), uid: int(cred.Uid)}, nil
}

// session is one connection's state.
type session struct {
	s      *Server
	c      *net.UnixConn
	peer   peer
	resume func()    // non-nil while this connection holds a pause
	at     time.Time // when QUIESCE came: new writes wait from then on
	timer  *time.Timer
	// expired is set when MaxPause ended the pause: the next RESUME
	// answers ERR.
	expired time.Duration
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	p, err := peerOf(c)
	if err == nil && p.uid != s.uid && p.uid != 0 {
		err = fmt.Errorf("%s is neither the server's user (uid %d) nor root", p, s.uid)
	}
	if err != nil {
		s.log.Warn("control socket: connection refused", "peer", p, "err", err)
		s.record(audit.Event{Action: "control.connect", Detail: "refused " + p.String() + ": " + err.Error()}, false)
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		fmt.Fprintf(c, "ERR permission denied\n")
		return
	}
	ss := &session{s: s, c: c, peer: p}
	lines := make(chan string)
	go readLines(c, lines, s.done)
	defer func() {
		if ss.resume != nil {
			reason := "client went away without RESUME"
			select {
			case <-s.done:
				reason = "server shutting down"
			default:
			}
			ss.end(reason, false, &s.abandoned)
		}
	}()
	for {
		var expire <-chan time.Time
		if ss.timer != nil {
			expire = ss.timer.C
		}
		select {
		case <-s.done:
			return
		case <-expire:
			ss.timer = nil
			ss.expired = ss.end(fmt.Sprintf("maximum pause %v elapsed before RESUME", time.Duration(s.maxPause.Load())), false, &s.expired)
		case line, ok := <-lines:
			if !ok {
				return
			}
			if !ss.command(line, lines) {
				return
			}
		}
	}
}

// readLines sends each line read from c to lines until EOF, an error or
// a line too long; then it closes lines.
func readLines(c *net.UnixConn, lines chan<- string, done <-chan struct{}) {
	defer close(lines)
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, maxLine), maxLine)
	for sc.Scan() {
		select {
		case lines <- sc.Text():
		case <-done:
			return
		}
	}
}

func (ss *session) reply(format string, args ...any) bool {
	ss.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := fmt.Fprintf(ss.c, format+"\n", args...)
	return err == nil
}

// command runs one command line; false ends the connection.
func (ss *session) command(line string, lines <-chan string) bool {
	s := ss.s
	if f := strings.Fields(line); len(f) > 0 && strings.EqualFold(f[0], "UNLOCK") {
		return ss.unlock(f[1:])
	}
	switch strings.ToUpper(strings.TrimSpace(line)) {
	case "STATUS":
		b, err := json.Marshal(s.Status())
		if err != nil {
			return ss.reply("ERR %v", err)
		}
		return ss.reply("OK %s", b)
	case "QUIESCE":
		if ss.resume != nil {
			return ss.reply("ERR already paused by this connection")
		}
		ss.expired = 0
		return ss.quiesce(lines)
	case "RESUME":
		switch {
		case ss.resume != nil:
			d := ss.end("RESUME", true, nil)
			return ss.reply("OK resumed %v", d)
		case ss.expired > 0:
			d := ss.expired
			ss.expired = 0
			return ss.reply("ERR the pause had already ended: maximum pause %v elapsed (writes resumed after %v)", time.Duration(s.maxPause.Load()), d)
		}
		return ss.reply("ERR not paused")
	case "QUIT":
		ss.reply("OK bye")
		return false
	}
	return ss.reply("ERR unknown command (STATUS, QUIESCE, RESUME, UNLOCK, QUIT)")
}

// unlock answers UNLOCK ACCOUNT name and UNLOCK IP address.
func (ss *session) unlock(args []string) bool {
	s := ss.s
	if len(args) != 2 || !(strings.EqualFold(args[0], "ACCOUNT") || strings.EqualFold(args[0], "IP")) {
		return ss.reply("ERR usage: UNLOCK ACCOUNT name, or UNLOCK IP address")
	}
	if s.unlock == nil {
		return ss.reply("ERR this server has no login lockouts")
	}
	ip := strings.EqualFold(args[0], "IP")
	res, err := s.unlock(args[1], ip)
	action, detail := "user.unlock", "by "+ss.peer.String()+actor(ss.peer.uid)
	if ip {
		action = "ip.unlock"
	}
	if err == nil {
		detail += fmt.Sprintf(": %d failed logins forgotten", res.Failures)
		if !res.LockedUntil.IsZero() {
			detail += ", lockout until " + res.LockedUntil.UTC().Format(time.RFC3339) + " lifted"
		}
	} else {
		detail += ": " + err.Error()
	}
	ev := audit.Event{Action: action, Detail: detail, User: res.Key}
	if ip {
		ev.User, ev.IP = "", res.Key
	}
	s.record(ev, err == nil)
	if err != nil {
		return ss.reply("ERR %v", err)
	}
	s.log.Info("control socket: login lockout lifted", "key", res.Key, "ip", ip, "failures", res.Failures, "locked_until", res.LockedUntil, "peer", ss.peer)
	b, err := json.Marshal(res)
	if err != nil {
		return ss.reply("ERR %v", err)
	}
	return ss.reply("OK %s", b)
}

// actor names the os user of uid, for the audit log (as the admin
// commands' "by os user NAME").
func actor(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return " (os user " + u.Username + ")"
	}
	return ""
}

// quiesce pauses the writers and answers OK, or ERR. While the store
// waits for writes in flight, the client going away or sending anything
// abandons the request.
func (ss *session) quiesce(lines <-chan string) bool {
	s := ss.s
	asked := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		resume func()
		err    error
	}
	res := make(chan result, 1)
	go func() {
		r, err := s.q.Quiesce(ctx)
		res <- result{r, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-s.done:
		cancel()
		if r = <-res; r.err == nil {
			r.resume()
		}
		return false
	case _, ok := <-lines:
		cancel()
		if r = <-res; r.err == nil {
			r.resume()
		}
		if !ok {
			return false
		}
		return ss.reply("ERR command sent before QUIESCE was answered; not paused")
	}
	if r.err != nil {
		s.log.Error("control socket: quiesce failed", "peer", ss.peer, "err", r.err)
		return ss.reply("ERR quiesce: %v", r.err)
	}
	ss.resume, ss.at = r.resume, asked
	max := time.Duration(s.maxPause.Load())
	ss.timer = time.NewTimer(max)
	s.mu.Lock()
	s.pauses++
	s.quiesces++
	s.lastPausedAt = time.Now()
	s.mu.Unlock()
	s.log.Debug("control socket: writes paused", "peer", ss.peer, "max_pause", max)
	if !ss.reply("OK paused") {
		ss.end("could not answer the client", false, &s.abandoned)
		return false
	}
	return true
}

// end resumes the writes this connection paused and returns how long
// they were paused. counter (if not nil) is the Status counter to bump.
func (ss *session) end(how string, ok bool, counter *uint64) time.Duration {
	s := ss.s
	ss.resume()
	d := time.Since(ss.at)
	ss.resume = nil
	if ss.timer != nil {
		ss.timer.Stop()
		ss.timer = nil
	}
	if ok {
		s.log.Info("control socket: writes paused for a snapshot", "pause", d, "peer", ss.peer)
	} else {
		s.log.Warn("control socket: pause ended without RESUME; writes resumed", "reason", how, "pause", d, "peer", ss.peer)
	}
	// The audit record first, then the counters: whoever sees a pause
	// counted in STATUS finds it in the audit log too.
	s.record(audit.Event{Action: "store.quiesce", Detail: fmt.Sprintf("writes paused for %v by %s; resumed: %s", d, ss.peer, how)}, ok)
	s.mu.Lock()
	s.pauses--
	s.lastPause = d
	if counter != nil {
		*counter++
	}
	s.mu.Unlock()
	return d
}

func (s *Server) record(ev audit.Event, ok bool) {
	ev.Kind, ev.Protocol, ev.Success = audit.KindAdmin, "control", ok
	if err := s.audit.Record(context.Background(), ev); err != nil {
		s.log.Error("control socket: audit", "err", err)
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
