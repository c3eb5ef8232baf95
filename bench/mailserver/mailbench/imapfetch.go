package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// fetchKind is one FETCH the benchmark times over the whole mailbox.
type fetchKind struct {
	name    string
	options *imap.FetchOptions
	items   string // the same items on the wire, for -client raw
}

// fetchKinds: what a client downloading everything asks for, what a
// client listing a mailbox asks for (headers to show sender, subject and
// date), and the parsed ENVELOPE alternative.
var fetchKinds = []fetchKind{
	{"full", &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}, "(UID FLAGS BODY.PEEK[])"},
	{"header", &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}}, "(UID FLAGS BODY.PEEK[HEADER])"},
	{"envelope", &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, Envelope: true}, "(UID FLAGS RFC822.SIZE ENVELOPE)"},
}

type fetchResult struct {
	Kind          string    `json:"kind"`
	Messages      int       `json:"messages"`
	Bytes         int64     `json:"bytes"`
	Runs          []float64 `json:"runs_seconds"`
	MedianSeconds float64   `json:"median_seconds"`
	MsgsPerSecond float64   `json:"msgs_per_second"`
	MBPerSecond   float64   `json:"mb_per_second"`
}

type imapReport struct {
	Server        string        `json:"server"`
	Messages      uint32        `json:"messages"`
	SelectSeconds float64       `json:"first_select_seconds"`
	Fetches       []fetchResult `json:"fetches"`
	Procs         *procStats    `json:"procs,omitempty"`
}

// imapFetchCmd logs in once over implicit TLS (or STARTTLS), selects a
// mailbox and times each fetch kind -runs times, reading every literal to
// the end. With -pid it reads the server's process stats just before
// LOGOUT, while Dovecot's per-session imap process still lives.
func imapFetchCmd(fs *flag.FlagSet) func(context.Context) error {
	addr := fs.String("addr", "", "server address host:port")
	mode := fs.String("tls", "implicit", "implicit (IMAPS) or starttls")
	user := fs.String("user", "", "login name")
	passFile := fs.String("password-file", "", "file holding the password")
	mailbox := fs.String("mailbox", "INBOX", "mailbox to fetch")
	runs := fs.Int("runs", 3, "times to run each fetch (the median is reported)")
	expect := fs.Uint("expect", 0, "fail unless the mailbox holds exactly this many messages")
	pids := fs.String("pid", "", "comma-separated server root PIDs whose process stats to read before LOGOUT")
	name := fs.String("name", "", "server name for the report")
	client := fs.String("client", "raw", "raw: read the responses without decoding them (counting messages and literal bytes); imapclient: decode them with go-imap v2's client, whose ENVELOPE decoding is slower than either server's encoding")
	return func(ctx context.Context) error {
		if *addr == "" || *user == "" || *passFile == "" || *runs < 1 {
			return fmt.Errorf("-addr, -user, -password-file and a positive -runs are required")
		}
		pw, err := os.ReadFile(*passFile)
		if err != nil {
			return err
		}
		// Both servers use a self-signed certificate on loopback.
		tlsConfig := &tls.Config{InsecureSkipVerify: true}
		var f fetcher
		switch *client {
		case "raw":
			f, err = dialRaw(*addr, *mode, tlsConfig)
		case "imapclient":
			f, err = dialImapclient(*addr, *mode, tlsConfig)
		default:
			return fmt.Errorf("-client: want raw or imapclient, not %q", *client)
		}
		if err != nil {
			return fmt.Errorf("connect %s: %w", *addr, err)
		}
		defer f.Close()
		go func() { <-ctx.Done(); f.Close() }()
		if err := f.Login(*user, strings.TrimRight(string(pw), "\r\n")); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		rep := imapReport{Server: *name}
		start := time.Now()
		n, err := f.Select(*mailbox)
		if err != nil {
			return fmt.Errorf("select %s: %w", *mailbox, err)
		}
		rep.SelectSeconds = time.Since(start).Seconds()
		rep.Messages = n
		if *expect > 0 && uint(n) != *expect {
			return fmt.Errorf("%s holds %d messages, want %d", *mailbox, n, *expect)
		}
		if n == 0 {
			return fmt.Errorf("%s is empty", *mailbox)
		}
		for _, k := range fetchKinds {
			r := fetchResult{Kind: k.name}
			for i := 0; i < *runs; i++ {
				start := time.Now()
				msgs, bytes, err := f.Fetch(k)
				if err != nil {
					return fmt.Errorf("fetch %s: %w", k.name, err)
				}
				r.Runs = append(r.Runs, time.Since(start).Seconds())
				if msgs != int(n) {
					return fmt.Errorf("fetch %s: got %d messages of %d", k.name, msgs, n)
				}
				if i > 0 && bytes != r.Bytes {
					return fmt.Errorf("fetch %s: run %d read %d bytes, run 1 %d", k.name, i+1, bytes, r.Bytes)
				}
				r.Messages, r.Bytes = msgs, bytes
			}
			sorted := append([]float64(nil), r.Runs...)
			sort.Float64s(sorted)
			r.MedianSeconds = sorted[len(sorted)/2]
			r.MsgsPerSecond = float64(r.Messages) / r.MedianSeconds
			r.MBPerSecond = float64(r.Bytes) / 1e6 / r.MedianSeconds
			rep.Fetches = append(rep.Fetches, r)
		}
		if *pids != "" {
			roots, err := parsePIDs(*pids)
			if err != nil {
				return err
			}
			st, err := treeStats(roots)
			if err != nil {
				return err
			}
			rep.Procs = &st
		}
		if err := f.Logout(); err != nil {
			return fmt.Errorf("logout: %w", err)
		}
		return json.NewEncoder(os.Stdout).Encode(rep)
	}
}

// fetcher is one IMAP session as the benchmark drives it.
type fetcher interface {
	Login(user, password string) error
	Select(mailbox string) (messages uint32, err error)
	// Fetch runs one FETCH 1:* of kind and consumes every response as it
	// streams in, counting messages and literal bytes; nothing is kept,
	// so the client costs the same for both servers whatever the
	// mailbox size.
	Fetch(kind fetchKind) (msgs int, n int64, err error)
	Logout() error
	Close() error
}

// imapclientFetcher decodes every response with go-imap v2's client.
type imapclientFetcher struct{ c *imapclient.Client }

func dialImapclient(addr, mode string, cfg *tls.Config) (fetcher, error) {
	opts := &imapclient.Options{TLSConfig: cfg}
	var c *imapclient.Client
	var err error
	switch mode {
	case "implicit":
		c, err = imapclient.DialTLS(addr, opts)
	case "starttls":
		c, err = imapclient.DialStartTLS(addr, opts)
	default:
		return nil, fmt.Errorf("-tls: want implicit or starttls, not %q", mode)
	}
	if err != nil {
		return nil, err
	}
	return imapclientFetcher{c}, nil
}

func (f imapclientFetcher) Login(user, password string) error {
	return f.c.Login(user, password).Wait()
}
func (f imapclientFetcher) Logout() error { return f.c.Logout().Wait() }
func (f imapclientFetcher) Close() error  { return f.c.Close() }

func (f imapclientFetcher) Select(mailbox string) (uint32, error) {
	sel, err := f.c.Select(mailbox, nil).Wait()
	if err != nil {
		return 0, err
	}
	return sel.NumMessages, nil
}

func (f imapclientFetcher) Fetch(kind fetchKind) (msgs int, n int64, err error) {
	all := imap.SeqSetNum()
	all.AddRange(1, 0) // 1:*
	cmd := f.c.Fetch(all, kind.options)
	defer cmd.Close()
	for {
		m := cmd.Next()
		if m == nil {
			break
		}
		msgs++
		sawUID := false
		for {
			item := m.Next()
			if item == nil {
				break
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				sawUID = true
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					return msgs, n, fmt.Errorf("message %d: NIL body section", m.SeqNum)
				}
				k, err := io.Copy(io.Discard, it.Literal)
				if err != nil {
					return msgs, n, err
				}
				n += k
			case imapclient.FetchItemDataEnvelope:
				if it.Envelope == nil {
					return msgs, n, fmt.Errorf("message %d: NIL envelope", m.SeqNum)
				}
			}
		}
		if !sawUID {
			return msgs, n, fmt.Errorf("message %d: no UID in the response", m.SeqNum)
		}
	}
	return msgs, n, cmd.Close()
}

// rawFetcher speaks just enough IMAP (RFC 9051) for the benchmark and
// reads FETCH responses without decoding them: it frames each response
// (lines and their literals, section 4.3), checks that it is a FETCH with
// a UID, and counts literal bytes. go-imap v2's client spends about
// 28 µs decoding one ENVELOPE (readEnvelope, in a profile of
// mailserver/imapd's benchmark), more than either server spends
// producing it, so with it the ENVELOPE FETCH measured the client: both
// servers came out at the same rate.
type rawFetcher struct {
	conn net.Conn
	r    *bufio.Reader
	tag  int
}

func dialRaw(addr, mode string, cfg *tls.Config) (fetcher, error) {
	switch mode {
	case "implicit":
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		f := &rawFetcher{conn: c, r: bufio.NewReaderSize(c, 64<<10)}
		if _, err := f.line(); err != nil { // greeting
			c.Close()
			return nil, err
		}
		return f, nil
	case "starttls":
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		f := &rawFetcher{conn: c, r: bufio.NewReader(c)}
		if _, err := f.line(); err != nil {
			c.Close()
			return nil, err
		}
		if err := f.simple("STARTTLS"); err != nil {
			c.Close()
			return nil, err
		}
		tc := tls.Client(c, cfg)
		f.conn, f.r = tc, bufio.NewReaderSize(tc, 64<<10)
		return f, nil
	}
	return nil, fmt.Errorf("-tls: want implicit or starttls, not %q", mode)
}

func (f *rawFetcher) Close() error { return f.conn.Close() }

// line reads one line with its CRLF.
func (f *rawFetcher) line() ([]byte, error) {
	var out []byte
	for {
		b, err := f.r.ReadSlice('\n')
		out = append(out, b...)
		if err == bufio.ErrBufferFull {
			continue
		}
		return out, err
	}
}

// literalSize returns n if line ends with a literal's "{n}" or "{n+}"
// and CRLF, else -1.
func literalSize(line []byte) int64 {
	l := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(l) < 3 || l[len(l)-1] != '}' {
		return -1
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(string(l[i+1:len(l)-1]), "+"), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// command sends one tagged command and hands each untagged response (its
// lines without literals, and its literal bytes) to each, until the tagged
// response, which must be OK.
func (f *rawFetcher) command(cmd string, each func(text []byte, literal int64) error) error {
	f.tag++
	tag := "r" + strconv.Itoa(f.tag)
	if _, err := fmt.Fprintf(f.conn, "%s %s\r\n", tag, cmd); err != nil {
		return err
	}
	for {
		var text []byte
		var lit int64
		for {
			l, err := f.line()
			if err != nil {
				return err
			}
			text = append(text, l...)
			n := literalSize(l)
			if n < 0 {
				break
			}
			k, err := io.CopyN(io.Discard, f.r, n)
			lit += k
			if err != nil {
				return err
			}
		}
		if bytes.HasPrefix(text, []byte(tag+" ")) {
			if !bytes.HasPrefix(text, []byte(tag+" OK")) {
				return fmt.Errorf("%s: %s", strings.SplitN(cmd, " ", 2)[0], bytes.TrimSpace(text))
			}
			return nil
		}
		if each != nil && text[0] == '*' {
			if err := each(text, lit); err != nil {
				return err
			}
		}
	}
}

func (f *rawFetcher) simple(cmd string) error { return f.command(cmd, nil) }

// quoted is s as an IMAP quoted string (RFC 9051 section 4.3).
func quoted(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("CR or LF in a login name or password")
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`, nil
}

func (f *rawFetcher) Login(user, password string) error {
	u, err := quoted(user)
	if err != nil {
		return err
	}
	p, err := quoted(password)
	if err != nil {
		return err
	}
	return f.simple("LOGIN " + u + " " + p)
}

func (f *rawFetcher) Logout() error { return f.simple("LOGOUT") }

func (f *rawFetcher) Select(mailbox string) (uint32, error) {
	m, err := quoted(mailbox)
	if err != nil {
		return 0, err
	}
	var n uint64
	err = f.command("SELECT "+m, func(text []byte, _ int64) error {
		if f := strings.Fields(string(text)); len(f) == 3 && f[2] == "EXISTS" {
			n, err = strconv.ParseUint(f[1], 10, 32)
		}
		return err
	})
	return uint32(n), err
}

func (f *rawFetcher) Fetch(kind fetchKind) (msgs int, n int64, err error) {
	err = f.command("FETCH 1:* "+kind.items, func(text []byte, lit int64) error {
		// "* <seq> FETCH (...UID <uid>...)"
		fs := bytes.Fields(text)
		if len(fs) < 3 || !bytes.Equal(fs[2], []byte("FETCH")) {
			return nil // EXISTS, FLAGS and the like
		}
		msgs++
		if !bytes.Contains(text, []byte("UID ")) {
			return fmt.Errorf("message %s: no UID in the response", fs[1])
		}
		n += lit
		return nil
	})
	return msgs, n, err
}
