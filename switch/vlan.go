package vswitch

import (
	"encoding/binary"
	"fmt"
)

// VLAN modes of a port, as in OVS's Port table vlan_mode column.
const (
	VLANAccess         = "access"          // untagged, in VLAN Tag only; tagged input dropped
	VLANTrunk          = "trunk"           // tagged in the Trunks VLANs; untagged is VLAN 0
	VLANNativeTagged   = "native-tagged"   // trunk whose untagged input is VLAN Tag, sent tagged
	VLANNativeUntagged = "native-untagged" // trunk whose untagged input is VLAN Tag, sent untagged
)

// VLANConfig is a port's VLAN membership. With Mode empty, a port with a
// Tag is an access port (native-untagged if it also has Trunks) and one
// without is a trunk, like OVS.
type VLANConfig struct {
	Mode   string
	Tag    uint16   // access VLAN, or native VLAN of a native-* trunk; 0 = none
	Trunks []uint16 // VLANs a trunk carries; empty = all
}

// portVLAN is a VLANConfig compiled for the data path.
type portVLAN struct {
	access bool       // tagged input (other than priority tags) is dropped
	native int32      // VLAN of untagged input, -1: untagged input is dropped
	untag  int32      // VLAN sent untagged, -1: none
	allow  [64]uint64 // bitmap of the VLANs the port carries
}

func (v *portVLAN) allowed(vid uint16) bool { return v.allow[vid>>6&63]&(1<<(vid&63)) != 0 }
func (v *portVLAN) set(vid uint16)          { v.allow[vid>>6&63] |= 1 << (vid & 63) }

// ResolveMode is the mode a config means once defaults apply.
func (c VLANConfig) ResolveMode() string {
	if c.Mode != "" {
		return c.Mode
	}
	switch {
	case c.Tag != 0 && len(c.Trunks) > 0:
		return VLANNativeUntagged
	case c.Tag != 0:
		return VLANAccess
	}
	return VLANTrunk
}

func (c VLANConfig) compile() (portVLAN, error) {
	v := portVLAN{native: -1, untag: -1}
	if c.Tag > 4094 {
		return v, fmt.Errorf("tag %d is not a VLAN in 1..4094", c.Tag)
	}
	for _, t := range c.Trunks {
		if t > 4094 {
			return v, fmt.Errorf("trunk %d is not a VLAN in 0..4094", t)
		}
	}
	trunks := func() {
		if len(c.Trunks) == 0 {
			for i := range v.allow {
				v.allow[i] = ^uint64(0)
			}
			v.allow[63] &^= 1 << 63 // 4095 is reserved
			return
		}
		for _, t := range c.Trunks {
			v.set(t)
		}
	}
	switch mode := c.ResolveMode(); mode {
	case VLANAccess:
		if c.Tag == 0 {
			return v, fmt.Errorf("vlan_mode access needs a tag")
		}
		if len(c.Trunks) > 0 {
			return v, fmt.Errorf("vlan_mode access takes no trunks")
		}
		v.access, v.native, v.untag = true, int32(c.Tag), int32(c.Tag)
		v.set(c.Tag)
	case VLANTrunk:
		if c.Tag != 0 {
			return v, fmt.Errorf("vlan_mode trunk takes no tag (use native-tagged or native-untagged)")
		}
		trunks()
		if v.allowed(0) {
			v.native = 0
		}
		v.untag = 0
	case VLANNativeTagged, VLANNativeUntagged:
		if c.Tag == 0 {
			return v, fmt.Errorf("vlan_mode %s needs a tag (the native VLAN)", mode)
		}
		trunks()
		v.set(c.Tag)
		v.native = int32(c.Tag)
		if mode == VLANNativeUntagged {
			v.untag = int32(c.Tag)
		}
	default:
		return v, fmt.Errorf("vlan_mode %q is not access, trunk, native-tagged or native-untagged", mode)
	}
	return v, nil
}

// classify says which VLAN a frame received on the port belongs to.
func (v *portVLAN) classify(tagged bool, vid uint16) (uint16, bool) {
	if tagged && vid != 0 {
		return vid, !v.access && v.allowed(vid)
	}
	if v.native < 0 {
		return 0, false
	}
	return uint16(v.native), true
}

// egressTagged says whether a frame of VLAN vid leaves the port tagged.
func (v *portVLAN) egressTagged(vid uint16) bool { return vid != 0 && int32(vid) != v.untag }

// setTag makes the frame's head carry tag tci (pushing a tag into the
// head room if it has none) or, with tagged false, no tag. The payload in
// the sender's buffers is never moved.
func (p *Packet) setTag(tagged bool, tci uint16) {
	h := p.Head[:]
	o := p.Off
	has := p.NHead >= 18 && isTagType(binary.BigEndian.Uint16(h[o+12:]))
	switch {
	case tagged && has:
		binary.BigEndian.PutUint16(h[o+14:], tci)
	case tagged:
		if o < 4 {
			return
		}
		copy(h[o-4:o+8], h[o:o+12])
		o -= 4
		binary.BigEndian.PutUint16(h[o+12:], 0x8100)
		binary.BigEndian.PutUint16(h[o+14:], tci)
		p.Off, p.NHead, p.Len = o, p.NHead+4, p.Len+4
		p.Offload.Shift(4)
	case has:
		copy(h[o+4:o+16], h[o:o+12])
		p.Off, p.NHead, p.Len = o+4, p.NHead-4, p.Len-4
		p.Offload.Shift(-4)
	}
}

func isTagType(t uint16) bool { return t == 0x8100 || t == 0x88a8 }
