package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// fetchKind is one FETCH the benchmark times over the whole mailbox.
type fetchKind struct {
	name    string
	options *imap.FetchOptions
}

// fetchKinds: what a client downloading everything asks for, what a
// client listing a mailbox asks for (headers to show sender, subject and
// date), and the parsed ENVELOPE alternative.
var fetchKinds = []fetchKind{
	{"full", &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}},
	{"header", &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}}},
	{"envelope", &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, Envelope: true}},
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
	return func(ctx context.Context) error {
		if *addr == "" || *user == "" || *passFile == "" || *runs < 1 {
			return fmt.Errorf("-addr, -user, -password-file and a positive -runs are required")
		}
		pw, err := os.ReadFile(*passFile)
		if err != nil {
			return err
		}
		// Both servers use a self-signed certificate on loopback.
		opts := &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}}
		var c *imapclient.Client
		switch *mode {
		case "implicit":
			c, err = imapclient.DialTLS(*addr, opts)
		case "starttls":
			c, err = imapclient.DialStartTLS(*addr, opts)
		default:
			return fmt.Errorf("-tls: want implicit or starttls, not %q", *mode)
		}
		if err != nil {
			return fmt.Errorf("connect %s: %w", *addr, err)
		}
		defer c.Close()
		go func() { <-ctx.Done(); c.Close() }()
		if err := c.Login(*user, strings.TrimRight(string(pw), "\r\n")).Wait(); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		rep := imapReport{Server: *name}
		start := time.Now()
		sel, err := c.Select(*mailbox, nil).Wait()
		if err != nil {
			return fmt.Errorf("select %s: %w", *mailbox, err)
		}
		rep.SelectSeconds = time.Since(start).Seconds()
		rep.Messages = sel.NumMessages
		if *expect > 0 && uint(sel.NumMessages) != *expect {
			return fmt.Errorf("%s holds %d messages, want %d", *mailbox, sel.NumMessages, *expect)
		}
		if sel.NumMessages == 0 {
			return fmt.Errorf("%s is empty", *mailbox)
		}
		all := imap.SeqSetNum()
		all.AddRange(1, 0) // 1:*
		for _, k := range fetchKinds {
			r := fetchResult{Kind: k.name}
			for i := 0; i < *runs; i++ {
				start := time.Now()
				msgs, bytes, err := fetchAll(c, all, k.options)
				if err != nil {
					return fmt.Errorf("fetch %s: %w", k.name, err)
				}
				r.Runs = append(r.Runs, time.Since(start).Seconds())
				if msgs != int(sel.NumMessages) {
					return fmt.Errorf("fetch %s: got %d messages of %d", k.name, msgs, sel.NumMessages)
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
		if err := c.Logout().Wait(); err != nil {
			return fmt.Errorf("logout: %w", err)
		}
		return json.NewEncoder(os.Stdout).Encode(rep)
	}
}

// fetchAll runs one FETCH and consumes every response as it streams in,
// counting messages and literal bytes; nothing is kept in memory, so the
// client costs the same for both servers whatever the mailbox size.
func fetchAll(c *imapclient.Client, set imap.SeqSet, opts *imap.FetchOptions) (msgs int, n int64, err error) {
	cmd := c.Fetch(set, opts)
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
