package imapd

import (
	"github.com/emersion/go-imap/v2"
)

// UnAppend removes the messages a MULTIAPPEND (RFC 3502) stored before one
// of its messages failed, so that the command appends all or none. Each
// message is stored (and fsynced) as it arrives, as a single APPEND is, so
// another session may see the first ones arrive and go again; a crash in
// the middle of the command keeps those stored before it.
func (s *session) UnAppend(name string, data []*imap.AppendData) error {
	folder, err := folderName(name)
	if err != nil {
		return err
	}
	uids := make([]uint32, 0, len(data))
	for _, d := range data {
		if d != nil {
			uids = append(uids, uint32(d.UID))
		}
	}
	return s.srv.store.Expunge(s.ctx(), s.acct, folder, uids)
}
