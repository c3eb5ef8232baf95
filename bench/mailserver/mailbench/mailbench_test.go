package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// query builds a DNS query for name and type qtype (RFC 1035 section 4.1).
func query(id uint16, name string, qtype uint16) []byte {
	q := make([]byte, 12, 64)
	binary.BigEndian.PutUint16(q[0:2], id)
	binary.BigEndian.PutUint16(q[2:4], 0x0100) // RD
	binary.BigEndian.PutUint16(q[4:6], 1)
	for _, l := range splitLabels(name) {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0, byte(qtype>>8), byte(qtype), 0, 1)
	return q
}

func splitLabels(name string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if i > start {
				out = append(out, name[start:i])
			}
			start = i + 1
		}
	}
	return out
}

func TestNXDOMAIN(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    []byte
		ok   bool
	}{
		{"TXT query", query(7, "_dmarc.sender.test", 16), true},
		{"A query", query(8, "sender.test", 1), true},
		{"query with EDNS OPT record", append(func() []byte {
			q := query(9, "sender.test", 16)
			binary.BigEndian.PutUint16(q[10:12], 1)
			return q
		}(), 0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0), true},
		{"short header", []byte{1, 2, 3}, false},
		{"a response", func() []byte { q := query(1, "a.test", 1); q[2] |= 0x80; return q }(), false},
		{"two questions", func() []byte { q := query(1, "a.test", 1); q[5] = 2; return q }(), false},
		{"truncated name", query(1, "a.test", 1)[:15], false},
		{"compressed name", append(query(1, "", 1)[:12], 0xc0, 12, 0, 1, 0, 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, ok := nxdomain(tc.q)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if resp[0] != tc.q[0] || resp[1] != tc.q[1] {
				t.Fatal("ID not copied")
			}
			flags := binary.BigEndian.Uint16(resp[2:4])
			if flags&0x8000 == 0 || flags&0xf != 3 || flags&0x0100 == 0 {
				t.Fatalf("flags %#04x: want QR, RD kept and RCODE 3", flags)
			}
			if an, ns, ar := binary.BigEndian.Uint16(resp[6:8]), binary.BigEndian.Uint16(resp[8:10]), binary.BigEndian.Uint16(resp[10:12]); an+ns+ar != 0 {
				t.Fatalf("answer/authority/additional counts %d/%d/%d, want none", an, ns, ar)
			}
		})
	}
}

// TestDNSAnswersGoResolver: Go's own resolver, the one mailvault uses,
// gets "no such host" from the responder for every kind of lookup the MX
// makes.
func TestDNSAnswersGoResolver(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().String()
	ctx, cancel := context.WithCancel(t.Context())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- serveDNS(ctx, conn, &out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		// Two TXT, one MX, and A and AAAA for LookupIPAddr.
		if !strings.Contains(out.String(), `"queries":5`) {
			t.Errorf("final report %q, want 5 queries", out.String())
		}
	}()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
	for _, lookup := range []func() error{
		func() error { _, err := r.LookupTXT(t.Context(), "sender.test."); return err },
		func() error { _, err := r.LookupTXT(t.Context(), "_dmarc.sender.test."); return err },
		func() error { _, err := r.LookupMX(t.Context(), "sender.test."); return err },
		func() error { _, err := r.LookupIPAddr(t.Context(), "mail.sender.test."); return err },
	} {
		err := lookup()
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Fatalf("got %v, want a not-found *net.DNSError", err)
		}
	}
}

func TestDNSRefusesNonLoopback(t *testing.T) {
	fs := newFlagSet("dns")
	run := dnsCmd(fs)
	if err := fs.Parse([]string{"-listen", "192.0.2.1:53"}); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context()); err == nil {
		t.Fatal("listening on a non-loopback address was allowed")
	}
}

func TestCountFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"1.M1P1.host", "2.M2P1.host", ".hidden"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := countFiles(dir); err != nil || n != 2 {
		t.Fatalf("countFiles = %d, %v; want 2", n, err)
	}
}

func TestLiteralSize(t *testing.T) {
	for _, tc := range []struct {
		line string
		want int64
	}{
		{"* 1 FETCH (UID 4 BODY[] {1234}\r\n", 1234},
		{"* 1 FETCH (UID 4 BODY[] {12+}\r\n", 12},
		{"* 1 FETCH (UID 4 FLAGS (\\Seen))\r\n", -1},
		{"* 1 FETCH (ENVELOPE (\"a}\" NIL))\r\n", -1},
		{"{x}\r\n", -1},
	} {
		if got := literalSize([]byte(tc.line)); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.line, got, tc.want)
		}
	}
}

func TestQuoted(t *testing.T) {
	for in, want := range map[string]string{
		`alice@example.test`: `"alice@example.test"`,
		`pa"ss\word`:         `"pa\"ss\\word"`,
	} {
		if got, err := quoted(in); got != want || err != nil {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := quoted("a\r\nb"); err == nil {
		t.Error("CRLF quoted")
	}
}
