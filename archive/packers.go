package archive

import "sync"

// packerPool hands out open packs to the goroutines that save blobs. Each
// open pack is used by one goroutine at a time, so encrypting and writing
// blobs into packs runs on all cores at once instead of under one lock;
// max bounds how many packs of one type are open (each is a temporary
// file and a small buffer).
type packerPool struct {
	mu   sync.Mutex
	cond sync.Cond
	idle []*packBuilder
	open int // idle + in use
	max  int
}

func newPackerPool(max int) *packerPool {
	p := &packerPool{max: max}
	p.cond.L = &p.mu
	return p
}

// get returns an idle pack, or nil when the caller should start a new one
// (it then counts as open), waiting while max packs are in use.
func (pp *packerPool) get() *packBuilder {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for len(pp.idle) == 0 && pp.open >= pp.max {
		pp.cond.Wait()
	}
	if n := len(pp.idle); n > 0 {
		p := pp.idle[n-1]
		pp.idle = pp.idle[:n-1]
		return p
	}
	pp.open++
	return nil
}

// put returns a pack that has room left.
func (pp *packerPool) put(p *packBuilder) {
	pp.mu.Lock()
	pp.idle = append(pp.idle, p)
	pp.mu.Unlock()
	pp.cond.Signal()
}

// retire says that a pack taken with get is no longer open (it is full and
// on its way to storage, or could not be started).
func (pp *packerPool) retire() {
	pp.mu.Lock()
	pp.open--
	pp.mu.Unlock()
	pp.cond.Signal()
}

// drain takes every idle pack out of the pool; with no saves in flight,
// that is every open pack.
func (pp *packerPool) drain() []*packBuilder {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	out := pp.idle
	pp.idle = nil
	pp.open -= len(out)
	return out
}
