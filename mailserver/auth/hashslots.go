package auth

import (
	"context"
	"sync"
)

// hashSlots bounds the argon2id computations running at once
// (Options.MaxConcurrentHashes). It is a counting semaphore whose size can
// change while it is in use (SetMaxConcurrentHashes, on a server's
// SIGHUP), with waiters served in arrival order so that a flood of bad
// logins cannot starve an earlier one. golang.org/x/sync/semaphore has the
// order and the context but a fixed size, and a buffered channel (what
// this replaced) cannot be resized, hence this small type.
type hashSlots struct {
	mu      sync.Mutex
	limit   int
	inUse   int
	waiters []chan struct{} // closed when the place is handed to its waiter
}

func newHashSlots(limit int) *hashSlots { return &hashSlots{limit: max(1, limit)} }

// acquire takes a place, waiting in line until one is free or ctx ends.
// first reports that no other computation was running.
func (s *hashSlots) acquire(ctx context.Context) (first bool, err error) {
	s.mu.Lock()
	if s.inUse < s.limit && len(s.waiters) == 0 {
		s.inUse++
		first = s.inUse == 1
		s.mu.Unlock()
		return first, nil
	}
	ready := make(chan struct{})
	s.waiters = append(s.waiters, ready)
	s.mu.Unlock()
	select {
	case <-ready:
		// release or setLimit counted the place for us.
		s.mu.Lock()
		first = s.inUse == 1
		s.mu.Unlock()
		return first, nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		select {
		case <-ready:
			// Handed over just as ctx ended: give it to the next in line.
			s.inUse--
			s.grant()
		default:
			for i, w := range s.waiters {
				if w == ready {
					s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
					break
				}
			}
		}
		return false, ctx.Err()
	}
}

// release gives a place back; last reports that none is in use now.
func (s *hashSlots) release() (last bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse--
	s.grant()
	return s.inUse == 0
}

// setLimit changes the bound. A lower one takes effect as running
// computations end (none is interrupted); a higher one lets waiters in at
// once.
func (s *hashSlots) setLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = max(1, n)
	s.grant()
}

func (s *hashSlots) getLimit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

// grant hands free places to waiters in order; s.mu is held.
func (s *hashSlots) grant() {
	for s.inUse < s.limit && len(s.waiters) > 0 {
		s.inUse++
		close(s.waiters[0])
		s.waiters = s.waiters[1:]
	}
}
