package smtpd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// authTimeout bounds the SPF, DKIM and DMARC checks of one message.
const authTimeout = 20 * time.Second

// authOutcome is what the MX learned about a message's origin.
type authOutcome struct {
	results []authres.Result
	// dmarcPolicy is the policy to apply when DMARC failed ("" if it
	// passed or no policy was found): the published one, or the next
	// lower one for a message that pct= sampled out.
	dmarcPolicy dmarc.Policy
	// dmarc is the DMARC entry of results, whose Reason the caller
	// completes with the disposition it applied (nil if DMARC was not
	// evaluated).
	dmarc      *authres.DMARCResult
	fromDomain string
}

// Sampler draws whether a failing message is subject to its DMARC
// policy, true with probability pct/100 (RFC 7489 section 6.6.4). It is
// injectable so that tests are deterministic.
type Sampler func(pct int) bool

// RandomSampler is the default Sampler, drawing from math/rand/v2's
// ChaCha8 generator (safe for concurrent use, seeded by the runtime).
func RandomSampler(pct int) bool { return rand.IntN(100) < pct }

// lowerPolicy is the policy applied to a failing message that pct=
// sampled out: RFC 7489 section 6.6.4 applies the next policy down,
// "quarantine" for "reject" and "none" for "quarantine".
func lowerPolicy(p dmarc.Policy) dmarc.Policy {
	switch p {
	case dmarc.PolicyReject:
		return dmarc.PolicyQuarantine
	default:
		return dmarc.PolicyNone
	}
}

// checkAuth evaluates SPF (RFC 7208) for the MAIL FROM identity (or the
// HELO identity for a null sender, section 2.3), DKIM (RFC 6376) for each
// signature, and DMARC (RFC 7489) for the RFC5322.From domain, reading the
// message from r.
//
// The organizational domain (relaxed alignment, and the policy lookup's
// fallback of RFC 7489 section 6.6.3) comes from the Public Suffix List
// (orgDomain). Every domain — the From domain, the SPF identity, each
// DKIM d= — is compared, looked up and matched against the list in its
// A-label form (asciiDomain), so a U-label From domain and its A-label
// form evaluate the same. A From domain that is not a valid domain name
// gives dmarc=permerror.
//
// A failing message is subject to its policy with probability pct/100
// (RFC 7489 section 6.6.4), drawn by sample only when pct < 100; one that
// is sampled out gets the next lower policy (lowerPolicy), and the
// result's reason says so: "p=reject pct=50 sampled-out".
//
// All three share one bound, authTimeout: RFC 7208 section 4.6.4 asks for
// a limit on SPF's elapsed time of at least 20 seconds, after which the
// result is temperror, and DKIM and DMARC lookups are the same kind of
// wait. Without it an unresponsive resolver held a message for the
// resolver's full timeout of every lookup (SPF, each DKIM key, DMARC).
func checkAuth(ctx context.Context, res Resolver, sample Sampler, ip net.IP, helo, mailFrom string, msg io.ReadSeeker) authOutcome {
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	var out authOutcome

	// SPF, on the A-label forms of the HELO and MAIL FROM domains (RFC
	// 7208 section 4.3: the <domain> must be a valid name; the SPF library
	// judges one that is not). A domain that is not valid stays as it
	// came and never aligns.
	spfHelo, spfSender := helo, mailFrom
	if a, err := asciiDomain(helo); err == nil {
		spfHelo = a
	}
	spfDomain := spfHelo
	if i := strings.LastIndexByte(mailFrom, '@'); i >= 0 {
		spfDomain = mailFrom[i+1:]
		if a, err := asciiDomain(spfDomain); err == nil {
			spfDomain = a
			spfSender = mailFrom[:i+1] + a
		}
	}
	spfRes, _ := spf.CheckHostWithSender(ip, spfHelo, spfSender, spf.WithResolver(res), spf.WithContext(ctx))
	spfResult := &authres.SPFResult{Value: spfValue(spfRes), Helo: helo}
	if mailFrom != "" {
		spfResult.From = mailFrom
	}
	out.results = append(out.results, spfResult)

	// DKIM.
	lookupTXT := func(name string) ([]string, error) { return res.LookupTXT(ctx, name) }
	var dkimPassDomains []string
	msg.Seek(0, io.SeekStart)
	verifs, err := dkim.VerifyWithOptions(msg, &dkim.VerifyOptions{LookupTXT: lookupTXT, MaxVerifications: 5})
	switch {
	case err != nil && len(verifs) == 0:
		out.results = append(out.results, &authres.DKIMResult{Value: authres.ResultPermError, Reason: "cannot parse message"})
	case len(verifs) == 0:
		out.results = append(out.results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, v := range verifs {
		r := &authres.DKIMResult{Domain: v.Domain, Identifier: v.Identifier}
		switch {
		case v.Err == nil:
			r.Value = authres.ResultPass
			if d, err := asciiDomain(v.Domain); err == nil {
				dkimPassDomains = append(dkimPassDomains, d)
			}
		case dkim.IsTempFail(v.Err):
			r.Value = authres.ResultTempError
		case dkim.IsPermFail(v.Err):
			r.Value = authres.ResultPermError
			if strings.Contains(v.Err.Error(), "signature") || strings.Contains(v.Err.Error(), "hash") {
				r.Value = authres.ResultFail
			}
		default:
			r.Value = authres.ResultFail
		}
		if v.Err != nil {
			r.Reason = v.Err.Error()
		}
		out.results = append(out.results, r)
	}

	// DMARC.
	msg.Seek(0, io.SeekStart)
	h, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(msg, 1<<20)))
	rawFrom := ""
	if err == nil && len(h.Values("From")) == 1 {
		if addrs, err := mail.ParseAddressList(h.Get("From")); err == nil && len(addrs) == 1 {
			if i := strings.LastIndexByte(addrs[0].Address, '@'); i >= 0 {
				rawFrom = addrs[0].Address[i+1:]
			}
		}
	}
	if rawFrom == "" {
		// RFC 7489 section 6.6.1: messages without a single usable From
		// cannot be evaluated.
		out.dmarc = &authres.DMARCResult{Value: authres.ResultPermError, Reason: "no single From domain"}
		out.results = append(out.results, out.dmarc)
		return out
	}
	from, err := asciiDomain(rawFrom)
	if err != nil {
		// Not a domain name (bad U-label, empty label, too long): there is
		// no policy to look up (RFC 7489 section 6.6.1).
		out.dmarc = &authres.DMARCResult{Value: authres.ResultPermError, Reason: "invalid From domain"}
		out.results = append(out.results, out.dmarc)
		return out
	}
	out.fromDomain = from
	opts := &dmarc.LookupOptions{LookupTXT: lookupTXT}
	rec, err := dmarc.LookupWithOptions(from, opts)
	if err == dmarc.ErrNoPolicy && orgDomain(from) != from {
		rec, err = dmarc.LookupWithOptions(orgDomain(from), opts)
		if err == nil && rec.SubdomainPolicy != "" {
			rec.Policy = rec.SubdomainPolicy
		}
	}
	out.dmarc = &authres.DMARCResult{From: from}
	out.results = append(out.results, out.dmarc)
	switch {
	case err == dmarc.ErrNoPolicy:
		out.dmarc.Value = authres.ResultNone
		return out
	case err != nil && dmarc.IsTempFail(err):
		out.dmarc.Value = authres.ResultTempError
		return out
	case err != nil:
		out.dmarc.Value = authres.ResultPermError
		return out
	}
	aligned := func(d string, mode dmarc.AlignmentMode) bool {
		if mode == dmarc.AlignmentStrict {
			return d == from
		}
		return orgDomain(d) == orgDomain(from)
	}
	pass := spfRes == spf.Pass && aligned(spfDomain, rec.SPFAlignment)
	for _, d := range dkimPassDomains {
		pass = pass || aligned(d, rec.DKIMAlignment)
	}
	if pass {
		out.dmarc.Value = authres.ResultPass
		return out
	}
	out.dmarc.Value = authres.ResultFail
	out.dmarcPolicy = rec.Policy
	out.dmarc.Reason = "p=" + string(rec.Policy)
	// pct (RFC 7489 section 6.3, default 100) only matters for a policy
	// that does something; the draw is made only when it can go both ways.
	if pct := rec.Percent; pct != nil && *pct < 100 && rec.Policy != dmarc.PolicyNone {
		if sample(*pct) {
			out.dmarc.Reason += fmt.Sprintf(" pct=%d sampled-in", *pct)
		} else {
			out.dmarcPolicy = lowerPolicy(rec.Policy)
			out.dmarc.Reason += fmt.Sprintf(" pct=%d sampled-out", *pct)
		}
	}
	return out
}

// asciiDomain returns d as DNS and the Public Suffix List know it: in
// A-labels (RFC 5890 section 2.3.2.1, the IDNA2008 lookup profile of
// golang.org/x/net/idna, UTS #46 mapping: case folded, lower case), without a
// trailing dot. It fails for a name that is not a valid domain: a label
// that IDNA rejects (bad punycode, a leading hyphen, disallowed or
// bidi-breaking runes), an empty label, a label over 63 octets or a name
// over 253 (RFC 1035 section 2.3.4).
func asciiDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if !utf8.ValidString(d) {
		// The profile would map invalid bytes to U+FFFD and encode that.
		return "", fmt.Errorf("domain %q: not UTF-8", d)
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain %q: %w", d, err)
	}
	if a == "" || len(a) > 253 {
		return "", fmt.Errorf("domain %q: length %d", d, len(a))
	}
	for label := range strings.SplitSeq(a, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("domain %q: label length %d", d, len(label))
		}
	}
	return strings.ToLower(a), nil
}

func spfValue(r spf.Result) authres.ResultValue {
	switch r {
	case spf.Pass:
		return authres.ResultPass
	case spf.Fail:
		return authres.ResultFail
	case spf.SoftFail:
		return authres.ResultSoftFail
	case spf.Neutral:
		return authres.ResultNeutral
	case spf.TempError:
		return authres.ResultTempError
	case spf.PermError:
		return authres.ResultPermError
	}
	return authres.ResultNone
}

// orgDomain returns the organizational domain of d (RFC 7489 section
// 3.2): the public suffix that matches most of d's labels (the Public
// Suffix List compiled into golang.org/x/net/publicsuffix, its ICANN and
// private sections, with "*" for names it does not list) and one label
// more. mail.example.co.uk → example.co.uk, a.b.example.com → example.com,
// x.alice.github.io → alice.github.io. A name that is itself a public
// suffix (co.uk) has no label to add and is its own. d must be in A-label
// form (asciiDomain): the list is, so a U-label name would miss its
// suffix's rule (mail.例え.東京.jp would get 東京.jp, shared by every
// site under that public suffix).
func orgDomain(d string) string {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}
