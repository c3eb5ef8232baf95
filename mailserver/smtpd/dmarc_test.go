package smtpd

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"

	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/store"
)

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.co.uk": "example.co.uk",
		"example.co.uk":      "example.co.uk",
		"a.b.example.com":    "example.com",
		"Example.COM.":       "example.com",
		"x.alice.github.io":  "alice.github.io", // PSL private section
		"mx.example.test":    "example.test",    // unlisted TLD: the "*" rule
		"co.uk":              "co.uk",           // a public suffix is its own
		"localhost":          "localhost",
	} {
		if got := orgDomain(in); got != want {
			t.Errorf("orgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// DMARC (RFC 7489) with the organizational domain from the Public Suffix
// List: relaxed alignment (section 3.1) compares organizational domains,
// and a From domain without a record falls back to its organizational
// domain's, whose sp= applies (section 6.6.3).
func TestDMARCOrganizationalDomain(t *testing.T) {
	const ip = "192.0.2.1"
	spfPass := "v=spf1 ip4:" + ip + " -all"
	for _, tc := range []struct {
		name       string
		from       string // RFC5322.From domain
		mailFrom   string // envelope domain; SPF passes for it
		records    map[string]string
		want       authres.ResultValue
		wantPolicy dmarc.Policy // applied on failure
	}{
		{name: "subdomain aligned under a two-label suffix",
			from: "example.co.uk", mailFrom: "mail.example.co.uk",
			records: map[string]string{"_dmarc.example.co.uk": "v=DMARC1; p=reject"},
			want:    authres.ResultPass},
		{name: "same public suffix is not the same organization",
			from: "example.co.uk", mailFrom: "other.co.uk",
			records: map[string]string{"_dmarc.example.co.uk": "v=DMARC1; p=reject"},
			want:    authres.ResultFail, wantPolicy: dmarc.PolicyReject},
		{name: "deep subdomain, record at the organizational domain",
			from: "a.b.example.com", mailFrom: "example.com",
			records: map[string]string{"_dmarc.example.com": "v=DMARC1; p=reject"},
			want:    authres.ResultPass},
		{name: "fallback lookup under a two-label suffix applies sp",
			from: "mail.example.co.uk", mailFrom: "other.co.uk",
			records: map[string]string{"_dmarc.example.co.uk": "v=DMARC1; p=none; sp=reject"},
			want:    authres.ResultFail, wantPolicy: dmarc.PolicyReject},
		{name: "the From domain's own record wins over the fallback",
			from: "mail.example.co.uk", mailFrom: "other.co.uk",
			records: map[string]string{"_dmarc.mail.example.co.uk": "v=DMARC1; p=quarantine", "_dmarc.example.co.uk": "v=DMARC1; p=reject"},
			want:    authres.ResultFail, wantPolicy: dmarc.PolicyQuarantine},
		{name: "strict SPF alignment wants the very domain",
			from: "example.com", mailFrom: "mail.example.com",
			records: map[string]string{"_dmarc.example.com": "v=DMARC1; p=reject; aspf=s"},
			want:    authres.ResultFail, wantPolicy: dmarc.PolicyReject},
		{name: "private-section suffix: sibling sites are different organizations",
			from: "alice.github.io", mailFrom: "bob.github.io",
			records: map[string]string{"_dmarc.alice.github.io": "v=DMARC1; p=reject"},
			want:    authres.ResultFail, wantPolicy: dmarc.PolicyReject},
		{name: "no record anywhere",
			from: "mail.example.co.uk", mailFrom: "mail.example.co.uk",
			records: map[string]string{},
			want:    authres.ResultNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &StaticResolver{}
			res.SetTXT(tc.mailFrom, spfPass)
			for name, txt := range tc.records {
				res.SetTXT(name, txt)
			}
			msg := "From: <someone@" + tc.from + ">\r\nSubject: t\r\n\r\nbody\r\n"
			out := checkAuth(t.Context(), res, RandomSampler, net.ParseIP(ip), "mx."+tc.mailFrom, "bounce@"+tc.mailFrom, strings.NewReader(msg))
			var got *authres.DMARCResult
			for _, r := range out.results {
				if d, ok := r.(*authres.DMARCResult); ok {
					got = d
				}
				if s, ok := r.(*authres.SPFResult); ok && s.Value != authres.ResultPass {
					t.Fatalf("SPF %s, the test wants it to pass", s.Value)
				}
			}
			if got == nil || got.Value != tc.want || out.dmarcPolicy != tc.wantPolicy {
				t.Fatalf("DMARC %+v with policy %q, want %s with %q", got, out.dmarcPolicy, tc.want, tc.wantPolicy)
			}
		})
	}
}

// fixedSampler answers every draw with in and counts the draws.
type fixedSampler struct {
	in    bool
	draws []int
}

func (s *fixedSampler) sample(pct int) bool {
	s.draws = append(s.draws, pct)
	return s.in
}

// dmarcOf evaluates a message from fromDomain, sent by mailFrom from an
// address SPF authorizes for mailFrom's domain, and returns the outcome
// with its DMARC result.
func dmarcOf(t *testing.T, res *StaticResolver, sample Sampler, fromDomain, mailFrom string) (authOutcome, *authres.DMARCResult) {
	t.Helper()
	msg := "From: <someone@" + fromDomain + ">\r\nSubject: t\r\n\r\nbody\r\n"
	out := checkAuth(t.Context(), res, sample, net.ParseIP("192.0.2.1"), "mx.sender.test", mailFrom, strings.NewReader(msg))
	if out.dmarc == nil {
		t.Fatalf("no DMARC result in %v", out.results)
	}
	return out, out.dmarc
}

// RFC 7489 section 6.6.4: pct= subjects that share of failing mail to
// the policy; the rest gets the next lower one, recorded in the reason.
// The draw is injected, and made only when it can go both ways.
func TestDMARCPercent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		record     string
		sampledIn  bool
		wantPolicy dmarc.Policy
		wantReason string
		wantDraws  []int
	}{
		{name: "reject sampled in", record: "v=DMARC1; p=reject; pct=50", sampledIn: true,
			wantPolicy: dmarc.PolicyReject, wantReason: "p=reject pct=50 sampled-in", wantDraws: []int{50}},
		{name: "reject sampled out becomes quarantine", record: "v=DMARC1; p=reject; pct=50",
			wantPolicy: dmarc.PolicyQuarantine, wantReason: "p=reject pct=50 sampled-out", wantDraws: []int{50}},
		{name: "quarantine sampled out becomes none", record: "v=DMARC1; p=quarantine; pct=10",
			wantPolicy: dmarc.PolicyNone, wantReason: "p=quarantine pct=10 sampled-out", wantDraws: []int{10}},
		{name: "pct=0 still draws (the sampler decides)", record: "v=DMARC1; p=reject; pct=0",
			wantPolicy: dmarc.PolicyQuarantine, wantReason: "p=reject pct=0 sampled-out", wantDraws: []int{0}},
		{name: "pct=100 applies to all without a draw", record: "v=DMARC1; p=reject; pct=100",
			wantPolicy: dmarc.PolicyReject, wantReason: "p=reject"},
		{name: "no pct applies to all without a draw", record: "v=DMARC1; p=quarantine",
			wantPolicy: dmarc.PolicyQuarantine, wantReason: "p=quarantine"},
		{name: "p=none has nothing to sample", record: "v=DMARC1; p=none; pct=20",
			wantPolicy: dmarc.PolicyNone, wantReason: "p=none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &StaticResolver{}
			res.SetTXT("sender.test", "v=spf1 -all")
			res.SetTXT("_dmarc.bank.test", tc.record)
			s := &fixedSampler{in: tc.sampledIn}
			out, r := dmarcOf(t, res, s.sample, "bank.test", "x@sender.test")
			if r.Value != authres.ResultFail || out.dmarcPolicy != tc.wantPolicy || r.Reason != tc.wantReason {
				t.Fatalf("DMARC %+v policy %q, want fail %q with reason %q", r, out.dmarcPolicy, tc.wantPolicy, tc.wantReason)
			}
			if !slices.Equal(s.draws, tc.wantDraws) {
				t.Fatalf("draws %v, want %v", s.draws, tc.wantDraws)
			}
		})
	}
	// A passing message is never drawn.
	res := &StaticResolver{}
	res.SetTXT("bank.test", "v=spf1 ip4:192.0.2.1 -all")
	res.SetTXT("_dmarc.bank.test", "v=DMARC1; p=reject; pct=50")
	s := &fixedSampler{}
	if out, r := dmarcOf(t, res, s.sample, "bank.test", "x@bank.test"); r.Value != authres.ResultPass || out.dmarcPolicy != "" || len(s.draws) != 0 {
		t.Fatalf("pass: %+v policy %q draws %v", r, out.dmarcPolicy, s.draws)
	}
}

// The default sampler draws true with probability pct/100.
func TestRandomSampler(t *testing.T) {
	for _, pct := range []int{0, 100} {
		for range 1000 {
			if RandomSampler(pct) != (pct == 100) {
				t.Fatalf("RandomSampler(%d) drew the impossible", pct)
			}
		}
	}
	in := 0
	for range 10000 {
		if RandomSampler(30) {
			in++
		}
	}
	// Binomial(10000, 0.3): standard deviation 46; 10 of them is never
	// reached by chance.
	if in < 2540 || in > 3460 {
		t.Fatalf("RandomSampler(30) true %d times in 10000", in)
	}
}

// IDN (RFC 5890): a From domain in U-labels evaluates as its A-label
// form, which is what DNS and the Public Suffix List hold.
func TestDMARCInternationalizedDomains(t *testing.T) {
	const (
		uFrom = "mail.例え.東京.jp"                          // 東京.jp is a public suffix
		aFrom = "mail.xn--r8jz45g.xn--1lqs71d.jp"        // the same name in A-labels
		aOrg  = "xn--r8jz45g.xn--1lqs71d.jp"             // 例え.東京.jp
		other = "bounce@other.xn--1lqs71d.jp"            // another site under 東京.jp
		same  = "bounce@news.xn--r8jz45g.xn--1lqs71d.jp" // a sibling of the From domain
	)
	res := &StaticResolver{}
	res.SetTXT("other.xn--1lqs71d.jp", "v=spf1 ip4:192.0.2.1 -all")
	res.SetTXT("news.xn--r8jz45g.xn--1lqs71d.jp", "v=spf1 ip4:192.0.2.1 -all")
	res.SetTXT("_dmarc."+aOrg, "v=DMARC1; p=reject; sp=reject")
	for _, tc := range []struct {
		name, from, mailFrom string
		want                 authres.ResultValue
	}{
		// Without the A-label conversion the list misses 東京.jp's rule and
		// both names get the organizational domain 東京.jp (the TLD rule
		// "jp" plus one label): every site under it would align.
		{"U-label, other organization under the same suffix", uFrom, other, authres.ResultFail},
		{"A-label, other organization under the same suffix", aFrom, other, authres.ResultFail},
		{"U-label, same organization", uFrom, same, authres.ResultPass},
		{"A-label, same organization", aFrom, same, authres.ResultPass},
		{"U-label envelope", aFrom, "bounce@news.例え.東京.jp", authres.ResultPass},
		{"mixed case U-label", "MAIL.例え.東京.JP", same, authres.ResultPass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, r := dmarcOf(t, res, RandomSampler, tc.from, tc.mailFrom)
			if r.Value != tc.want || r.From != aFrom {
				t.Fatalf("DMARC %+v (policy %q), want %s for %s", r, out.dmarcPolicy, tc.want, aFrom)
			}
		})
	}
	for _, bad := range []string{
		"-bad.example",                              // leading hyphen
		"xn--zz.example",                            // invalid punycode
		"exa\u200dmple.com",                         // a joiner where CONTEXTJ forbids it
		"a_b.example",                               // not a host name
		strings.Repeat("a", 64) + ".example",        // label over 63 octets
		strings.Repeat("abcdefgh.", 30) + "example", // name over 253 octets
	} {
		t.Run("invalid "+bad, func(t *testing.T) {
			out, r := dmarcOf(t, res, RandomSampler, bad, other)
			if r.Value != authres.ResultPermError || out.dmarcPolicy != "" || out.fromDomain != "" {
				t.Fatalf("DMARC %+v policy %q for %q, want permerror", r, out.dmarcPolicy, bad)
			}
		})
	}
}

func TestASCIIDomain(t *testing.T) {
	for in, want := range map[string]string{
		"例え.テスト":      "xn--r8jz45g.xn--zckzah",
		"Ünicode.DE.": "xn--nicode-2ya.de",
		"EXAMPLE.com": "example.com",
		"xn--zca.de":  "xn--zca.de",
		"ß.de":        "xn--zca.de", // IDNA2008: ß is a letter of its own
		"a..b":        "",
		"":            "",
		".":           "",
		"-x.com":      "",
		"x\x00y.com":  "",
		"[192.0.2.1]": "",
	} {
		got, err := asciiDomain(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("asciiDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzDomain: any From or envelope domain is handled without a crash;
// a domain asciiDomain accepts is plain ASCII, a fixed point, and its
// organizational domain is itself or a parent of it.
func FuzzDomain(f *testing.F) {
	for _, s := range []string{"example.com", "mail.例え.東京.jp", "xn--zz.com", "a..b", "-x.com", "ß.de",
		"exa\u200dmple.com", "xn--r8jz45g.xn--1lqs71d.jp", "x.alice.github.io", "\xff\xfe.com", "עברית.ישראל", "a.ا١.com", "co.uk", "."} {
		f.Add(s)
	}
	res := &StaticResolver{}
	res.SetTXT("_dmarc.example.com", "v=DMARC1; p=reject; pct=50")
	f.Fuzz(func(t *testing.T, d string) {
		if a, err := asciiDomain(d); err == nil {
			for i := 0; i < len(a); i++ {
				if a[i] >= 0x80 || a[i] >= 'A' && a[i] <= 'Z' {
					t.Fatalf("asciiDomain(%q) = %q: not lower-case ASCII", d, a)
				}
			}
			if b, err := asciiDomain(a); err != nil || b != a {
				t.Fatalf("asciiDomain(%q) = %q, but asciiDomain(%q) = %q, %v", d, a, a, b, err)
			}
			if org := orgDomain(a); org != a && !strings.HasSuffix(a, "."+org) {
				t.Fatalf("orgDomain(%q) = %q", a, org)
			}
		}
		if strings.ContainsAny(d, "\r\n<>") {
			return // not a header line's domain
		}
		msg := "From: <x@" + d + ">\r\n\r\nbody\r\n"
		out := checkAuth(t.Context(), res, RandomSampler, net.ParseIP("192.0.2.1"), "helo.test", "x@"+d, strings.NewReader(msg))
		switch out.dmarc.Value {
		case authres.ResultPass, authres.ResultFail, authres.ResultNone, authres.ResultPermError, authres.ResultTempError:
		default:
			t.Fatalf("dmarc=%s for %q", out.dmarc.Value, d)
		}
		if out.fromDomain != "" {
			if a, err := asciiDomain(out.fromDomain); err != nil || a != out.fromDomain {
				t.Fatalf("evaluated From domain %q is not in A-label form", out.fromDomain)
			}
		}
	})
}

// IDN over a real session: a U-label From header (8-bit DATA) is
// evaluated and recorded in its A-label form, and an invalid From domain
// gives dmarc=permerror while the message is still delivered.
func TestDMARCInternationalizedOverSMTP(t *testing.T) {
	e := newTestEnv(t, func(c *Config, _ *auth.LimiterConfig) { c.EnforceDMARC = true })
	e.res.SetTXT("news.xn--r8jz45g.xn--1lqs71d.jp", "v=spf1 ip4:127.0.0.1 -all")
	e.res.SetTXT("_dmarc.xn--r8jz45g.xn--1lqs71d.jp", "v=DMARC1; p=reject")
	for _, from := range []string{"ceo@mail.例え.東京.jp", "ceo@-bad.example"} {
		c := e.dial(t, ModeMX)
		c.Script(`
			S: 220
			C: EHLO news.xn--r8jz45g.xn--1lqs71d.jp
			S: 250
			C: MAIL FROM:<bounce@news.xn--r8jz45g.xn--1lqs71d.jp>
			S: 250
			C: RCPT TO:<alice@example.test>
			S: 250
			C: DATA
			S: 354
			C: From: <` + from + `>
			C: Subject: idn
			C:
			C: hello
			C: .
			S: 250`)
	}
	msgs := strings.Join(e.messages(t, aliceAcct, store.Inbox), "\n")
	for _, want := range []string{
		"dmarc=pass header.from=mail.xn--r8jz45g.xn--1lqs71d.jp",
		`dmarc=permerror reason="invalid From domain"`,
	} {
		if !strings.Contains(msgs, want) {
			t.Errorf("stored messages lack %q:\n%s", want, msgs)
		}
	}
}
