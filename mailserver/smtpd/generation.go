package smtpd

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/emersion/go-smtp"
)

// go-smtp reads Server.MaxMessageBytes (EHLO's SIZE, MAIL FROM's SIZE=,
// the DATA and BDAT limits) and Server.MaxRecipients (EHLO's LIMITS
// RCPTMAX, the RCPT limit) from its *smtp.Server in every session without
// synchronization, so they cannot change while it serves: setting them
// in place is a data race, and enforcing a higher limit than go-smtp's in
// our own DATA handler would leave EHLO announcing the old SIZE (RFC 1870
// section 4: clients do not send more than the announced size). Instead
// each listener hands its connections to a generation: a go-smtp server
// built with the limits in force when it started. A reload that changes
// either limit starts a new generation for every listener, which serves
// the connections accepted from then on; the old one stops accepting and
// its sessions finish under the limits they were told.

// generation is one go-smtp server of one listener.
type generation struct {
	srv      *smtp.Server
	ln       *chanListener
	maxBytes int64
	maxRcpts int
	served   chan struct{} // closed when srv.Serve has returned
	drained  chan struct{} // closed when its sessions have ended (retire)
}

// listener is one Serve call: the wrapped listener it accepts from and
// the generation new connections go to (under Server.mu).
type listener struct {
	mode Mode
	ln   net.Listener
	cur  *generation
}

// newGeneration starts a go-smtp server for mode with the limits l. The
// caller holds s.mu.
func (s *Server) newGeneration(mode Mode, addr net.Addr, l Limits) *generation {
	srv := smtp.NewServer(&backend{s: s, mode: mode})
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = l.MaxMessageBytes
	srv.MaxRecipients = l.MaxRecipients
	srv.MaxLineLength = s.cfg.MaxLineLength
	srv.ReadTimeout = s.cfg.ReadTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	// RFC 4954 section 4 / RFC 3207 section 4: no AUTH over cleartext.
	srv.AllowInsecureAuth = false
	srv.TLSConfig = s.cfg.TLSConfig
	srv.ErrorLog = slogAdapter{s.log.With("mode", mode.String())}
	g := &generation{
		srv: srv, ln: newChanListener(addr), maxBytes: l.MaxMessageBytes, maxRcpts: l.MaxRecipients,
		served: make(chan struct{}), drained: make(chan struct{}),
	}
	s.gens[g] = struct{}{}
	go func() {
		defer close(g.served)
		// It returns when g.ln is closed; its sessions go on.
		srv.Serve(g.ln)
	}()
	return g
}

// retire stops g from accepting and, once its sessions have ended,
// forgets it. The caller holds s.mu.
func (s *Server) retire(g *generation) {
	g.ln.Close()
	go func() {
		// After Serve has returned no session can start, so Shutdown's
		// wait for them does not race with a new one.
		<-g.served
		g.srv.Shutdown(context.Background())
		s.mu.Lock()
		delete(s.gens, g)
		s.mu.Unlock()
		close(g.drained)
	}()
}

// renew starts new generations when the limits go-smtp announces
// changed. The caller holds setMu.
func (s *Server) renew(l Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	for _, ls := range s.listeners {
		if ls.cur.maxBytes == l.MaxMessageBytes && ls.cur.maxRcpts == l.MaxRecipients {
			continue
		}
		old := ls.cur
		ls.cur = s.newGeneration(ls.mode, ls.ln.Addr(), l)
		s.retire(old)
	}
}

// dispatch accepts connections from ls.ln until it is closed and hands
// each to the listener's current generation.
func (s *Server) dispatch(ls *listener) error {
	for {
		// ls.ln, a ratelimit.Listener, waits out temporary errors itself.
		c, err := ls.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		for {
			s.mu.Lock()
			g, closing := ls.cur, s.closing
			s.mu.Unlock()
			if closing {
				c.Close()
				return nil
			}
			if g.ln.hand(c) {
				break
			}
			// g was retired between the two steps: the next one takes it.
		}
	}
}

// chanListener is the listener of one generation: connections arrive by
// hand, from dispatch.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// hand gives c to the Accept of l's server; false if l is closed first.
// The channel is unbuffered, so a connection is never left in a closed
// listener.
func (l *chanListener) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
