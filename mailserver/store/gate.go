package store

import (
	"context"
	"sync"
)

// gate lets writers in unless paused; pause waits for writers in flight.
type gate struct {
	mu       sync.Mutex
	inflight int
	paused   int
	waiting  int           // writers blocked by a pause
	resumed  chan struct{} // closed when paused drops to 0
	drained  chan struct{} // closed when inflight drops to 0
}

func (g *gate) enter(ctx context.Context) error {
	g.mu.Lock()
	for g.paused > 0 {
		ch := g.resumed
		g.waiting++
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			g.mu.Lock()
			g.waiting--
			g.mu.Unlock()
			return ctx.Err()
		case <-ch:
		}
		g.mu.Lock()
		g.waiting--
	}
	g.inflight++
	g.mu.Unlock()
	return nil
}

func (g *gate) leave() {
	g.mu.Lock()
	g.inflight--
	if g.inflight == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
	g.mu.Unlock()
}

func (g *gate) pause(ctx context.Context) (func(), error) {
	g.mu.Lock()
	g.paused++
	if g.paused == 1 {
		g.resumed = make(chan struct{})
	}
	var once sync.Once
	resume := func() {
		once.Do(func() {
			g.mu.Lock()
			g.paused--
			if g.paused == 0 {
				close(g.resumed)
			}
			g.mu.Unlock()
		})
	}
	for g.inflight > 0 {
		if g.drained == nil {
			g.drained = make(chan struct{})
		}
		ch := g.drained
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			resume()
			return nil, ctx.Err()
		case <-ch:
		}
		g.mu.Lock()
	}
	g.mu.Unlock()
	return resume, nil
}
