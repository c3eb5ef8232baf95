package imapd

import "time"

// matchWithin is WITHIN's OLDER and YOUNGER (RFC 5032): INTERNALDATE
// more than older seconds ago, and no more than younger seconds ago
// (0: not asked).
func matchWithin(internal time.Time, older, younger int64) bool {
	age := time.Since(internal)
	if older != 0 && age <= time.Duration(older)*time.Second {
		return false
	}
	if younger != 0 && age > time.Duration(younger)*time.Second {
		return false
	}
	return true
}
