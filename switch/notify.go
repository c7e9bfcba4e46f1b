package vswitch

import (
	"github.com/vswitch/vswitch/internal/hw"
	"github.com/vswitch/vswitch/virtio"
)

// A poll publishes used entries on several queues (each input's transmit
// queue, each output's receive queue). Deciding whether the guest wants an
// interrupt needs a full fence between the used-index store and the read
// of its event index, and a fence waits for every store still in flight to
// guest memory. So queues only this worker touches publish with a release
// store, and the worker fences once at the end of the poll and checks them
// all (virtio's Publish/Notify).

// maxPendingNotify bounds the queues one poll defers; past it a queue
// fences and checks at once.
const maxPendingNotify = 64

type pendingNotify struct {
	split  *virtio.SplitQueue
	packed *virtio.PackedQueue
	port   *portEntry // whose queue it is: skipped if that port faults
}

// publishSplit publishes q's used entries. own says no other worker
// publishes on q, so its interrupt check may wait for the end of the poll.
func (w *Worker) publishSplit(q *virtio.SplitQueue, own bool) {
	if q.Publish() {
		w.deferNotify(pendingNotify{split: q}, own)
	}
}

// publishPacked is publishSplit for a packed queue.
func (w *Worker) publishPacked(q *virtio.PackedQueue, own bool) {
	if q.Publish() {
		w.deferNotify(pendingNotify{packed: q}, own)
	}
}

// deferNotify queues pn's check for the end of the poll, or makes it now
// (fenced) when the queue is shared or the list is full.
func (w *Worker) deferNotify(pn pendingNotify, own bool) {
	if !own || w.npending == maxPendingNotify {
		hw.Fence()
		pn.notify()
		return
	}
	// The queue is the output port's during a transmit, else the input's.
	pn.port = w.cur
	if w.curOut != nil {
		pn.port = w.curOut
	}
	w.pending[w.npending] = pn
	w.npending++
}

func (pn *pendingNotify) notify() {
	if pn.split != nil {
		pn.split.Notify()
	} else {
		pn.packed.Notify()
	}
}

// notifyPending fences once and makes the deferred interrupt checks.
func (w *Worker) notifyPending() {
	if w.npending == 0 {
		return
	}
	hw.Fence()
	for i := range w.pending[:w.npending] {
		w.pending[i].notify()
		w.pending[i] = pendingNotify{}
	}
	w.npending = 0
}

// notifyAfterFault makes the deferred checks of the ports that did not
// fault, so their guests do not wait for an interrupt that never comes.
func (w *Worker) notifyAfterFault(faulted ...*portEntry) {
	hw.Fence()
	for i := range w.pending[:w.npending] {
		pn := &w.pending[i]
		skip := false
		for _, f := range faulted {
			skip = skip || pn.port == f
		}
		if !skip {
			pn.notifyRecovering()
		}
		*pn = pendingNotify{}
	}
	w.npending = 0
}

// notifyRecovering is notify for a queue whose guest memory may fault too
// (it shrank under us as well): that loses only this interrupt.
func (pn *pendingNotify) notifyRecovering() {
	defer func() { recover() }()
	pn.notify()
}
