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
	if f == nil || f.flags[in.ID]&fOut == 0 {
		return
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
// or p.f's list for the ingress one.
func filterRun(p *pipe, w *Worker, c *config, port uint16, b *Batch, now uint32, dir acl.Direction) int {
	f, fp := c.filt, &p.f
	fs := fp.ps[:fp.n]
	stateful := f.flags[port]&fState != 0 && w.ctw != nil && !p.dry
	var ct []acl.CTState
	if stateful {
		w.ctw.Lookup(fp.frames[:fp.n], fs, portZoneBase+port, now, fp.res[:fp.n])
		for k := range fs {
			fp.ct[k] = ctState(fp.res[k].State)
		}
		ct = fp.ct[:fp.n]
	}
	f.snap.Filter(fs, fp.meta[:fp.n], ct, fp.v[:fp.n], &fp.cnt)
	for k := range fs {
		fp.res[k].Admit = fp.v[k].Drop == acl.Pass && fp.v[k].Commit
	}
	if stateful {
		w.ctw.Commit(fp.frames[:fp.n], fs, fp.res[:fp.n], nil, now)
	}
	n := 0
	for k := range fs {
		i := fp.idx[k]
		v := &fp.v[k]
		switch {
		case stateful && fp.res[k].Reason != nat.ReasonNone:
			p.drop(int(i), natDrop[fp.res[k].Reason], "conntrack")
		case v.Drop != acl.Pass:
			p.drop(int(i), aclDrop[v.Drop], "acl")
			if v.Reject && dir == acl.Egress && !p.dry {
				reject(p, port, &b.Pkts[i], &fs[k], i)
			}
		case dir == acl.Egress:
			if p.tracing {
				p.traceFilter(int(i), c.ports[port], dir, stateful, fp.res[k].State, v.Commit)
			}
			p.live[n] = i
			n++
		default:
			if p.tracing {
				p.traceFilter(int(i), c.ports[port], dir, stateful, fp.res[k].State, v.Commit)
			}
			fp.idx[n] = i
			n++
		}
	}
	return n
}

// traceFilter records, for a traced packet a filter stage passed, the
// direction, the port, conntrack's state in the port's zone and whether
// the connection was committed. Drops are recorded by p.drop.
func (p *pipe) traceFilter(i int, pe *portEntry, dir acl.Direction, stateful bool, st nat.CTState, commit bool) {
	t := p.tr(i)
	if t == nil {
		return
	}
	if dir == acl.Egress {
		t.at("filter").s("egress from ")
	} else {
		t.at("filter").s("ingress to ")
	}
	if pe != nil {
		t.s(pe.Name)
	}
	if stateful {
		t.s(": ct ").s(ctName(st))
	}
	t.s(": allow")
	if stateful && commit {
		t.s(", commit")
	}
}

// ctName names conntrack's state for a trace.
func ctName(s nat.CTState) string {
	switch ctState(s) {
	case acl.CTInvalid:
		return "invalid"
	case acl.CTRelated:
		return "related"
	case acl.CTEstablished:
		if s&nat.StateRpl != 0 {
			return "established reply"
		}
		return "established"
	}
	return "new"
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
				continue
			}
		} else if e := p.perr[i]; e != header.ParseOK {
			p.drop(int(i), parseDrop[e], "filter")
			continue
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
			if why := res[k].Reason; why != nat.ReasonNone {
				p.drop(int(i), natDrop[why], "nat")
				p.routed[i] = true // marks it dropped for the compaction below
				dropped = true
				continue
			}
			if res[k].State&(nat.StateSNAT|nat.StateDNAT) != 0 {
				pkt := &b.Pkts[i]
				p.perr[i] = header.Parse(pkt.HeadBytes(), pkt.Len, &p.parsed[i])
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
