package nat

import (
	"encoding/binary"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/switch/header"
)

const benchBatch = 64

// cpuClock measures the benchmark thread's CPU time, which a machine shared
// with many busy processes inflates far less than wall time.
type cpuClock struct{ start int64 }

func threadCPU() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func startCPU(b *testing.B) *cpuClock {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	b.ResetTimer()
	return &cpuClock{start: threadCPU()}
}

func (c *cpuClock) report(b *testing.B, per int, unit string) {
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(per), unit)
	b.ReportMetric(float64(threadCPU()-c.start)/float64(per), "cpu-"+unit)
}

// udpFrames makes n copies of a UDP frame from 10.(i)... to 8.8.8.8 with
// distinct source address and port per i (checksums not kept: lookup and
// insert benchmarks do not translate).
func udpFrames(tb testing.TB, n int, base uint32) ([][]byte, []header.Parsed) {
	tmpl := udpPkt(tb, "10.0.0.1", "8.8.8.8", 1, 53)
	frames := make([][]byte, n)
	ps := make([]header.Parsed, n)
	for i := range frames {
		frames[i] = patchUDP(append([]byte(nil), tmpl...), base+uint32(i))
		header.Parse(frames[i], len(frames[i]), &ps[i])
	}
	return frames, ps
}

// patchUDP makes frame b the i-th flow: source 10.x.y.z from i>>8, port
// 1024 + i&0xff (i < 2^32 / 256 distinct flows).
func patchUDP(b []byte, i uint32) []byte {
	binary.BigEndian.PutUint32(b[header.EthernetLen+12:], 10<<24|i>>8)
	binary.BigEndian.PutUint16(b[header.EthernetLen+20:], uint16(1024+i&0xff))
	return b
}

func fillTable(b *testing.B, t *Table, n int) {
	w := t.NewWorker()
	frames, ps := udpFrames(b, benchBatch, 0)
	res := make([]Result, benchBatch)
	for base := 0; base < n; base += benchBatch {
		for i := range frames {
			patchUDP(frames[i], uint32(base+i))
			header.Parse(frames[i], len(frames[i]), &ps[i])
		}
		w.Lookup(frames, ps, 0, 1000, res)
		for i := range res {
			res[i].Admit = true
		}
		w.Commit(frames, ps, res, nil, 1000)
	}
	if t.Len() != n {
		b.Fatalf("filled %d of %d: %v", t.Len(), n, w.Counters)
	}
}

// BenchmarkLookup1M looks up established connections in a table holding a
// million (random flows, batches of 64, including the per-batch sweep).
func BenchmarkLookup1M(b *testing.B) {
	const n = 1 << 20
	t, err := New(Config{Capacity: n, Timeouts: Timeouts{UDP: 1 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	fillTable(b, t, n)
	const probes = 1 << 14
	frames, ps := udpFrames(b, probes, 0)
	var x uint32 = 12345
	for i := range frames {
		x = x*1664525 + 1013904223
		patchUDP(frames[i], x%n)
		header.Parse(frames[i], len(frames[i]), &ps[i])
	}
	w := t.NewWorker()
	res := make([]Result, benchBatch)
	b.ReportAllocs()
	clk := startCPU(b)
	for i := 0; i < b.N; i++ {
		o := (i * benchBatch) % probes
		w.Lookup(frames[o:o+benchBatch], ps[o:o+benchBatch], 0, 1001, res)
	}
	clk.report(b, b.N*benchBatch, "ns/packet")
	if res[0].Conn == 0 {
		b.Fatal("miss")
	}
}

// BenchmarkInsert commits new connections (lookup miss, then commit) into a
// table that holds up to a million, flushing it when full.
func BenchmarkInsert(b *testing.B) {
	const n = 1 << 20
	t, err := New(Config{Capacity: n})
	if err != nil {
		b.Fatal(err)
	}
	w := t.NewWorker()
	frames, ps := udpFrames(b, benchBatch, 0)
	res := make([]Result, benchBatch)
	next := uint32(0)
	b.ReportAllocs()
	clk := startCPU(b)
	for i := 0; i < b.N; i++ {
		if t.Len()+benchBatch > n {
			b.StopTimer()
			t.Flush()
			b.StartTimer()
		}
		for j := range frames {
			patchUDP(frames[j], next)
			next++
			header.Parse(frames[j], len(frames[j]), &ps[j])
		}
		w.Lookup(frames, ps, 0, 1000, res)
		for j := range res {
			res[j].Admit = true
		}
		w.Commit(frames, ps, res, nil, 1000)
	}
	clk.report(b, b.N*benchBatch, "ns/conn")
}

// BenchmarkNAT is lookup plus translation of SNAT'd TCP packets (64
// established connections), against BenchmarkLookupOnly on the same
// packets: the difference is the translation.
func BenchmarkNAT(b *testing.B)        { benchNAT(b, true) }
func BenchmarkLookupOnly(b *testing.B) { benchNAT(b, false) }

func benchNAT(b *testing.B, translate bool) {
	r := newRig(b, Config{Capacity: 1 << 16})
	rs, err := Compile(r.tab, "nat", exampleRules)
	if err != nil {
		b.Fatal(err)
	}
	r.rules = rs
	orig := make([][]byte, benchBatch)
	for i := range orig {
		sp := uint16(2000 + i)
		r.send(tcpPkt(b, "10.10.0.5", "8.8.8.8", sp, 443, fSyn, 1, 0))
		syn := tcpPkt(b, "10.10.0.5", "8.8.8.8", sp, 443, fSyn, 1, 0)
		r.send(syn)
		_, _, ep, _ := addrs(b, syn)
		r.send(tcpPkt(b, "8.8.8.8", "10.20.0.1", 443, ep, fSyn|fAck, 1, 2))
		orig[i] = tcpPkt(b, "10.10.0.5", "8.8.8.8", sp, 443, fAck, 2, 2)
	}
	frames := make([][]byte, benchBatch)
	ps := make([]header.Parsed, benchBatch)
	for i := range frames {
		frames[i] = append([]byte(nil), orig[i]...)
		header.Parse(frames[i], len(frames[i]), &ps[i])
	}
	res := make([]Result, benchBatch)
	b.ReportAllocs()
	clk := startCPU(b)
	for i := 0; i < b.N; i++ {
		for j := range frames {
			copy(frames[j], orig[j])
		}
		r.w.Lookup(frames, ps, 0, r.now, res)
		if translate {
			r.w.Translate(frames, ps, res)
		}
	}
	clk.report(b, b.N*benchBatch, "ns/packet")
	if res[0].State&StateSNAT == 0 || res[0].Reason != 0 {
		b.Fatalf("not translated: %s %v", stateString(res[0].State), res[0].Reason)
	}
	if translate {
		checkSums(b, frames[0])
	}
}

// TestConcurrentWorkers runs two workers on one table over the same flows
// from both ends, with expiry, under -race.
func TestConcurrentWorkers(t *testing.T) {
	tab, err := New(Config{Capacity: 200, Window: WindowLoose})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compile(tab, "nat", exampleRules)
	if err != nil {
		t.Fatal(err)
	}
	fwd, _ := udpFrames(t, 256, 0)
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := tab.NewWorker()
			frames := make([][]byte, benchBatch)
			ps := make([]header.Parsed, benchBatch)
			res := make([]Result, benchBatch)
			for round := range 300 {
				for j := range frames {
					src := fwd[(round*7+j*3+g)%len(fwd)]
					frames[j] = append(frames[j][:0], src...)
					if (round+j)%2 == 1 { // the other direction
						copy(frames[j][header.EthernetLen+12:], src[header.EthernetLen+16:header.EthernetLen+20])
						copy(frames[j][header.EthernetLen+16:], src[header.EthernetLen+12:header.EthernetLen+16])
						copy(frames[j][header.EthernetLen+20:], src[header.EthernetLen+22:header.EthernetLen+24])
						copy(frames[j][header.EthernetLen+22:], src[header.EthernetLen+20:header.EthernetLen+22])
					}
					header.Parse(frames[j], len(frames[j]), &ps[j])
				}
				now := uint32(1000 + round/10)
				w.Lookup(frames, ps, 0, now, res)
				for j := range res {
					res[j].Admit = true
				}
				w.Commit(frames, ps, res, rs, now)
				w.Translate(frames, ps, res)
				// A worker reserves a slot before it checks the limit, so
				// a reader may see one reservation per worker in flight.
				if n := tab.Len(); n > 200+2 {
					t.Errorf("len %d", n)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := tab.Len(); n > 200 {
		t.Errorf("len %d after both workers stopped, capacity 200", n)
	}
}
