package corpus

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
	"unicode"
)

// person is a mail correspondent, local (has a mailbox in the tree) or
// external (only ever appears in headers).
type person struct {
	display string
	addr    string
	domain  string
	local   bool
	zone    *time.Location
	mailer  string
	sig     string
	// dir is the user's Maildir directory relative to the corpus root
	// (e.g. "acme.example/alice.martin/Maildir"); empty for external people.
	dir string
}

// mailingList expands one address into many local deliveries, which is the
// worst case of duplicated bytes in a mail store.
type mailingList struct {
	addr    string
	name    string
	members []*person
}

// world is the cast of a corpus: the local users whose mailboxes are
// written, the outside people who write to them and the lists they are on.
type world struct {
	locals   []*person
	byDomain map[string][]*person
	domains  []string
	external []*person
	lists    []*mailingList
}

// folders are the Maildir++ subfolders every user has besides INBOX, named
// as their directories are (leading dot, dot-separated hierarchy).
var folders = []string{".Sent", ".Drafts", ".Trash", ".Archive.2024", ".Archive.2025"}

var zones = []*time.Location{
	time.FixedZone("", 0),
	time.FixedZone("", 1*3600),
	time.FixedZone("", 2*3600),
	time.FixedZone("", -5*3600),
	time.FixedZone("", -8*3600),
	time.FixedZone("", 9*3600),
}

func domainName(i int) string {
	if i < len(localDomainNames) {
		return localDomainNames[i]
	}
	return fmt.Sprintf("dom%d.example", i)
}

// newWorld draws the users of domains×usersPerDomain mailboxes and the
// external correspondents.
func newWorld(r *rand.Rand, domains, usersPerDomain int) *world {
	w := &world{byDomain: make(map[string][]*person)}
	for d := range domains {
		dom := domainName(d)
		w.domains = append(w.domains, dom)
		seen := make(map[string]bool)
		for len(w.byDomain[dom]) < usersPerDomain {
			f := firstNames[r.IntN(len(firstNames))]
			l := lastNames[r.IntN(len(lastNames))]
			local := f[1] + "." + l[1]
			// Large domains exhaust the name pairs: number them like real
			// directories do ("alice.martin2").
			for n := len(w.byDomain[dom]); seen[local]; n++ {
				local = fmt.Sprintf("%s.%s%d", f[1], l[1], n)
			}
			seen[local] = true
			w.byDomain[dom] = append(w.byDomain[dom], newLocal(r, dom, local, f[0]+" "+l[0]))
		}
		sort.Slice(w.byDomain[dom], func(i, j int) bool { return w.byDomain[dom][i].addr < w.byDomain[dom][j].addr })
		w.locals = append(w.locals, w.byDomain[dom]...)
	}
	w.addExternal(r)
	w.addLists(r)
	return w
}

func newLocal(r *rand.Rand, domain, local, display string) *person {
	p := &person{
		display: display,
		addr:    local + "@" + domain,
		domain:  domain,
		local:   true,
		zone:    zones[r.IntN(len(zones))],
		mailer:  mailers[r.IntN(len(mailers))],
		dir:     domain + "/" + local + "/Maildir",
	}
	p.sig = fmt.Sprintf("-- \n%s\n%s, %s\nPhone: +1 555 %04d\n", display,
		[]string{"Engineer", "Manager", "Analyst", "Director", "Sales", "Support"}[r.IntN(6)],
		domain, r.IntN(10000))
	return p
}

// worldFromTree rebuilds a world from the mailboxes found on disk, so that
// Mutate can deliver new mail to an existing corpus. Display names are
// derived from the mailbox names since the tree does not record them.
func worldFromTree(r *rand.Rand, users []userDir) *world {
	w := &world{byDomain: make(map[string][]*person)}
	for _, u := range users {
		words := strings.FieldsFunc(u.user, func(c rune) bool { return c == '.' || c == '_' || c == '-' })
		for i, s := range words {
			rs := []rune(s)
			rs[0] = unicode.ToUpper(rs[0])
			words[i] = string(rs)
		}
		p := newLocal(r, u.domain, u.user, strings.Join(words, " "))
		if _, ok := w.byDomain[u.domain]; !ok {
			w.domains = append(w.domains, u.domain)
		}
		w.byDomain[u.domain] = append(w.byDomain[u.domain], p)
		w.locals = append(w.locals, p)
	}
	w.addExternal(r)
	w.addLists(r)
	return w
}

func (w *world) addExternal(r *rand.Rand) {
	for i := range 150 {
		f := firstNames[r.IntN(len(firstNames))]
		l := lastNames[r.IntN(len(lastNames))]
		dom := externalDomains[r.IntN(len(externalDomains))]
		w.external = append(w.external, &person{
			display: f[0] + " " + l[0],
			addr:    fmt.Sprintf("%s.%s%d@%s", f[1], l[1], i, dom),
			domain:  dom,
			zone:    zones[r.IntN(len(zones))],
			mailer:  mailers[r.IntN(len(mailers))],
			sig:     fmt.Sprintf("-- \n%s\n", f[0]+" "+l[0]),
		})
	}
}

// addLists creates per domain an "all" list and a few team lists.
func (w *world) addLists(r *rand.Rand) {
	for _, dom := range w.domains {
		users := w.byDomain[dom]
		if len(users) < 2 {
			continue
		}
		w.lists = append(w.lists, &mailingList{addr: "all@" + dom, name: "All staff", members: users})
		for t, team := range []string{"engineering", "sales", "ops"} {
			n := min(len(users), 3+r.IntN(10))
			perm := r.Perm(len(users))
			m := make([]*person, 0, n)
			for _, i := range perm[:n] {
				m = append(m, users[i])
			}
			w.lists = append(w.lists, &mailingList{addr: team + "@" + dom, name: []string{"Engineering", "Sales", "Operations"}[t], members: m})
		}
	}
}
