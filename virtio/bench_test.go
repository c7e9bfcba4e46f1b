package virtio_test

import (
	"testing"

	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

// benchBatch is the burst the ring benchmarks move per iteration.
const benchBatch = 32

// benchSplit runs one batch per iteration over a 256-entry split ring of
// 64-byte descriptors: the fake driver makes benchBatch of them available,
// the engine takes them (readable for a dequeue, writable and filled for
// an enqueue), marks them used and publishes used.idx once.
func benchSplit(b *testing.B, writable bool) {
	g := virtiotest.NewGuest(b, guestSize)
	r := g.NewSplitRing(256)
	q := r.NewQueue(false, -1)
	buf := g.Alloc(256*64, 16)
	var flags uint16
	if writable {
		flags = virtio.DescFWrite
	}
	for i := uint16(0); i < 256; i++ {
		r.SetDesc(i, buf+uint64(i)*64, 64, flags, 0)
	}
	var frame [64]byte
	var segs [virtio.MaxSegs][]byte
	next := uint16(0)
	b.ReportAllocs()
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for i := 0; i < benchBatch; i++ {
			r.PushAvail(next)
			next = (next + 1) & 255
		}
		n, err := q.Avail()
		if err != nil || n != benchBatch {
			b.Fatalf("Avail: %d, %v", n, err)
		}
		for i := 0; i < n; i++ {
			head, nseg, total, cerr := q.Next(&segs, writable)
			if cerr != 0 || nseg != 1 {
				b.Fatalf("Next: %v", cerr)
			}
			var written uint32
			if writable {
				written = uint32(copy(segs[0], frame[:]))
			} else {
				_ = segs[0][total-1]
			}
			q.PutUsed(head, written)
		}
		q.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/pkt")
}

// BenchmarkSplitDequeue: the switch takes packets a guest sent (tx ring).
func BenchmarkSplitDequeue(b *testing.B) { benchSplit(b, false) }

// BenchmarkSplitEnqueue: the switch writes 64-byte frames into a guest's
// receive buffers (rx ring).
func BenchmarkSplitEnqueue(b *testing.B) { benchSplit(b, true) }

// benchPacked is benchSplit over a 256-entry packed ring.
func benchPacked(b *testing.B, writable bool) {
	g := virtiotest.NewGuest(b, guestSize)
	d := newPackedDriver(b, g, 256)
	q := d.queue(b, false, -1)
	buf := g.Alloc(256*64, 16)
	for i := uint16(0); i < 256; i++ {
		d.counts[i] = 1 // the driver's id table, filled before the clock runs
	}
	var frame [64]byte
	var segs [virtio.MaxSegs][]byte
	id := 0
	b.ReportAllocs()
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for i := 0; i < benchBatch; i++ {
			d.add(id, 0, virtiotest.Buf{Addr: buf + uint64(id)*64, Len: 64, Write: writable})
			id = (id + 1) & 255
		}
		n, err := q.Avail()
		if err != nil || n < benchBatch {
			b.Fatalf("Avail: %d, %v", n, err)
		}
		for i := 0; i < benchBatch; i++ {
			bid, nseg, total, cerr := q.Next(&segs, writable)
			if cerr != 0 || nseg != 1 {
				b.Fatalf("Next: %v", cerr)
			}
			var written uint32
			if writable {
				written = uint32(copy(segs[0], frame[:]))
			} else {
				_ = segs[0][total-1]
			}
			q.PutUsed(bid, written)
		}
		q.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/pkt")
}

// BenchmarkPackedDequeue: the switch takes packets a guest sent.
func BenchmarkPackedDequeue(b *testing.B) { benchPacked(b, false) }

// BenchmarkPackedEnqueue: the switch writes 64-byte frames into a guest's
// receive buffers.
func BenchmarkPackedEnqueue(b *testing.B) { benchPacked(b, true) }
