package store

import (
	"context"
	"slices"
)

// Expunged answers QRESYNC's question (RFC 7162 sections 3.2.5.1 and
// 3.2.6): which UIDs of the folder were expunged after MODSEQ since. The
// list is complete unless the folder's UID index was rewritten after
// since (uidlist.go keeps the expunges since its last rewrite); then
// complete is false and the caller reports every UID below UIDNEXT that
// the folder lacks, which RFC 7162 section 3.2.10 allows (a VANISHED
// (EARLIER) may name UIDs the client never knew). UIDVALIDITY is returned
// so that the caller can tell the folder was not rebuilt meanwhile.
func (s *Store) Expunged(ctx context.Context, a Account, folder string, since uint64) (uids []uint32, complete bool, validity uint32, err error) {
	_, st, unlock, err := s.lockFolder(ctx, a, folder)
	if err != nil {
		return nil, false, 0, err
	}
	defer unlock()
	uids, complete = st.idx.expungedSince(since)
	slices.Sort(uids)
	return slices.Compact(uids), complete, st.idx.validity, nil
}
