package archive

// bufferPool keeps byte buffers for reuse between blobs, in three classes:
// up to nSmall buffers of exactly minPooledBuffer (64 KiB) for smaller
// requests, as many of exactly smallCap bytes for requests from 64 KiB up
// to that, and up to nLarge larger ones. Small requests have a class of
// their own: served from the smallCap class they pinned a smallCap buffer
// each (8 MB more peak memory in a backup of small new messages), and
// left to plain allocation, the read buffer and compressed copy of every
// small message were most of the bytes a backup of a million of them
// allocated, and so what set how often the collector ran (at GOGC=25, a
// tenth of that backup's CPU time: BenchmarkBackupSmallMessages). Unlike a sync.Pool it is not emptied by garbage
// collections: at the batch commands' GOGC=25 a backup collected every few
// megabytes, so a sync.Pool of read buffers was refilled by allocation
// after nearly every cycle, and the compression output — a fresh buffer
// per blob — was 57 % of all bytes a backup allocated. With both kept
// here the 2.4 GB corpus backup allocates a fraction of that and runs
// fewer collections (docs/PERFORMANCE.md). What it keeps is bounded: the
// buffers the same number of concurrent users would hold anyway.
type bufferPool struct {
	smallCap           int
	tiny, small, large chan []byte
}

const minPooledBuffer = 64 << 10

func newBufferPool(smallCap, nSmall, nLarge int) *bufferPool {
	return &bufferPool{smallCap: smallCap, tiny: make(chan []byte, nSmall), small: make(chan []byte, nSmall), large: make(chan []byte, nLarge)}
}

// get returns a buffer of length n.
func (p *bufferPool) get(n int) []byte {
	if n < minPooledBuffer {
		select {
		case b := <-p.tiny:
			return b[:n]
		default:
			return make([]byte, n, minPooledBuffer)
		}
	}
	if n <= p.smallCap {
		select {
		case b := <-p.small:
			return b[:n]
		default:
			return make([]byte, n, p.smallCap)
		}
	}
	select {
	case b := <-p.large:
		if cap(b) >= n {
			return b[:n]
		}
		// Too small for this one: drop it, the new one takes its place.
	default:
	}
	return make([]byte, n)
}

// put gives b back for reuse; b must not be used after.
func (p *bufferPool) put(b []byte) {
	c := p.small
	switch {
	case cap(b) == minPooledBuffer:
		c = p.tiny
	case cap(b) == p.smallCap:
	case cap(b) > p.smallCap:
		c = p.large
	default:
		return // not one of ours
	}
	select {
	case c <- b[:0]:
	default:
	}
}
