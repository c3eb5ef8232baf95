//go:build !linux

package hangup

// peerClosed: POLLRDHUP is Linux's; elsewhere a hang-up is noticed when
// the session next reads the connection, as before.
func peerClosed(fd uintptr) bool { return false }
