package hangup

import "golang.org/x/sys/unix"

// peerClosed reports whether the peer of the socket fd has closed its end:
// POLLRDHUP is set once its FIN has arrived, whether or not unread bytes
// (a pipelined command, TLS's close_notify) are queued before it, where a
// peeking read would see only the bytes; POLLHUP and POLLERR come with a
// reset. Like Dovecot, which ends a login whose client's input reaches
// EOF, a client that only shuts down its sending side counts as gone.
func peerClosed(fd uintptr) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
	}
}
