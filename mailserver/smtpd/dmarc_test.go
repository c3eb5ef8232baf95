package smtpd

import (
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"
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
			out := checkAuth(t.Context(), res, net.ParseIP(ip), "mx."+tc.mailFrom, "bounce@"+tc.mailFrom, strings.NewReader(msg))
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
