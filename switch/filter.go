package vswitch

import (
	"net/netip"

	"github.com/vswitch/vswitch/acl"
	"github.com/vswitch/vswitch/nat"
	"github.com/vswitch/vswitch/switch/header"
	"github.com/vswitch/vswitch/switch/offload"
)

// Conntrack zones: a port's security groups track in the port's own zone
// (as OVN does per logical port), so a packet between two filtered ports
// is tracked once in each and never twice in one; a router's NAT tracks
// in the router's zone.
const (
	portZoneBase   = 1
	routerZoneBase = 2048
)

// DefaultConntrackSize is the connection table's capacity when Options
// leave it 0.
const DefaultConntrackSize = 1 << 16

// Port filter flags: what the compiled filter does for a port.
const (
	fOut   uint8 = 1 << iota // traffic from the guest is filtered (port security, egress ACL or groups)
	fIn                      // traffic to the guest is filtered (ingress ACL or groups)
	fState                   // the port has security groups: conntrack runs
)

// filter is the compiled filtering config of a config snapshot.
type filter struct {
	snap  *acl.Snapshot
	flags [MaxPorts]uint8
	none  bool // no port is filtered: stages past the VLAN tags may be skipped
}

// aclDrop and natDrop map the filter packages' reasons to the switch's.
var (
	aclDrop = [acl.NumDropReasons]DropReason{
		acl.DropACLDeny:             DropACLDeny,
		acl.DropACLReject:           DropACLReject,
		acl.DropSGIngress:           DropSGIngress,
		acl.DropSGEgress:            DropSGEgress,
		acl.DropCTInvalid:           DropCTInvalid,
		acl.DropSpoofedSourceMAC:    DropSpoofedSourceMAC,
		acl.DropSpoofedSourceIP:     DropSpoofedSourceIP,
		acl.DropSpoofedARPSenderMAC: DropSpoofedARPSenderMAC,
		acl.DropSpoofedARPSenderIP:  DropSpoofedARPSenderIP,
		acl.DropSpoofedNDTarget:     DropSpoofedNDTarget,
		acl.DropSpoofedNDLinkLayer:  DropSpoofedNDLinkLayer,
		acl.DropGuestRouterAdvert:   DropGuestRouterAdvert,
		acl.DropGuestDHCPServer:     DropGuestDHCPServer,
		acl.DropEtherType:           DropPortSecEtherType,
		acl.DropMalformed:           DropPortSecMalformed,
	}
	natDrop = [nat.NumReasons]DropReason{
		nat.ReasonInvalid:       DropCTInvalid,
		nat.ReasonFragment:      DropCTFragment,
		nat.ReasonTCPFlags:      DropCTTCPFlags,
		nat.ReasonTCPState:      DropCTTCPState,
		nat.ReasonTCPWindow:     DropCTTCPWindow,
		nat.ReasonICMPUnrelated: DropCTICMPUnrelated,
		nat.ReasonFull:          DropCTFull,
		nat.ReasonZoneFull:      DropCTZoneFull,
		nat.ReasonBucketFull:    DropCTBucketFull,
		nat.ReasonNoPort:        DropNATNoPort,
		nat.ReasonGone:          DropCTGone,
	}
)

// compileFilter builds c's filter from fc for the ports c has: entries
// naming ports that are not (yet) in the switch are left out, so the
// daemon may set the filter before or after adding ports.
func compileFilter(c *config, fc *acl.Config) (*filter, error) {
	f := &filter{}
	if fc == nil {
		f.none = true
		return f, nil
	}
	ids := map[string]uint16{}
	for _, pe := range c.ports {
		if pe != nil {
			ids[pe.Name] = pe.ID
		}
	}
	sub := acl.Config{SecurityGroups: fc.SecurityGroups}
	for _, p := range fc.Ports {
		id, ok := ids[p.Name]
		if !ok {
			continue
		}
		sub.Ports = append(sub.Ports, p)
		if p.PortSecurity != nil {
			f.flags[id] |= fOut
		}
		if len(p.SecurityGroups) > 0 {
			f.flags[id] |= fOut | fIn | fState
		}
	}
	for _, a := range fc.ACLs {
		id, ok := ids[a.Port]
		if !ok {
			continue
		}
		sub.ACLs = append(sub.ACLs, a)
		if a.Direction == "ingress" {
			f.flags[id] |= fIn
		} else {
			f.flags[id] |= fOut
		}
	}
	snap, err := acl.Compile(&sub, ids)
	if err != nil {
		return nil, err
	}
	f.snap = snap
	f.none = f.flags == [MaxPorts]uint8{}
	return f, nil
}

// stateful says some port of f has security groups.
func (f *filter) stateful() bool {
	for _, fl := range f.flags {
		if fl&fState != 0 {
			return true
		}
	}
	return false
}

// fpipe is the filter stages' gathered view of a batch: the packets a
// stage looks at, packed, with their batch index.
type fpipe struct {
	n      int
	idx    [BatchSize]uint16
	ps     [BatchSize]header.Parsed
	frames [BatchSize][]byte
	meta   [BatchSize]acl.Meta
	psd    [BatchSize]acl.DropReason
	ct     [BatchSize]acl.CTState
	v      [BatchSize]acl.Verdict
	res    [BatchSize]nat.Result
	cnt    acl.Counters // the acl package's own counts; the ports' counters are p.drops
	// cwhy (dry runs) is why Commit would refuse packet k's connection.
	cwhy [BatchSize]nat.Reason
	rej  rejectQ
}

// rejectQ holds the replies to packets that an ingress rule of their
// output port rejected. Each goes back through the pipeline as if that
// port's guest had sent it (skipping the port's own filters), so it
// reaches the sender however the packet came: bridged, or routed with
// the router's NAT undone.
type rejectQ struct {
	b    Batch
	port [BatchSize]uint16 // the port each reply comes from, in runs
	busy bool              // forwarding the replies: rejects made meanwhile get none
}

// ctState maps conntrack's bits to what the security groups read.
func ctState(s nat.CTState) acl.CTState {
	switch {
	case s&nat.StateInv != 0:
		return acl.CTInvalid
	case s&nat.StateRel != 0:
		return acl.CTRelated
	case s&nat.StateEst != 0:
		return acl.CTEstablished
	}
	return acl.CTNew
}

// stageFilterIn runs what a filtered port's guest sends through port
// security, conntrack (in the port's zone) and the egress ACLs and
// security groups. Admitted new connections are committed so their
// replies come back; rejected packets become a TCP RST or ICMP
// unreachable that goes back out of the input port.
func stageFilterIn(p *pipe, w *Worker, c *config, in *portEntry, b *Batch, now uint32) {
	f := c.filt
	if f == nil || f.flags[in.ID]&fOut == 0 || b == &p.f.rej.b {
		return // not filtered, or replies the switch made for the port
	}
	fp := &p.f
	fp.n = 0
	for _, i := range p.live[:p.nlive] {
		if e := p.perr[i]; e != header.ParseOK {
			p.drop(int(i), parseDrop[e], "filter")
			continue
		}
		k := fp.n
		fp.idx[k], fp.ps[k], fp.frames[k] = i, p.parsed[i], b.Pkts[i].HeadBytes()
		fp.meta[k] = acl.Meta{Port: in.ID, Dir: acl.Egress}
		fp.n++
	}
	f.snap.PortSecurity(fp.frames[:fp.n], fp.ps[:fp.n], fp.meta[:fp.n], fp.psd[:fp.n], &fp.cnt)
	m := 0
	for k := 0; k < fp.n; k++ {
		if r := fp.psd[k]; r != acl.Pass {
			p.drop(int(fp.idx[k]), aclDrop[r], "port_security")
			continue
		}
		fp.idx[m], fp.ps[m], fp.frames[m], fp.meta[m] = fp.idx[k], fp.ps[k], fp.frames[k], fp.meta[k]
		m++
	}
	fp.n = m
	p.nlive = filterRun(p, w, c, in.ID, b, now, acl.Egress)
}

// filterRun tracks and filters the gathered packets of p.f for port in
// direction dir, commits what was admitted, and rebuilds the live list
// from the survivors (returning its length) for the egress direction,
// or p.f's list for the ingress one. A dry run (a trace) peeks at
// conntrack instead: it sees the connection a packet belongs to and
// commits nothing.
func filterRun(p *pipe, w *Worker, c *config, port uint16, b *Batch, now uint32, dir acl.Direction) int {
	f, fp := c.filt, &p.f
	fs := fp.ps[:fp.n]
	zone := portZoneBase + port
	stateful := f.flags[port]&fState != 0 && (p.dry && c.ct != nil || !p.dry && w.ctw != nil)
	var ct []acl.CTState
	if stateful {
		if p.dry {
			peekCT(p, c.ct, zone, now)
		} else {
			w.ctw.Lookup(fp.frames[:fp.n], fs, zone, now, fp.res[:fp.n])
			if p.tracing {
				traceCT(p, c.ct, zone)
			}
		}
		for k := range fs {
			fp.ct[k] = ctState(fp.res[k].State)
		}
		ct = fp.ct[:fp.n]
	}
	if p.dry {
		f.snap.Explain(fs, fp.meta[:fp.n], ct, fp.v[:fp.n])
	} else {
		f.snap.Filter(fs, fp.meta[:fp.n], ct, fp.v[:fp.n], &fp.cnt)
	}
	for k := range fs {
		fp.res[k].Admit = fp.v[k].Drop == acl.Pass && fp.v[k].Commit
	}
	if stateful {
		if p.dry {
			for k := range fs {
				if r := &fp.res[k]; r.Admit && r.State&nat.StateNew != 0 && r.Reason == nat.ReasonNone {
					r.Reason = fp.cwhy[k]
				}
			}
		} else {
			w.ctw.Commit(fp.frames[:fp.n], fs, fp.res[:fp.n], nil, now)
		}
	}
	if p.tracing {
		traceVerdicts(p, f, dir, stateful)
	}
	n := 0
	for k := range fs {
		i := fp.idx[k]
		v := &fp.v[k]
		switch {
		case stateful && fp.res[k].Reason != nat.ReasonNone:
			p.drop(int(i), natDrop[fp.res[k].Reason], "conntrack")
			if dir == acl.Ingress {
				p.blockOut(int(i), port)
			}
		case v.Drop != acl.Pass:
			p.drop(int(i), aclDrop[v.Drop], "acl")
			if dir == acl.Ingress {
				p.blockOut(int(i), port)
			}
			switch {
			case !v.Reject:
			case p.dry:
				if t := p.tr(int(i)); t != nil {
					traceReject(t, c, fp.frames[k], port, &fs[k], dir)
				}
			case dir == acl.Egress:
				reject(p, port, &b.Pkts[i], &fs[k], i)
			default:
				rejectIngress(p, c.ports[port], b, i, &fs[k])
			}
		case dir == acl.Egress:
			p.live[n] = i
			n++
		default:
			fp.idx[n] = i
			n++
		}
	}
	return n
}

// reject turns packet i's head into the reply that rejects it and sends
// it back out of port, the way the router answers.
func reject(p *pipe, port uint16, pkt *Packet, ph *header.Parsed, i uint16) {
	h := pkt.HeadBytes()
	r := acl.BuildReject(p.scratch[:], h, ph)
	if r == 0 || r > HeadLen {
		return
	}
	copy(pkt.Head[HeadRoom:], p.scratch[:r])
	pkt.Off, pkt.Len, pkt.NHead, pkt.NSegs = HeadRoom, r, r, 0
	pkt.Offload = offload.Meta{}
	p.add(port, i)
}

// rejectIngress queues the reply to packet i, which an ingress rule of
// port out rejected, as if out's guest had sent it: with out's VLAN
// tagging. The packet itself is left alone (a flood may still deliver it
// to other ports). The worker sends the queue through the pipeline once
// the batch is transmitted (Worker.sendRejects).
func rejectIngress(p *pipe, out *portEntry, b *Batch, i uint16, ph *header.Parsed) {
	q := &p.f.rej
	if q.busy || q.b.N == BatchSize || out == nil {
		return
	}
	r := acl.BuildReject(p.scratch[:], b.Pkts[i].HeadBytes(), ph)
	if r == 0 || r > HeadLen {
		return
	}
	pkt := &q.b.Pkts[q.b.N]
	copy(pkt.Head[HeadRoom:], p.scratch[:r])
	pkt.Off, pkt.Len, pkt.NHead, pkt.NSegs = HeadRoom, r, r, 0
	pkt.Offload = offload.Meta{}
	vid := p.vlan[i]
	pkt.setTag(out.vlan.egressTagged(vid), p.tci[i]|vid)
	q.port[q.b.N] = out.ID
	q.b.N++
}

// sendRejects forwards the queued ingress reject replies, one run per
// port that rejected, each as a batch received on that port. Replies
// rejected on their way get none (the queue is busy).
func (w *Worker) sendRejects(c *config) {
	q := &w.pipe.f.rej
	q.busy = true
	defer func() { q.b.N, q.busy = 0, false }() // also when a port fault unwinds the worker
	n := q.b.N
	for start := 0; start < n; {
		port := q.port[start]
		end := start + 1
		for end < n && q.port[end] == port {
			end++
		}
		if start > 0 {
			for j := start; j < end; j++ {
				q.b.Pkts[j-start] = q.b.Pkts[j]
			}
		}
		q.b.N, q.b.InPort = end-start, port
		if in := c.ports[port]; in != nil {
			w.forward(in, &q.b)
		}
		start = end
	}
}

// stageFilterOut filters the packets selected for port out in the
// ingress direction (towards its guest) and returns the selection of
// those that pass. Replies the switch made for the input port itself
// (router answers, rejects) pass unfiltered. Routed packets are parsed
// again: the router changed their headers.
func stageFilterOut(p *pipe, w *Worker, c *config, out *portEntry, b *Batch, sel []uint16, now uint32) []uint16 {
	f := c.filt
	if f == nil || f.flags[out.ID]&fIn == 0 {
		return sel
	}
	fp := &p.f
	fp.n = 0
	keep := 0
	for _, i := range sel {
		i &= BatchSize - 1
		if out.ID == b.InPort && !p.routed[i] {
			sel[keep] = i
			keep++
			continue
		}
		k := fp.n
		pkt := &b.Pkts[i]
		fp.ps[k] = p.parsed[i]
		if p.routed[i] {
			if e := header.Parse(pkt.HeadBytes(), pkt.Len, &fp.ps[k]); e != header.ParseOK {
				p.drop(int(i), parseDrop[e], "filter")
				p.blockOut(int(i), out.ID)
				continue
			}
		} else if e := p.perr[i]; e != header.ParseOK {
			p.drop(int(i), parseDrop[e], "filter")
			p.blockOut(int(i), out.ID)
			continue
		} else if h := pkt.HeadBytes(); len(h) >= 14 && isTagType(uint16(h[12])<<8|uint16(h[13])) != fp.ps[k].Tagged {
			// A flood: an earlier output port's VLAN tagging moved the
			// headers by 4 bytes.
			header.Parse(h, pkt.Len, &fp.ps[k])
		}
		fp.idx[k], fp.frames[k] = i, pkt.HeadBytes()
		fp.meta[k] = acl.Meta{Port: out.ID, Dir: acl.Ingress}
		fp.n++
	}
	n := filterRun(p, w, c, out.ID, b, now, acl.Ingress)
	for _, i := range fp.idx[:n] {
		sel[keep] = i
		keep++
	}
	return sel[:keep]
}

// stageNAT tracks and translates the packets a router with NAT rules is
// about to route (addressed to its interface's MAC), in the router's
// zone, before stageL3 looks up their (translated) destination: DNAT is
// pre-routing, SNAT is decided at the same time from the rules' inside
// prefixes. Translated packets are parsed again.
func stageNAT(p *pipe, w *Worker, in *portEntry, b *Batch, now uint32) {
	if len(in.bridge.rifs) == 0 || w.ctw == nil || p.dry {
		return
	}
	fp := &p.f
	var routers [4]*router
	nr := 0
	for _, i := range p.live[:p.nlive] {
		ri := in.bridge.rifFor(p.vlan[i])
		if ri == nil || ri.r.nat == nil || p.perr[i] != header.ParseOK {
			continue
		}
		et := p.parsed[i].EthType
		if et != header.EtherTypeIPv4 && et != header.EtherTypeIPv6 || MAC48(b.Pkts[i].HeadBytes()[0:6]) != ri.mac {
			continue
		}
		seen := false
		for _, r := range routers[:nr] {
			seen = seen || r == ri.r
		}
		if !seen && nr < len(routers) {
			routers[nr] = ri.r
			nr++
		}
	}
	dropped := false
	for _, r := range routers[:nr] {
		fp.n = 0
		for _, i := range p.live[:p.nlive] {
			ri := in.bridge.rifFor(p.vlan[i])
			if ri == nil || ri.r != r || p.perr[i] != header.ParseOK {
				continue
			}
			et := p.parsed[i].EthType
			if et != header.EtherTypeIPv4 && et != header.EtherTypeIPv6 || MAC48(b.Pkts[i].HeadBytes()[0:6]) != ri.mac {
				continue
			}
			k := fp.n
			fp.idx[k], fp.ps[k], fp.frames[k] = i, p.parsed[i], b.Pkts[i].HeadBytes()
			fp.n++
		}
		fs, res := fp.ps[:fp.n], fp.res[:fp.n]
		w.ctw.Lookup(fp.frames[:fp.n], fs, r.zone, now, res)
		for k := range res {
			res[k].Admit = true
		}
		w.ctw.Commit(fp.frames[:fp.n], fs, res, r.nat, now)
		flipPartialCsums(b, fp)
		w.ctw.Translate(fp.frames[:fp.n], fs, res)
		flipPartialCsums(b, fp)
		for k := range res {
			i := fp.idx[k]
			why := res[k].Reason
			if why == nat.ReasonNone && res[k].State&(nat.StateSNAT|nat.StateDNAT) != 0 {
				pkt := &b.Pkts[i]
				p.perr[i] = header.Parse(pkt.HeadBytes(), pkt.Len, &p.parsed[i])
			}
			if p.tracing {
				traceNAT(p, r, int(i), &fs[k], &res[k])
			}
			if why != nat.ReasonNone {
				p.drop(int(i), natDrop[why], "nat")
				p.routed[i] = true // marks it dropped for the compaction below
				dropped = true
			}
		}
	}
	if !dropped {
		return
	}
	n := 0
	for _, i := range p.live[:p.nlive] {
		if p.routed[i] {
			p.routed[i] = false
			continue
		}
		p.live[n] = i
		n++
	}
	p.nlive = n
}

// answers says the interface answers ARP/ND for a: its own addresses and
// the floating IPs on its subnets.
func (ri *rif) answers(a netip.Addr) bool {
	if ri.owns(a) {
		return true
	}
	for _, f := range ri.fips {
		if f == a {
			return true
		}
	}
	return false
}

// flipPartialCsums complements the transport checksum field of packets
// whose sender left the checksum to be finished (NEEDS_CSUM): that field
// holds the pseudo-header sum, not its complement, so NAT's incremental
// update (RFC 1624, for a complemented checksum) is right only between two
// flips.
func flipPartialCsums(b *Batch, fp *fpipe) {
	for k := 0; k < fp.n; k++ {
		m := &b.Pkts[fp.idx[k]].Offload
		if m.Flags&offload.FlagNeedsCsum == 0 {
			continue
		}
		f := fp.frames[k]
		if at := int(m.CsumStart) + int(m.CsumOffset); at+2 <= len(f) {
			f[at], f[at+1] = ^f[at], ^f[at+1]
		}
	}
}

// natRouter is the router with NAT rules that packet i is addressed to
// (its destination MAC is the router interface's in its VLAN), or nil.
func natRouter(p *pipe, in *portEntry, b *Batch, i uint16) *router {
	ri := in.bridge.rifFor(p.vlan[i])
	if ri == nil || ri.r.nat == nil || p.perr[i] != header.ParseOK {
		return nil
	}
	et := p.parsed[i].EthType
	if et != header.EtherTypeIPv4 && et != header.EtherTypeIPv6 || MAC48(b.Pkts[i].HeadBytes()[0:6]) != ri.mac {
		return nil
	}
	return ri.r
}

// stageNATDry is stageNAT for a trace: conntrack and NAT are peeked in
// the router's zone (no connection made, no state moved, no port taken)
// and the packet is rewritten as it would be, so the stages after it see
// the translated packet.
func stageNATDry(p *pipe, c *config, in *portEntry, b *Batch, now uint32) {
	if len(in.bridge.rifs) == 0 || c.ct == nil {
		return
	}
	n := 0
	for _, i := range p.live[:p.nlive] {
		r := natRouter(p, in, b, i)
		if r == nil {
			p.live[n] = i
			n++
			continue
		}
		pkt := &b.Pkts[i]
		before := p.parsed[i]
		pk := c.ct.Peek(pkt.HeadBytes(), &p.parsed[i], r.zone, r.nat, now)
		t := p.tr(int(i))
		if t != nil {
			t.at("nat").s("router ").s(r.name).s(" zone ").n(int(r.zone)).s(": ")
			traceCTState(t, pk.State)
			if pk.Found && pk.TCPState != "" {
				t.s(" tcp ").s(pk.TCPState)
			}
		}
		why := pk.Reason
		if why == nat.ReasonNone {
			why = pk.CommitReason
		}
		if why != nat.ReasonNone {
			p.drop(int(i), natDrop[why], "nat")
			continue
		}
		if pk.Translated {
			p.perr[i] = header.Parse(pkt.HeadBytes(), pkt.Len, &p.parsed[i])
			if t != nil {
				traceRewrite(t, &before, &p.parsed[i])
				if pk.PortFromPool {
					t.s(" (the port is taken: one from the pool)")
				}
			}
		}
		p.live[n] = i
		n++
	}
	p.nlive = n
}

// traceNAT records what stageNAT did with traced packet i (parsed as
// before before translation).
func traceNAT(p *pipe, r *router, i int, before *header.Parsed, res *nat.Result) {
	t := p.tr(i)
	if t == nil {
		return
	}
	t.at("nat").s("router ").s(r.name).s(" zone ").n(int(r.zone)).s(": ")
	traceCTState(t, res.State)
	if res.Reason == nat.ReasonNone && res.State&(nat.StateSNAT|nat.StateDNAT) != 0 {
		traceRewrite(t, before, &p.parsed[i])
	}
}

// peekCT fills p.f's conntrack results for a dry run from Table.Peek:
// what Lookup would say, and in cwhy what Commit would refuse.
func peekCT(p *pipe, t *nat.Table, zone uint16, now uint32) {
	fp := &p.f
	for k := 0; k < fp.n; k++ {
		pk := t.Peek(fp.frames[k], &fp.ps[k], zone, nil, now)
		fp.res[k] = nat.Result{State: pk.State, Reason: pk.Reason}
		fp.cwhy[k] = pk.CommitReason
		if tr := p.tr(int(fp.idx[k])); tr != nil {
			tr.at("conntrack").s("zone ").n(int(zone)).s(": ")
			traceCTState(tr, pk.State)
			if pk.Found && pk.TCPState != "" {
				tr.s(" tcp ").s(pk.TCPState)
			}
		}
	}
}

// traceCT records the conntrack state of the traced packets of p.f after
// Lookup.
func traceCT(p *pipe, t *nat.Table, zone uint16) {
	fp := &p.f
	for k := 0; k < fp.n; k++ {
		tr := p.tr(int(fp.idx[k]))
		if tr == nil {
			continue
		}
		r := &fp.res[k]
		tr.at("conntrack").s("zone ").n(int(zone)).s(": ")
		traceCTState(tr, r.State)
		if st, _, ok := t.State(r.Conn); ok && r.Reason == nat.ReasonNone && r.Key().Proto == header.ProtoTCP && int(st) < len(nat.TCPStateNames) {
			tr.s(" tcp ").s(nat.TCPStateNames[st])
		}
	}
}

// ctFlagNames are the ct_state bits in OVS's order and spelling.
var ctFlagNames = [...]struct {
	bit  nat.CTState
	name string
}{{nat.StateTrk, "+trk"}, {nat.StateNew, "+new"}, {nat.StateEst, "+est"}, {nat.StateRel, "+rel"},
	{nat.StateRpl, "+rpl"}, {nat.StateInv, "+inv"}, {nat.StateSNAT, "+snat"}, {nat.StateDNAT, "+dnat"}}

// traceCTState appends s as OVS prints ct_state, without allocating.
func traceCTState(t *Trace, s nat.CTState) {
	if s == 0 {
		t.s("untracked")
		return
	}
	for _, f := range ctFlagNames {
		if s&f.bit != 0 {
			t.s(f.name)
		}
	}
}

// traceVerdicts records the filter's decision on the traced packets of
// p.f; drops are recorded when counted.
func traceVerdicts(p *pipe, f *filter, dir acl.Direction, stateful bool) {
	fp := &p.f
	for k := 0; k < fp.n; k++ {
		t := p.tr(int(fp.idx[k]))
		if t == nil {
			continue
		}
		v := &fp.v[k]
		t.at("filter")
		if dir == acl.Egress {
			t.s("egress: ")
		} else {
			t.s("ingress: ")
		}
		if rs := f.snap.ACL.Rules(); v.ACLRule >= 0 && int(v.ACLRule) < len(rs) {
			t.s("acl ").s(rs[v.ACLRule].Name).s(" ").s(rs[v.ACLRule].Action.String())
			if v.Drop != acl.Pass {
				continue
			}
			t.s(", ")
		}
		switch {
		case v.Drop != acl.Pass:
			t.s(v.Drop.String())
		case v.Commit && v.SGRule >= 0 && int(v.SGRule) < len(f.snap.SG.Rules()):
			t.s("security group rule ").s(f.snap.SG.Rules()[v.SGRule].Name).s(" admits a new connection")
		case v.Commit:
			t.s("security groups admit a new connection")
		case stateful && fp.res[k].State&(nat.StateEst|nat.StateRel) != 0:
			t.s("pass (part of a connection)")
		default:
			t.s("pass")
		}
	}
}

// traceReject says what answers a rejected packet, in a dry run.
func traceReject(t *Trace, c *config, head []byte, port uint16, ph *header.Parsed, dir acl.Direction) {
	what := "an ICMP unreachable"
	if ph.Proto == header.ProtoTCP {
		what = "a TCP RST"
	}
	var scratch [HeadRoom + HeadLen]byte
	if acl.BuildReject(scratch[:], head, ph) == 0 {
		t.at("reject").s("no reply due (RST, ICMP error, multicast or non-IP)")
		return
	}
	if dir == acl.Egress {
		t.at("reject").s(what).s(" out of ").s(c.ports[port].Name)
		return
	}
	t.at("reject").s(what).s(" back through the pipeline as from ").s(c.ports[port].Name)
}

// traceRewrite records how NAT changed a packet's addresses and ports.
func traceRewrite(t *Trace, a, b *header.Parsed) {
	addr := func(p *header.Parsed, dst bool) netip.Addr {
		v := p.Src
		if dst {
			v = p.Dst
		}
		if p.EthType == header.EtherTypeIPv4 {
			return netip.AddrFrom4([4]byte(v[:4]))
		}
		return netip.AddrFrom16(v)
	}
	ports := a.Proto == header.ProtoTCP || a.Proto == header.ProtoUDP
	end := func(p *header.Parsed, dst bool) {
		t.ip(addr(p, dst))
		if ports {
			port := p.SrcPort
			if dst {
				port = p.DstPort
			}
			t.s(" port ").n(int(port))
		}
	}
	sep := "; "
	if a.Src != b.Src || ports && a.SrcPort != b.SrcPort {
		t.s(sep).s("source ")
		end(a, false)
		t.s(" -> ")
		end(b, false)
	}
	if a.Dst != b.Dst || ports && a.DstPort != b.DstPort {
		t.s(sep).s("destination ")
		end(a, true)
		t.s(" -> ")
		end(b, true)
	}
}
