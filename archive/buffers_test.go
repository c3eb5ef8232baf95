package archive

import "testing"

// TestBufferPool: buffers given back are handed out again, in their
// class, without allocating; a large buffer too small for a request is
// replaced; what is not the pool's is not kept.
func TestBufferPool(t *testing.T) {
	const smallCap = 1 << 20
	p := newBufferPool(smallCap, 2, 1)
	tests := []struct {
		name string
		n    int
	}{{"tiny", 3000}, {"tiny class, full size", minPooledBuffer - 1}, {"small", minPooledBuffer}, {"small class, full size", smallCap}, {"large", 3 << 20}}
	for _, tt := range tests {
		p.put(p.get(tt.n))
		if a := testing.AllocsPerRun(100, func() {
			b := p.get(tt.n)
			if len(b) != tt.n {
				t.Fatalf("len %d, want %d", len(b), tt.n)
			}
			p.put(b)
		}); a != 0 {
			t.Errorf("%s: %.1f allocations per get and put, want 0", tt.name, a)
		}
	}
	if b := p.get(4 << 20); cap(b) < 4<<20 {
		t.Errorf("a large request got cap %d", cap(b))
	}
	p.put(p.get(minPooledBuffer - 1))
	p.put(make([]byte, 10))
	if len(p.small) != 1 || len(p.tiny) != 1 {
		t.Errorf("%d small and %d tiny buffers kept, want the pool's one of each", len(p.small), len(p.tiny))
	}
	// Full: more given back than it keeps are dropped.
	for range 5 {
		p.put(make([]byte, 0, smallCap))
	}
	if len(p.small) != cap(p.small) {
		t.Errorf("%d small buffers kept, want %d", len(p.small), cap(p.small))
	}
}
