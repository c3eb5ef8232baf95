package imapd

import "github.com/emersion/go-imap/v2"

// SEARCHRES (RFC 5182): SEARCH RETURN (SAVE ...) keeps its result, as
// UIDs, for "$" in later commands of the same selection (a new SELECT or
// EXAMINE starts with none). With MIN or MAX and neither ALL nor COUNT only
// those messages are kept (section 2.1); expunged ones drop out, since
// "$" is resolved against the mailbox's UIDs when used.

// saveResult keeps a SEARCH result for "$".
func (s *session) saveResult(options *imap.SearchOptions, all imap.UIDSet, first, last imap.UID) {
	if (options.ReturnMin || options.ReturnMax) && !options.ReturnAll && !options.ReturnCount {
		var saved imap.UIDSet
		if options.ReturnMin && first != 0 {
			saved.AddNum(first)
		}
		if options.ReturnMax && last != 0 {
			saved.AddNum(last)
		}
		s.sel.searchRes = saved
		return
	}
	s.sel.searchRes = append(imap.UIDSet{}, all...)
}

// savedSet returns the saved result for "$", and any other set as it is.
func (s *session) savedSet(numSet imap.NumSet) imap.NumSet {
	if imap.IsSearchRes(numSet) {
		return append(imap.UIDSet{}, s.sel.searchRes...)
	}
	return numSet
}
