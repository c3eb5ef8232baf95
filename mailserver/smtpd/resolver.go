package smtpd

import (
	"context"
	"net"
	"strings"
	"sync"
)

// Resolver is the DNS the server uses for SPF, DKIM and DMARC. It is
// satisfied by *net.Resolver; tests inject StaticResolver so they never
// touch the network.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// StaticResolver answers from maps (names without trailing dot, any
// case); a missing name is NXDOMAIN. It is safe for concurrent use once
// filled.
type StaticResolver struct {
	mu  sync.RWMutex
	TXT map[string][]string
	MX  map[string][]*net.MX
	IP  map[string][]net.IPAddr
	PTR map[string][]string
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func key(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// SetTXT sets the TXT records of name.
func (r *StaticResolver) SetTXT(name string, txt ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.TXT == nil {
		r.TXT = map[string][]string{}
	}
	r.TXT[key(name)] = txt
}

func (r *StaticResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.TXT[key(name)]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (r *StaticResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.MX[key(name)]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (r *StaticResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.IP[key(host)]; ok {
		return v, nil
	}
	return nil, notFound(host)
}

func (r *StaticResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if v, ok := r.PTR[addr]; ok {
		return v, nil
	}
	return nil, notFound(addr)
}
