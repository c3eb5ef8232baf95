package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures Generate.
type Options struct {
	// Messages is the number of message files to write.
	Messages int
	// Seed selects the tree: the same seed and Messages give the same names,
	// bytes and mtimes, whatever Workers is.
	Seed uint64
	// HeadersOnly writes header blocks with an empty body (about 600 bytes a
	// message instead of 1–4 KB), for runs of ten million messages where
	// the repositories, not the file count, would fill the disk.
	HeadersOnly bool
	// End is the newest delivery time; mail is spread over the year before
	// it. A fixed date rather than the clock, so that a seed names a tree.
	End time.Time
	// Workers is the number of goroutines writing users (default 2 × cores:
	// file creation is mostly waiting in the kernel).
	Workers int
}

// Folder layout of every user: the Maildir root is INBOX, the others are
// Maildir++ subfolders. Archive.2024 is the nested one ("Archive/2024" in a
// client).
var folders = []struct {
	name  string // Maildir++ name, "" for INBOX
	share int    // per mille of a user's messages
}{
	{"", 450},
	{"Sent", 200},
	{"Archive", 200},
	{"Archive.2024", 150},
}

// MessagesPerUser is the mailbox size the issue asks for: N/1000 users.
const MessagesPerUser = 1000

// UsersPerDomain keeps domain directories at a realistic width.
const UsersPerDomain = 100

// Probe is the message the benchmark restores on its own: the first
// message in the nested folder of the middle user. The script needs its
// Message-ID (for mailvault) and its path (for restic).
type Probe struct {
	MessageID string `json:"message_id"`
	Path      string `json:"path"` // relative to the tree's root
	Flags     string `json:"flags"`
}

// Stats is what Generate wrote.
type Stats struct {
	Messages     int     `json:"messages"`
	Users        int     `json:"users"`
	Domains      int     `json:"domains"`
	Folders      int     `json:"folders"`
	InNew        int     `json:"in_new"`
	SharedBodies int     `json:"shared_body_messages"`
	OddNames     int     `json:"odd_names"`
	Bytes        int64   `json:"bytes"`
	Seconds      float64 `json:"seconds"`
	Probe        Probe   `json:"probe"`
}

func (s *Stats) add(o *Stats) {
	s.Messages += o.Messages
	s.Folders += o.Folders
	s.InNew += o.InNew
	s.SharedBodies += o.SharedBodies
	s.OddNames += o.OddNames
	s.Bytes += o.Bytes
}

// userAt names user i: its domain directory and user directory.
func userAt(i int) (domain, user string) {
	return fmt.Sprintf("d%03d.scale.test", i/UsersPerDomain), fmt.Sprintf("u%05d", i)
}

// Generate writes the tree under root, which must not exist or be empty.
func Generate(root string, o Options) (*Stats, error) {
	start := time.Now()
	if o.Messages <= 0 {
		return nil, fmt.Errorf("messages must be positive, got %d", o.Messages)
	}
	if o.End.IsZero() {
		o.End = defaultEnd
	}
	if o.Workers <= 0 {
		o.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	users := (o.Messages + MessagesPerUser - 1) / MessagesPerUser
	text := newText(o.Seed)
	shared := sharedBodies(o.Seed, text)

	total := &Stats{Users: users, Domains: (users + UsersPerDomain - 1) / UsersPerDomain}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan int)
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := &userGen{o: o, root: root, text: text, shared: shared, users: users}
			for u := range next {
				// Remainder messages go to the first users, so counts add
				// up to exactly o.Messages.
				n := o.Messages / users
				if u < o.Messages%users {
					n++
				}
				st, err := g.writeUser(u, n)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if st != nil {
					total.add(st)
					if u == users/2 {
						total.Probe = st.Probe
					}
				}
				mu.Unlock()
			}
		}()
	}
	for u := range users {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- u
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	total.Seconds = time.Since(start).Seconds()
	return total, nil
}

// defaultEnd is the newest delivery time unless Options.End says otherwise.
var defaultEnd = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// userGen writes the mailboxes of users, one at a time; each worker has
// its own.
type userGen struct {
	o      Options
	root   string
	text   []byte
	shared [][]byte
	users  int
	// recent puts every message in the last two days: new deliveries of
	// a mutation.
	recent bool
	buf    bytes.Buffer
}

// rngFor gives every user (and every mutation) its own stream, so the
// output does not depend on which worker writes which user.
func rngFor(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream^0x9e3779b97f4a7c15))
}

func (g *userGen) writeUser(u, n int) (*Stats, error) {
	r := rngFor(g.o.Seed, uint64(u))
	domain, user := userAt(u)
	mdir := filepath.Join(g.root, domain, user, "Maildir")
	st := &Stats{Folders: len(folders)}
	dirs := make([]string, len(folders))
	for i, f := range folders {
		d := mdir
		if f.name != "" {
			d = filepath.Join(mdir, "."+f.name)
		}
		dirs[i] = d
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
				return nil, err
			}
		}
		if f.name != "" {
			// Courier and Dovecot mark subfolders with an empty file.
			mf := filepath.Join(d, "maildirfolder")
			if err := os.WriteFile(mf, nil, 0o600); err != nil {
				return nil, err
			}
			if err := os.Chtimes(mf, g.o.End, g.o.End); err != nil {
				return nil, err
			}
		}
	}
	probeSet := false
	for q := range n {
		fi := pickFolder(r)
		m := g.message(r, u, q, fi, domain, user)
		sub := "cur"
		name := m.unique + ":2," + m.flags
		if m.inNew {
			sub, name = "new", m.unique
			st.InNew++
		}
		p := filepath.Join(dirs[fi], sub, name)
		if err := os.WriteFile(p, m.data, 0o600); err != nil {
			return nil, err
		}
		if err := os.Chtimes(p, m.date, m.date); err != nil {
			return nil, err
		}
		st.Messages++
		st.Bytes += int64(len(m.data))
		if m.shared {
			st.SharedBodies++
		}
		if m.odd {
			st.OddNames++
		}
		if !probeSet && folders[fi].name == "Archive.2024" && !m.inNew && !m.odd {
			rel, _ := filepath.Rel(g.root, p)
			st.Probe = Probe{MessageID: m.id, Path: rel, Flags: m.flags}
			probeSet = true
		}
	}
	return st, nil
}

func pickFolder(r *rand.Rand) int {
	x := r.IntN(1000)
	for i, f := range folders {
		if x < f.share {
			return i
		}
		x -= f.share
	}
	return 0
}

type message struct {
	unique, flags, id string
	date              time.Time
	data              []byte
	inNew, shared     bool
	odd               bool
}

// Flags of messages in cur/, with a rough real-world skew: most mail read,
// some answered or flagged, a little unread.
var curFlags = []string{"S", "S", "S", "S", "S", "S", "RS", "RS", "FS", "", "FRS", "S"}

// oddHosts replace the host part of a Maildir name in about one message
// in 2,000: bytes that are not UTF-8 (Latin-1, a lone 0xff), a space with a
// quote, a backslash. Real servers get such names from clients and old
// migrations; a backup must store them exactly.
var oddHosts = []string{"mx-\xe9t\xe9", "mx-\xff\xfe", "mx one's", `mx\two`}

// message builds message q of user u in folder fi. Every draw from r
// happens in a fixed order, so the same seed gives the same message.
func (g *userGen) message(r *rand.Rand, u, q, fi int, domain, user string) *message {
	m := &message{}
	self := user + "@" + domain
	folder := folders[fi].name
	// Delivery time: uniform over the year before End; the newest INBOX
	// messages (last two days) are sometimes still unread in new/.
	age := time.Duration(r.Int64N(int64(365 * 24 * time.Hour)))
	if g.recent || folder == "" && r.IntN(100) < 3 {
		age = time.Duration(r.Int64N(int64(48 * time.Hour)))
		m.inNew = true
	}
	m.date = g.o.End.Add(-age).Truncate(time.Microsecond)
	m.flags = curFlags[r.IntN(len(curFlags))]
	if folder == "Sent" {
		m.flags = "S"
	}
	host := "mx1"
	if r.IntN(2000) == 0 {
		host = oddHosts[r.IntN(len(oddHosts))]
		m.odd = true
	}
	peer := r.IntN(g.users*3 + 50) // other users, local or not
	peerAddr := fmt.Sprintf("contact%d@example%d.org", peer, peer%37)
	if peer < g.users {
		d, p := userAt(peer)
		peerAddr = p + "@" + d
	}
	from, to := peerAddr, self
	if folder == "Sent" {
		from, to = self, peerAddr
	}
	m.id = fmt.Sprintf("<%x.%d.%d.%d@%s>", g.o.Seed, u, q, r.Uint32(), domain)
	subj := words(r, 3+r.IntN(6))
	switch r.IntN(10) {
	case 0, 1, 2:
		subj = "Re: " + subj
	case 3:
		subj = "Fwd: " + subj
	case 4:
		// Non-ASCII subjects arrive as RFC 2047 encoded-words.
		subj = "=?UTF-8?Q?R=C3=A9sum=C3=A9_" + strings.ReplaceAll(words(r, 3), " ", "_") + "?="
	}

	b := &g.buf
	b.Reset()
	if folder != "Sent" {
		fmt.Fprintf(b, "Return-Path: <%s>\nDelivered-To: %s\n", from, self)
		fmt.Fprintf(b, "Received: from mail.example%d.org (mail.example%d.org [192.0.2.%d])\n\tby mx1.%s with ESMTPS id %08x\n\tfor <%s>; %s\n",
			peer%37, peer%37, 1+peer%250, domain, r.Uint32(), self, m.date.Format(time.RFC1123Z))
	}
	fmt.Fprintf(b, "Message-ID: %s\nDate: %s\nFrom: %s <%s>\nTo: <%s>\n", m.id, m.date.Format(time.RFC1123Z), displayName(r), from, to)
	if r.IntN(10) < 3 {
		fmt.Fprintf(b, "Cc: <contact%d@example%d.org>, <contact%d@example%d.org>\n", r.IntN(999), r.IntN(37), r.IntN(999), r.IntN(37))
	}
	fmt.Fprintf(b, "Subject: %s\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n", subj)

	if !g.o.HeadersOnly {
		// About one message in six carries a body many others carry too
		// (newsletters, notifications): where a content-addressed backup
		// stores one copy.
		if r.IntN(6) == 0 {
			b.Write(g.shared[r.IntN(len(g.shared))])
			m.shared = true
		} else {
			size := 1024 + r.IntN(3072) - b.Len()
			// Start at a line, as a body does.
			off := r.IntN(len(g.text) - 8192)
			off += bytes.IndexByte(g.text[off:], '\n') + 1
			body := g.text[off : off+max(size, 64)]
			b.Write(body)
			b.WriteByte('\n')
		}
	}
	lines := bytes.Count(b.Bytes(), []byte{'\n'})
	// Dovecot's name: time, microseconds, pid and a per-process counter,
	// host, then S= (file size) and W= (size with CRLF line ends).
	m.unique = fmt.Sprintf("%d.M%dP%dQ%d.%s,S=%d,W=%d", m.date.Unix(), m.date.Nanosecond()/1000, 1000+u, q, host, b.Len(), b.Len()+lines)
	m.data = bytes.Clone(b.Bytes())
	return m
}

var firstNames = strings.Fields("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil Trent Victor Walter Zoe")
var lastNames = strings.Fields("Smith Jones Brown Garcia Miller Davis Martin Bernard Dubois Moreau Schmidt Weber Rossi Russo Silva Costa Novak Nowak Jensen Berg")

func displayName(r *rand.Rand) string {
	return firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))]
}

// vocabulary is enough for bodies to compress like everyday text.
var vocabulary = strings.Fields(`the the the of of and and to to a in is it that for you we on with as be
this are will can have not at from by please thanks meeting project report attached review update week
today tomorrow monday friday next last time team client customer order invoice payment budget quarter
plan schedule call draft version final document file server backup mail message reply question answer
issue problem solution change request approval deadline contract proposal offer price release feature
test build deploy database network account access password security policy support ticket status
progress summary notes agenda discussion decision action follow up looking forward hear back soon
regards best kind hello hi dear all everyone morning afternoon let me know if any questions feedback
would like could should also just still already again more some many very about after before during
between because however new old good great small large important urgent quick short long early late`)

func words(r *rand.Rand, n int) string {
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(vocabulary[r.IntN(len(vocabulary))])
	}
	return sb.String()
}

// newText is the body source: 4 MiB of words in 72-column lines. Message
// bodies are slices of it at random offsets, which is far faster than
// drawing words per message and still compresses like text; no two
// messages share a body by accident, since offsets rarely repeat.
func newText(seed uint64) []byte {
	r := rngFor(seed, 1<<62)
	var b bytes.Buffer
	b.Grow(4<<20 + 128)
	col := 0
	for b.Len() < 4<<20 {
		w := vocabulary[r.IntN(len(vocabulary))]
		if col+len(w)+1 > 72 {
			b.WriteByte('\n')
			col = 0
		} else if col > 0 {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.Bytes()
}

// sharedBodies are the bodies that many messages carry identically.
func sharedBodies(seed uint64, text []byte) [][]byte {
	r := rngFor(seed, 1<<61)
	out := make([][]byte, 32)
	for i := range out {
		off := r.IntN(len(text) - 4096)
		n := 1024 + r.IntN(2048)
		out[i] = append([]byte("Newsletter "+strconv.Itoa(i)+"\n\n"), text[off:off+n]...)
		out[i] = append(out[i], '\n')
	}
	return out
}
