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
// Message retention, legal holds and erasure (issue 12, sections 2 to 4)
// are to build on the same shape: a decision per item, Keep or not, with
// every reason that kept it, so that a hold can be one more reason that
// no count overrides.
package retention
