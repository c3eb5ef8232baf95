package imapd

import (
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailvault/mailvault/mailserver/store"
)

// List answers LIST and LSUB (RFC 9051 section 6.3.9, RFC 5258
// LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE, RFC 3348
// CHILDREN). Maildir++ folders "A/B" may exist without "A": such a parent
// is listed as \NonExistent \HasChildren when a pattern matches it.
//
// A mailbox some of whose subscribed descendants no pattern matches is
// its subscribed children's stand-in: LIST (SUBSCRIBED RECURSIVEMATCH)
// returns it, subscribed or not, with CHILDINFO ("SUBSCRIBED") (RFC 5258
// section 3.5), and LSUB with "%" returns it flagged \Noselect when it is
// not subscribed itself (RFC 3501 section 6.3.9: "foo/bar" subscribed,
// "foo" not, LSUB "" "%" gives foo).
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if (len(patterns) == 0 || len(patterns) == 1 && patterns[0] == "") && !options.SelectSubscribed && !options.SelectSpecialUse {
		// RFC 9051 section 6.3.9: the hierarchy delimiter and root.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: store.Separator})
	}
	folders, err := s.srv.store.Folders(s.ctx(), s.acct)
	if err != nil {
		return err
	}
	subs, err := s.srv.subscriptions(s.acct)
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	for _, f := range folders {
		exists[f] = true
	}
	names := map[string]bool{}
	hasChildren := map[string]bool{}
	for _, f := range folders {
		names[f] = true
		for i := strings.LastIndexByte(f, store.Separator); i > 0; i = strings.LastIndexByte(f[:i], store.Separator) {
			names[f[:i]] = true
			hasChildren[f[:i]] = true
		}
	}
	matches := func(name string) bool {
		for _, p := range patterns {
			if p != "" && (imapserver.MatchList(name, store.Separator, ref, p) ||
				(name == store.Inbox && imapserver.MatchList(name, store.Separator, ref, strings.ToUpper(p)))) {
				return true
			}
		}
		return false
	}
	// subParent: the ancestors of subscribed names that no pattern
	// matches.
	subParent := map[string]bool{}
	if options.SelectSubscribed {
		for f := range subs {
			names[f] = true
			if matches(f) {
				continue
			}
			for i := strings.LastIndexByte(f, store.Separator); i > 0; i = strings.LastIndexByte(f[:i], store.Separator) {
				subParent[f[:i]] = true
				names[f[:i]] = true
			}
		}
	}
	lsubParents := w.LSub() && len(patterns) == 1 && strings.Contains(patterns[0], "%")
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Slice(sorted, func(i, j int) bool {
		if (sorted[i] == store.Inbox) != (sorted[j] == store.Inbox) {
			return sorted[i] == store.Inbox
		}
		return sorted[i] < sorted[j]
	})
	for _, name := range sorted {
		if !matches(name) {
			continue
		}
		subscribed := subs[name] || name == store.Inbox
		su := specialUseOf(name)
		childInfo := options.SelectRecursiveMatch && subParent[name]
		if options.SelectSubscribed && !subscribed {
			if lsubParents && subParent[name] {
				if err := w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: store.Separator, Mailbox: name}); err != nil {
					return err
				}
				continue
			}
			if !childInfo {
				continue
			}
		}
		if options.SelectSpecialUse && (su == "" || !exists[name]) {
			continue
		}
		data := &imap.ListData{Mailbox: name, Delim: store.Separator}
		if childInfo {
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if !exists[name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
		}
		if hasChildren[name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if su != "" && exists[name] {
			data.Attrs = append(data.Attrs, su)
		}
		if options.ReturnStatus != nil && exists[name] {
			st, err := s.status(name, options.ReturnStatus)
			if err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}
