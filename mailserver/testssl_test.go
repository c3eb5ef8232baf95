package mailserver

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testsslArgs are the checks TestTestSSL runs: protocols (-p), forward
// secrecy (-f), and every cipher each protocol accepts (-E, tried over
// raw sockets too for the suites the local OpenSSL lacks, such as RC4,
// 3DES, NULL and EXPORT), with no DNS and no prompts.
var testsslArgs = []string{"-p", "-f", "-E", "--quiet", "--warnings", "off", "--color", "0", "--nodns", "none"}

// needTestSSL finds testssl.sh (Debian installs it as /usr/bin/testssl).
// Like needTool, a missing tool skips locally and fails in CI.
func needTestSSL(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"testssl", "testssl.sh"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("testssl.sh is required in CI (apt-get install -y testssl.sh)")
	}
	t.Skip("testssl.sh not installed")
	return ""
}

// testsslFinding is one entry of testssl's flat JSON output.
type testsslFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// Allowed suites: ECDHE with AES-GCM or ChaCha20-Poly1305 under TLS 1.2,
// and the TLS 1.3 AEAD suites (always ephemeral key exchange).
var (
	goodTLS12 = regexp.MustCompile(`^TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$`)
	goodTLS13 = regexp.MustCompile(`^TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$`)
	weakWords = []string{"RC4", "3DES", "DES", "CBC", "NULL", "EXPORT", "EXP", "anon", "MD5", "IDEA", "SEED", "CAMELLIA", "ARIA", "CCM"}
)

// TestTestSSL runs testssl.sh against every TLS endpoint (implicit TLS
// directly, the others through their STARTTLS/STLS upgrade) and checks
// protocols, forward secrecy and ciphers from its JSON report.
func TestTestSSL(t *testing.T) {
	bin := needTestSSL(t)
	srv, _ := startServer(t, nil)
	a := srv.Addrs()
	endpoints := []struct{ name, starttls string }{
		{"submissions", ""}, {"imaps", ""}, {"pop3s", ""},
		{"smtp", "smtp"}, {"submission", "smtp"}, {"imap", "imap"}, {"pop3", "pop3"},
	}
	dir := t.TempDir()
	type result struct {
		out      []byte
		err      error
		findings []testsslFinding
		took     time.Duration
	}
	results := make([]result, len(endpoints))
	start := time.Now()
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() {
			r := &results[i]
			jsonFile := filepath.Join(dir, ep.name+".json")
			args := append([]string{}, testsslArgs...)
			args = append(args, "--jsonfile", jsonFile)
			if ep.starttls != "" {
				args = append(args, "--starttls", ep.starttls)
			}
			args = append(args, a[ep.name])
			cmd := exec.Command(bin, args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "TERM=dumb")
			t0 := time.Now()
			r.out, r.err = cmd.CombinedOutput()
			r.took = time.Since(t0)
			if r.err != nil {
				return
			}
			b, err := os.ReadFile(jsonFile)
			if err != nil {
				r.err = err
				return
			}
			r.err = json.Unmarshal(b, &r.findings)
		})
	}
	wg.Wait()
	t.Logf("testssl on %d endpoints took %v", len(endpoints), time.Since(start).Round(time.Second))

	for i, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			r := results[i]
			t.Logf("%s (%s): %v", ep.name, a[ep.name], r.took.Round(time.Second))
			if r.err != nil {
				t.Fatalf("testssl: %v\n%s", r.err, r.out)
			}
			checkTestSSL(t, r.findings, r.out)
		})
	}
}

func checkTestSSL(t *testing.T, findings []testsslFinding, out []byte) {
	t.Helper()
	// testssl may report an ID twice: the verdict, then a remark. Over
	// SMTP STARTTLS it adds "received 4xx/5xx after STARTTLS handshake"
	// to the refused SSLv3/TLS 1.0/1.1 handshakes: go-smtp answers a
	// failed handshake with a plaintext 550, which testssl notices (the
	// verdict stays "not offered").
	byID := map[string][]testsslFinding{}
	var ciphers []testsslFinding
	for _, f := range findings {
		byID[f.ID] = append(byID[f.ID], f)
		if strings.HasPrefix(f.ID, "cipher-tls") || strings.HasPrefix(f.ID, "cipher-ssl") {
			ciphers = append(ciphers, f)
		}
		if f.Severity == "FATAL" || f.ID == "scanProblem" {
			t.Errorf("testssl problem: %s %s: %s", f.ID, f.Severity, f.Finding)
		}
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
	}
	// verdict is the finding of id that starts with one of prefixes; any
	// other finding of id must be a known remark.
	verdict := func(id string, prefixes ...string) {
		t.Helper()
		fs := byID[id]
		var ok bool
		for _, f := range fs {
			matched := false
			for _, p := range prefixes {
				if strings.HasPrefix(f.Finding, p) {
					matched = true
				}
			}
			switch {
			case matched:
				ok = true
			case strings.HasPrefix(f.Finding, "received 4xx/5xx after STARTTLS handshake"):
				t.Logf("%s: %s", id, f.Finding)
			default:
				fail("%s: unexpected finding %q (%s)", id, f.Finding, f.Severity)
			}
		}
		if !ok {
			fail("%s: want %q, got %v", id, prefixes, fs)
		}
	}
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"} {
		verdict(id, "not offered", "likely not offered")
	}
	for _, id := range []string{"TLS1_2", "TLS1_3"} {
		verdict(id, "offered")
	}
	verdict("PFS", "offered")
	var n12, n13 int
	for _, c := range ciphers {
		fields := strings.Fields(c.Finding)
		if len(fields) < 5 {
			fail("cipher %s: cannot parse %q", c.ID, c.Finding)
			continue
		}
		iana := fields[len(fields)-1]
		kx := fields[4]
		switch {
		case strings.HasPrefix(c.ID, "cipher-tls1_2_"):
			n12++
			if !goodTLS12.MatchString(iana) {
				fail("TLS 1.2 offers %s", c.Finding)
			}
		case strings.HasPrefix(c.ID, "cipher-tls1_3_"):
			n13++
			if !goodTLS13.MatchString(iana) {
				fail("TLS 1.3 offers %s", c.Finding)
			}
		default:
			fail("cipher offered under an old protocol: %s", c.Finding)
		}
		if !strings.HasPrefix(kx, "ECDH") && !strings.HasPrefix(kx, "DH") {
			fail("cipher without forward secrecy (key exchange %s): %s", kx, c.Finding)
		}
		for _, w := range weakWords {
			if strings.Contains(iana, w) || strings.Contains(fields[3], w) {
				fail("weak cipher (%s): %s", w, c.Finding)
			}
		}
	}
	if n12 == 0 || n13 == 0 {
		fail("cipher listing incomplete: %d TLS 1.2 and %d TLS 1.3 suites", n12, n13)
	}
	if t.Failed() {
		t.Logf("testssl output:\n%s", bytes.TrimSpace(out))
	}
}
