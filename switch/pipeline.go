package vswitch

import (
	"github.com/vswitch/vswitch/switch/header"
)

// pipe is a worker's per-batch pipeline state: the parsed headers of every
// packet, what the stages decided, and the per-output-port selections.
// Stages are plain functions over a batch and a pipe. Each walks the live
// list (the packets still in flight), counts what it drops in drops by
// reason, and keeps the survivors.
type pipe struct {
	parsed [BatchSize]header.Parsed
	perr   [BatchSize]header.ParseErr // kept for the stages that need L3/L4
	vlan   [BatchSize]uint16          // the VLAN each packet is in
	tci    [BatchSize]uint16          // PCP bits to keep when tagging
	routed [BatchSize]bool            // the router sent it into br: no learning, no hairpin check
	br     [BatchSize]*Bridge         // the bridge the L2 stage delivers in
	live   [BatchSize]uint16
	nlive  int
	drops  dropTally
	// untagged says every packet is untagged in VLAN 0 and no stage can
	// change that (a plain bridge): no egress tagging to do.
	untagged bool

	// Per output port, the packets of the current batch going there.
	sel     [MaxPorts][BatchSize]uint16
	nsel    [MaxPorts]uint16
	touched [MaxPorts]uint16
	nouch   int

	scratch [HeadRoom + HeadLen]byte
	f       fpipe // the filter and NAT stages' gathered packets

	rmemo routeMemo // the batch's last routed destination (stageL3)

	// hold keeps packets while their next hop resolves; nil in a trace.
	hold *holdQ

	// Rate limits of what the router makes: per-second buckets.
	tokSec              uint32
	icmpTok, resolveTok int

	// dry is set for a trace: stages record decisions and change no shared
	// table (the packet and this pipe are the trace's own).
	dry bool
	// tracing is set while some packets of the batch are traced (a dry
	// run, or a live capture on the input port): traces[i] records packet
	// i's decisions, nil for the ones not traced.
	tracing bool
	traces  [BatchSize]*Trace
}

func (p *pipe) drop(i int, r DropReason, stage string) {
	p.drops.add(r, 1)
	if t := p.tr(i); t != nil {
		t.at(stage).s("drop: ").s(r.String())
		t.dropped(r)
	}
}

// blockOut notes, if packet i is traced, that port's filter dropped it:
// it does not leave by port.
func (p *pipe) blockOut(i int, port uint16) {
	if t := p.tr(i); t != nil {
		t.block(port)
	}
}

func (p *pipe) add(port uint16, i uint16) {
	n := p.nsel[port]
	if n == 0 {
		p.touched[p.nouch] = port
		p.nouch++
	}
	p.sel[port][n&(BatchSize-1)] = i
	p.nsel[port] = n + 1
}

// stageClassify parses every packet of b once and puts it in its VLAN by
// the input port's VLAN mode. It starts the live list. With l2 set no
// stage will look past the VLAN tags (no filter anywhere, no router on the
// bridge), so only the Ethernet header is parsed, except for traced packets.
func stageClassify(p *pipe, in *portEntry, b *Batch, l2 bool) {
	n := 0
	untagged := l2
	for i := 0; i < b.N; i++ {
		pkt := &b.Pkts[i]
		ph := &p.parsed[i]
		var e header.ParseErr
		if l2 && p.tr(i) == nil {
			e = header.ParseL2(pkt.HeadBytes(), ph)
		} else {
			e = header.Parse(pkt.HeadBytes(), pkt.Len, ph)
		}
		p.perr[i] = e
		if e != header.ParseOK && ph.L3 == 0 { // not even the L2 header
			p.drop(i, DropRunt, "classify")
			continue
		}
		vid, ok := in.vlan.classify(ph.Tagged, ph.VLAN)
		if !ok {
			p.drop(i, DropVLANIngress, "classify")
			continue
		}
		p.vlan[i], p.tci[i] = vid, uint16(ph.PCP)<<13
		p.routed[i], p.br[i] = false, in.bridge
		untagged = untagged && !ph.Tagged && vid == 0
		if t := p.tr(i); t != nil {
			traceVLAN(t, ph, vid)
		}
		p.live[n] = uint16(i)
		n++
	}
	p.nlive, p.untagged = n, untagged
}

// stageL2 learns source MACs in (VLAN, MAC) and selects output ports: the
// learned port for a known unicast destination, otherwise every other
// member carrying the VLAN.
//
// A burst usually holds one conversation: the last source learned and the
// last destination looked up are remembered for the batch, so a run of
// frames between the same two MACs costs one FDB probe each way. Any
// learning in between forgets the lookup (it may have taught it).
func stageL2(p *pipe, c *config, in *portEntry, b *Batch, now uint32) {
	var learned, looked fdbMemo
	for _, i := range p.live[:p.nlive] {
		pkt := &b.Pkts[i]
		h := pkt.HeadBytes()
		dst, src := MAC48(h[0:6]), MAC48(h[6:12])
		vid := p.vlan[i]
		br, from := p.br[i], in.ID
		if p.routed[i] {
			from = MaxPorts // routed frames may leave by their input port
		} else {
			if src&(1<<40) != 0 || src == 0 {
				p.drop(int(i), DropInvalidSrcMAC, "l2")
				continue
			}
			if !p.dry && !learned.is(br, vid, src) {
				br.FDB.Learn(vid, src, in.ID, now)
				learned.set(br, vid, src, 0, false)
				looked = fdbMemo{}
			}
		}
		if dst&(1<<40) == 0 { // unicast
			if !looked.is(br, vid, dst) {
				out, ok := br.FDB.Lookup(vid, dst)
				looked.set(br, vid, dst, out, ok)
			}
			if out, ok := looked.port, looked.ok; ok {
				if out == from {
					p.drop(int(i), DropHairpin, "l2")
					continue
				}
				if pe := c.ports[out]; pe != nil && pe.vlan.allowed(vid) {
					if t := p.tr(int(i)); t != nil {
						t.at("l2").s("fdb hit: ").s(pe.Name)
					}
					p.add(out, i)
					continue
				}
			}
		}
		k := 0
		for _, m := range br.members {
			if m != from && c.ports[m].vlan.allowed(vid) {
				p.add(m, i)
				k++
			}
		}
		if k == 0 {
			p.drop(int(i), DropNoOutput, "l2")
		} else if t := p.tr(int(i)); t != nil {
			t.add("l2", "flood in vlan")
		}
	}
}

// stageEgressVLAN tags or untags the packets going out of port out as its
// VLAN mode says. It runs once per output port right before its transmit,
// so a frame flooded to access and trunk ports is fixed up for each.
func stageEgressVLAN(p *pipe, out *portEntry, b *Batch, sel []uint16) {
	for _, i := range sel {
		vid := p.vlan[i&(BatchSize-1)]
		b.Pkts[i&(BatchSize-1)].setTag(out.vlan.egressTagged(vid), p.tci[i&(BatchSize-1)]|vid)
	}
}

// fdbMemo is one FDB answer remembered within a batch.
type fdbMemo struct {
	br   *Bridge
	key  uint64
	port uint16
	ok   bool
}

func (m *fdbMemo) is(br *Bridge, vid uint16, mac uint64) bool {
	return m.br == br && m.key == fdbKey(vid, mac)
}

func (m *fdbMemo) set(br *Bridge, vid uint16, mac uint64, port uint16, ok bool) {
	*m = fdbMemo{br: br, key: fdbKey(vid, mac), port: port, ok: ok}
}
