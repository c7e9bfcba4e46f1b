package vswitch

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/hw"
	"github.com/vswitch/vswitch/nat"
	"github.com/vswitch/vswitch/virtio"
)

// Worker is one polling loop, locked to an OS thread. It owns the queues
// assigned to it and preallocates everything a batch needs.
type Worker struct {
	id    int
	cpu   int
	sw    *Switch
	epoch atomic.Uint64 // odd while inside a batch; see Switch.Quiesce
	tally workerTally
	pub   workerPublished
	// solo: the only worker, so no other one feeds a guest's receive
	// queue and the queue locks (two atomic fences each) are skipped.
	solo bool

	batch Batch
	// Receive chains taken for the frames of the batch in flight, and
	// which chains each frame uses (several with MRG_RXBUF).
	dst  [4 * BatchSize]rxChain
	nd   int
	out  [4 * BatchSize]rxFrame // a frame segmented in software is several
	nout int
	// resume is the segment of the first frame to place when a transmit
	// goes on after the chain array filled up; segHdr holds the headers
	// of the segment being copied.
	resume int
	segHdr [HeadLen]byte
	pipe   pipe

	// The queues this worker polls, rebuilt when the config changes.
	cfg     *config
	sources []source
	cur     *portEntry // input port of the batch in flight, for fault recovery
	curOut  *portEntry
	ctw     *nat.Worker // this worker's handle on the conntrack table, if any

	// Queues published this poll whose interrupt checks wait for one fence
	// at its end (notify.go).
	pending  [maxPendingNotify]pendingNotify
	npending int
}

// rxChain is a guest receive chain taken for a frame of a batch.
type rxChain struct {
	head    uint16
	nseg    int
	room    int
	written uint32 // set by copyOut: what the guest gets back in the used entry
	segs    [virtio.MaxSegs][]byte
}

// rxFrame is a frame of a batch and the chains it goes into.
type rxFrame struct {
	pkt, first, n uint16
	seg           int32 // segment of a frame segmented in software
	whole         bool  // the frame itself, not a segment
}

type source struct {
	port *portEntry
	q    int
}

func newWorker(s *Switch, id int) *Worker {
	w := &Worker{id: id, cpu: -1, sw: s}
	w.pipe.hold = newHoldQ()
	return w
}

func (w *Worker) lockRx(mu *sync.Mutex) {
	if !w.solo {
		mu.Lock()
	}
}

func (w *Worker) unlockRx(mu *sync.Mutex) {
	if !w.solo {
		mu.Unlock()
	}
}

// ID is the worker's index; ports use it to pick a transmit queue.
func (w *Worker) ID() int { return w.id }

func (w *Worker) run() {
	defer w.sw.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if w.cpu >= 0 {
		var set unix.CPUSet
		set.Set(w.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			w.sw.log.WithError(err).WithField("cpu", w.cpu).Warn("cannot pin worker")
		}
	}
	// A front-end can shrink a memory file under us; touching it is SIGBUS.
	// Make that a panic we recover from, stopping only the port involved.
	debug.SetPanicOnFault(true)
	for !w.loop() {
	}
	w.publish()
}

// loop polls until the switch stops (true) or a fault was recovered (false).
func (w *Worker) loop() (stopped bool) {
	defer func() {
		if r := recover(); r != nil {
			w.recoverFault(r)
			stopped = false
		}
	}()
	idle := 0
	var idleSince time.Time
	t := &w.tally
	last := hw.Cycles()
	for {
		w.epoch.Add(1) // odd: in a batch
		work := w.pollOnce()
		w.epoch.Add(1) // even: quiescent
		now := hw.Cycles()
		if t.polls++; t.polls%publishEvery == 0 {
			w.publish()
		}
		if work {
			t.busyPolls++
			t.busy += now - last
			last = now
			idle = 0
			continue
		}
		t.idle += now - last
		last = now
		idle++
		if idle&1023 == 0 {
			select {
			case <-w.sw.stop:
				return true
			default:
			}
		}
		if w.sw.opts.Busy || idle&63 != 0 {
			continue
		}
		// Adaptive polling: keep spinning through the short gaps of a busy
		// front-end (a sleep there costs a round trip), then back off to
		// short sleeps so guests sharing the CPU get it.
		wall := time.Now()
		if idle == 64 {
			idleSince = wall
		}
		quiet := wall.Sub(idleSince)
		if quiet < spinWindow {
			continue
		}
		w.publish()
		if quiet < 50*time.Millisecond {
			time.Sleep(50 * time.Microsecond)
		} else {
			time.Sleep(time.Millisecond)
		}
		last = hw.Cycles() // sleeping is not polling
		select {
		case <-w.sw.stop:
			return true
		default:
		}
	}
}

// spinWindow is how long an adaptive worker spins after its last packet.
const spinWindow = 200 * time.Microsecond

func (w *Worker) recoverFault(r any) {
	w.notifyAfterFault(w.cur, w.curOut) // still inside the batch's epoch
	if w.epoch.Load()&1 == 1 {
		w.epoch.Add(1)
	}
	log := w.sw.log.WithFields(logrus.Fields{"worker": w.id, "panic": r})
	for _, pe := range []*portEntry{w.cur, w.curOut} {
		if pe == nil {
			continue
		}
		pe.Counters.Drops[DropPortFault].Add(1)
		if f, ok := pe.Port.(interface{ Fault(reason any) }); ok {
			f.Fault(r)
		}
		log = log.WithField("port_"+pe.Name, "stopped")
	}
	log.Error("data plane fault: stopped the ports involved, others go on")
	w.cur, w.curOut = nil, nil
	// The batch cut short left its selections on the pipe (the next batch
	// would send them again) and, if traced, its live trace, which
	// livePublish did not take off: later packets must not record into
	// its records (they stay unpublished).
	p := &w.pipe
	for _, id := range p.touched[:p.nouch] {
		p.nsel[id] = 0
	}
	p.nouch = 0
	p.drops = dropTally{}
	p.tracing = false
	p.traces = [BatchSize]*Trace{}
}

// pollOnce takes one batch from each assigned queue.
func (w *Worker) pollOnce() bool {
	c := w.sw.cfg.Load()
	if c != w.cfg {
		w.rebuild(c)
	}
	work := false
	if w.pipe.hold.nhops > 0 {
		work = w.serviceHold(c)
	}
	for i := range w.sources {
		src := &w.sources[i]
		b := &w.batch
		b.N = 0
		b.InPort, b.InQueue = src.port.ID, src.q
		w.cur = src.port
		if src.port.Port.Receive(w, src.q, b, src.port.Counters) == 0 {
			continue
		}
		w.tally.packets += uint64(b.N)
		w.tally.batches++
		work = true
		w.forward(src.port, b)
		src.port.Port.Release(w, b)
	}
	w.cur = nil
	if w.pipe.hold.nprobe > 0 {
		w.sendProbes(c)
	}
	w.notifyPending()
	w.cur, w.curOut = nil, nil
	return work
}

// rebuild recomputes the worker's share of the queues: queue q of port p
// goes to worker (p+q) mod workers.
func (w *Worker) rebuild(c *config) {
	w.cfg = c
	if c.ct != nil && (w.ctw == nil || w.ctw.Table() != c.ct) {
		w.ctw = c.ct.NewWorker()
	}
	w.sources = w.sources[:0]
	n := len(w.sw.workers)
	for _, pe := range c.ports {
		if pe == nil {
			continue
		}
		for q := 0; q < pe.Port.QueuePairs(); q++ {
			if (int(pe.ID)+q)%n == w.id {
				w.sources = append(w.sources, source{port: pe, q: q})
			}
		}
	}
}

// forward runs the pipeline stages over b and transmits per output port.
func (w *Worker) forward(in *portEntry, b *Batch) {
	if br := in.bridge; br.Xconnect {
		w.xconnect(in, br, b)
		return
	}
	p := &w.pipe
	c := w.cfg
	now := w.sw.clock.Load()
	// A live trace costs one atomic load per batch when not armed.
	var first, traced int
	lt := in.live.p.Load()
	if lt != nil {
		if first, traced = lt.claim(b.N); traced > 0 {
			w.liveStart(lt, first, traced, b)
		}
	}
	st := &w.tally.stage
	st[StageClassify] += uint64(b.N)
	stageClassify(p, in, b, (c.filt == nil || c.filt.none) && len(in.bridge.rifs) == 0)
	st[StageFilterIn] += uint64(p.nlive)
	stageFilterIn(p, w, c, in, b, now)
	st[StageNAT] += uint64(p.nlive)
	stageNAT(p, w, in, b, now)
	st[StageL3] += uint64(p.nlive)
	stageL3(p, in, b, now, &w.sw.neigh)
	st[StageL2] += uint64(p.nlive)
	stageL2(p, c, in, b, now)
	if traced > 0 {
		// The traces stay on through the output ports' filters, and are
		// published before the rejects those queued go through.
		w.liveOutputs(lt, first, traced, c)
		w.output(in, b, c, now)
		w.livePublish(lt, first, traced)
	} else {
		w.output(in, b, c, now)
	}
	w.flushRejects(c)
}

// output counts the batch's drops on its input port, then filters, tags
// and transmits what the stages selected for each output port. The
// caller then flushes the rejects the filters queued (flushRejects).
func (w *Worker) output(in *portEntry, b *Batch, c *config, now uint32) {
	p := &w.pipe
	p.drops.flush(in.Counters)
	for _, id := range p.touched[:p.nouch] {
		n := p.nsel[id]
		p.nsel[id] = 0
		out := c.ports[id]
		if out == nil {
			in.Counters.Drops[DropPortDown].Add(uint64(n))
			continue
		}
		sel := stageFilterOut(p, w, c, out, b, p.sel[id][:n], now)
		p.drops.flush(out.Counters)
		if len(sel) == 0 {
			continue
		}
		if !p.untagged {
			stageEgressVLAN(p, out, b, sel)
		}
		w.tally.stage[StageOutput] += uint64(len(sel))
		w.curOut = out
		out.Port.Transmit(w, b, sel, out.Counters)
	}
	w.curOut = nil
	p.nouch = 0
}

// flushRejects sends the replies to packets that output ports' ingress
// rules rejected (queued by output), unless they are being sent.
func (w *Worker) flushRejects(c *config) {
	if q := &w.pipe.f.rej; q.b.N > 0 && !q.busy {
		w.sendRejects(c)
	}
}

// identity selects every packet of a batch, in order.
var identity = func() (s [BatchSize]uint16) {
	for i := range s {
		s[i] = uint16(i)
	}
	return s
}()

// xconnect sends the whole batch to the bridge's other member.
func (w *Worker) xconnect(in *portEntry, br *Bridge, b *Batch) {
	var peer *portEntry
	if m := br.members; len(m) == 2 {
		id := m[0]
		if id == in.ID {
			id = m[1]
		}
		peer = w.cfg.ports[id]
	}
	if peer == nil {
		in.Counters.Drops[DropNoOutput].Add(uint64(b.N))
		return
	}
	w.curOut = peer
	peer.Port.Transmit(w, b, identity[:b.N], peer.Counters)
	w.curOut = nil
}
