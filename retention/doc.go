// Package retention decides what a repository must keep and what may go,
// and says why. It holds policy only: it reads no repository and deletes
// nothing; package archive forgets and prunes, cmd/mailvault turns flags
// and configuration into policies.
//
// Snapshot retention (the keep-* policies of `mailvault forget`) follows
// restic's forget, bucket for bucket, as restic 0.14.0 does it (policy.go,
// apply.go), so that admins' restic habits and scripts carry over; the
// deliberate differences are listed on Policy and in `forget --help`.
//
// Legal holds (hold.go) select messages by custodian, by a query over the
// headers snapshots record (query.go) and by date; a snapshot holding a
// held message is kept with the reason "held by case NAME" (Options.Held),
// one more reason that no count overrides. Message retention and erasure
// (issue 12, sections 2 and 4) are to build on the same shape: a decision
// per item, Keep or not, with every reason that kept it.
package retention
