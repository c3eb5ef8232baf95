package smtpd

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/mail"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// authTimeout bounds the SPF, DKIM and DMARC checks of one message.
const authTimeout = 20 * time.Second

// authOutcome is what the MX learned about a message's origin.
type authOutcome struct {
	results []authres.Result
	// dmarcPolicy is the policy to apply when DMARC failed ("" if it
	// passed or no policy was found).
	dmarcPolicy dmarc.Policy
	fromDomain  string
}

// checkAuth evaluates SPF (RFC 7208) for the MAIL FROM identity (or the
// HELO identity for a null sender, section 2.3), DKIM (RFC 6376) for each
// signature, and DMARC (RFC 7489) for the RFC5322.From domain, reading the
// message from r.
//
// The organizational domain (relaxed alignment, and the policy lookup's
// fallback of RFC 7489 section 6.6.3) comes from the Public Suffix List
// (orgDomain). Limitation: "pct" is ignored (policy applies to all failing
// mail).
//
// All three share one bound, authTimeout: RFC 7208 section 4.6.4 asks for
// a limit on SPF's elapsed time of at least 20 seconds, after which the
// result is temperror, and DKIM and DMARC lookups are the same kind of
// wait. Without it an unresponsive resolver held a message for the
// resolver's full timeout of every lookup (SPF, each DKIM key, DMARC).
func checkAuth(ctx context.Context, res Resolver, ip net.IP, helo, mailFrom string, msg io.ReadSeeker) authOutcome {
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	var out authOutcome

	// SPF.
	spfDomain := helo
	if i := strings.LastIndexByte(mailFrom, '@'); i >= 0 {
		spfDomain = mailFrom[i+1:]
	}
	spfRes, _ := spf.CheckHostWithSender(ip, helo, mailFrom, spf.WithResolver(res), spf.WithContext(ctx))
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
			dkimPassDomains = append(dkimPassDomains, strings.ToLower(v.Domain))
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
	from := ""
	if err == nil && len(h.Values("From")) == 1 {
		if addrs, err := mail.ParseAddressList(h.Get("From")); err == nil && len(addrs) == 1 {
			if i := strings.LastIndexByte(addrs[0].Address, '@'); i >= 0 {
				from = strings.ToLower(addrs[0].Address[i+1:])
			}
		}
	}
	if from == "" {
		// RFC 7489 section 6.6.1: messages without a single usable From
		// cannot be evaluated.
		out.results = append(out.results, &authres.DMARCResult{Value: authres.ResultPermError, Reason: "no single From domain"})
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
	switch {
	case err == dmarc.ErrNoPolicy:
		out.results = append(out.results, &authres.DMARCResult{Value: authres.ResultNone, From: from})
		return out
	case err != nil && dmarc.IsTempFail(err):
		out.results = append(out.results, &authres.DMARCResult{Value: authres.ResultTempError, From: from})
		return out
	case err != nil:
		out.results = append(out.results, &authres.DMARCResult{Value: authres.ResultPermError, From: from})
		return out
	}
	aligned := func(d string, mode dmarc.AlignmentMode) bool {
		d = strings.ToLower(d)
		if mode == dmarc.AlignmentStrict {
			return d == from
		}
		return orgDomain(d) == orgDomain(from)
	}
	pass := spfRes == spf.Pass && aligned(spfDomain, rec.SPFAlignment)
	for _, d := range dkimPassDomains {
		pass = pass || aligned(d, rec.DKIMAlignment)
	}
	r := &authres.DMARCResult{Value: authres.ResultPass, From: from}
	if !pass {
		r.Value = authres.ResultFail
		out.dmarcPolicy = rec.Policy
		r.Reason = "p=" + string(rec.Policy)
	}
	out.results = append(out.results, r)
	return out
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
// suffix (co.uk) has no label to add and is its own.
func orgDomain(d string) string {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}
