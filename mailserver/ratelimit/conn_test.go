package ratelimit

import (
	"net"
	"testing"
)

func TestReleaseOnCloseReleasesOnce(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	n := 0
	c := ReleaseOnClose(a, func() { n++ })
	c.Close()
	c.Close()
	if n != 1 {
		t.Fatalf("release called %d times, want 1", n)
	}
}

func TestRemoteIP(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 25}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25}, "2001:db8::1"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "/run/x.sock"},
	} {
		if got := RemoteIP(tc.addr); got != tc.want {
			t.Errorf("RemoteIP(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
