package daemon

import (
	"fmt"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/nat"
	vswitch "github.com/vswitch/vswitch/switch"
)

func connFilter(q api.ConnQuery) vswitch.ConnFilter {
	return vswitch.ConnFilter{Zone: uint16(q.Zone), Port: q.Port, Router: q.Router, Proto: uint8(q.Protocol), Addr: q.Address, Limit: q.Limit}
}

// Connections implements api.Conntracker.
func (d *Daemon) Connections(q api.ConnQuery) (*api.ConnList, error) {
	l, err := d.Switch.Connections(connFilter(q))
	if err != nil {
		return nil, err
	}
	out := &api.ConnList{Total: l.Total, Truncated: l.Total > len(l.Rows), Entries: l.Entries, MaxEntries: l.Limit,
		Connections: make([]api.Connection, 0, len(l.Rows))}
	if out.MaxEntries == 0 {
		out.MaxEntries = d.Switch.ConntrackSettings().Capacity
	}
	for _, r := range l.Rows {
		out.Connections = append(out.Connections, api.Connection{
			Zone: int(r.Zone), Owner: r.Owner, Protocol: api.ProtoName(int(r.Orig.Proto)),
			Orig: tuple(r.Orig), Reply: tuple(r.Reply), TCPState: r.TCPState,
			ExpiresIn: int(r.ExpiresIn), Replied: r.Replied, SNAT: r.SNAT, DNAT: r.DNAT,
		})
	}
	return out, nil
}

func tuple(k nat.Key) api.ConnTuple {
	return api.ConnTuple{Src: k.SrcAddr().String(), Dst: k.DstAddr().String(), SrcPort: int(k.SrcPort), DstPort: int(k.DstPort)}
}

// FlushConnections implements api.Conntracker.
func (d *Daemon) FlushConnections(q api.ConnQuery) (int, error) {
	return d.Switch.FlushConnections(connFilter(q))
}

// ConntrackLimits implements api.ConntrackLimiter.
func (d *Daemon) ConntrackLimits() *api.ConntrackLimits {
	def, zs := d.Switch.ZoneUsages()
	out := &api.ConntrackLimits{DefaultLimit: int(def), MaxEntries: d.Switch.ConntrackSettings().Capacity, Zones: make([]api.ZoneStatus, 0, len(zs))}
	if t := d.Switch.Conntrack(); t != nil {
		out.Entries = t.Len()
	}
	for _, z := range zs {
		out.Zones = append(out.Zones, api.ZoneStatus{Zone: int(z.Zone), Owner: z.Owner, Limit: int(z.Limit), Override: z.Own, Count: z.Count})
	}
	return out
}

// zoneLimits is c.ZoneLimits as the switch takes them (c validated).
func zoneLimits(c api.ConntrackConfig) []vswitch.ZoneLimit {
	out := make([]vswitch.ZoneLimit, 0, len(c.ZoneLimits))
	for _, z := range c.ZoneLimits {
		var n uint32
		if z.Limit != nil {
			n = uint32(*z.Limit)
		}
		out = append(out, vswitch.ZoneLimit{Port: z.Port, Router: z.Router, Limit: n})
	}
	return out
}

// setConntrack applies c: the table's settings, then the zones' own
// limits.
func (d *Daemon) setConntrack(c api.ConntrackConfig) error {
	if err := d.Switch.SetConntrack(c.NAT()); err != nil {
		return err
	}
	if err := d.Switch.SetZoneLimits(zoneLimits(c)); err != nil {
		return fmt.Errorf("conntrack.zone_limits: %w", err)
	}
	return nil
}
