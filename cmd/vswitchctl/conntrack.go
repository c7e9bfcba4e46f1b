package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vswitch/vswitch/api"
)

// connFlags are conntrack list's and flush's selection, passed to the
// daemon as they are: it checks them and names a bad one.
type connFlags struct {
	fs                        *pflag.FlagSet
	zone, port, router, proto string
	addr, limit               string
}

func (f *connFlags) add(fs *pflag.FlagSet, limit bool) {
	f.fs = fs
	fs.StringVar(&f.zone, "zone", "", "a conntrack zone (1..65535)")
	fs.StringVar(&f.port, "port", "", "the zone of a port's security groups")
	fs.StringVar(&f.router, "router", "", "the zone of a router's NAT")
	fs.StringVar(&f.proto, "protocol", "", "tcp, udp, icmp, icmpv6 or a protocol number")
	fs.StringVar(&f.addr, "address", "", "an address either direction has as source or destination")
	if limit {
		fs.StringVar(&f.limit, "limit", "", fmt.Sprintf("most connections listed (1..%d, default %d)", api.MaxConnLimit, api.DefaultConnLimit))
	}
}

// query is the flags given as /v1/conntrack's query string.
func (f *connFlags) query() string {
	v := url.Values{}
	for _, p := range []struct{ name, val string }{{"zone", f.zone}, {"port", f.port}, {"router", f.router},
		{"protocol", f.proto}, {"address", f.addr}, {"limit", f.limit}} {
		if fl := f.fs.Lookup(p.name); fl != nil && fl.Changed {
			v.Set(p.name, p.val)
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

func (cl *cli) conntrackCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "conntrack", Short: "Tracked connections of security groups and NAT"}
	var lf connFlags
	list := &cobra.Command{Use: "list", Short: "List tracked connections (at most --limit; the total counts every match)", Args: cobra.NoArgs,
		Example: `  vswitchctl conntrack list --port a --protocol tcp
  vswitchctl conntrack list --router r1 --address 10.20.0.2`,
		RunE: func(*cobra.Command, []string) error {
			var l api.ConnList
			if _, err := cl.c.getJSON("/v1/conntrack"+lf.query(), &l); err != nil {
				return notYet(err, "conntrack")
			}
			if cl.json {
				return cl.printJSON(l)
			}
			var rows [][]string
			for _, c := range l.Connections {
				rows = append(rows, []string{strconv.Itoa(c.Zone), c.Owner, c.Protocol, tupleString(c.Orig, c.Protocol),
					tupleString(c.Reply, c.Protocol), c.TCPState, strconv.Itoa(c.ExpiresIn), natString(c)})
			}
			cl.table("ZONE\tOWNER\tPROTO\tORIGINAL\tREPLY\tSTATE\tEXPIRES\tNAT", rows)
			more := ""
			if l.Truncated {
				more = fmt.Sprintf(" (%d listed: raise --limit)", len(l.Connections))
			}
			fmt.Fprintf(cl.out, "%d connections match%s; %d in the table of %d\n", l.Total, more, l.Entries, l.MaxEntries)
			return nil
		}}
	lf.add(list.Flags(), true)
	var ff connFlags
	flush := &cobra.Command{Use: "flush", Short: "Delete the connections selected (all without a selection), like ovs-appctl dpctl/flush-conntrack", Args: cobra.NoArgs,
		Example: `  vswitchctl conntrack flush --port a
  vswitchctl conntrack flush`,
		RunE: func(*cobra.Command, []string) error {
			r, err := cl.c.do("DELETE", "/v1/conntrack"+ff.query(), nil)
			if err != nil {
				return notYet(err, "conntrack")
			}
			var f api.ConnFlush
			if err := json.Unmarshal(r.body, &f); err != nil {
				return fmt.Errorf("DELETE /v1/conntrack: %v", err)
			}
			if cl.json {
				return cl.printJSON(f)
			}
			fmt.Fprintf(cl.out, "flushed %d connections\n", f.Flushed)
			return nil
		}}
	ff.add(flush.Flags(), false)
	cmd.AddCommand(list, flush, cl.limitsCmd(), cl.setLimitsCmd())
	return cmd
}

// limitsCmd shows the zones' limits and counts (ovs-appctl
// dpctl/ct-get-limits).
func (cl *cli) limitsCmd() *cobra.Command {
	return &cobra.Command{Use: "limits", Short: "Per-zone connection limits and counts (like ovs-appctl dpctl/ct-get-limits)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var l api.ConntrackLimits
			if _, err := cl.c.getJSON("/v1/conntrack/limits", &l); err != nil {
				return notYet(err, "conntrack limits")
			}
			if cl.json {
				return cl.printJSON(l)
			}
			var rows [][]string
			for _, z := range l.Zones {
				src := "default"
				if z.Override {
					src = "zone"
				}
				rows = append(rows, []string{strconv.Itoa(z.Zone), z.Owner, limitString(z.Limit), src, strconv.Itoa(z.Count)})
			}
			cl.table("ZONE\tOWNER\tLIMIT\tFROM\tCOUNT", rows)
			fmt.Fprintf(cl.out, "default limit %s; %d connections in the table of %d\n", limitString(l.DefaultLimit), l.Entries, l.MaxEntries)
			return nil
		}}
}

func limitString(n int) string {
	if n == 0 {
		return "none"
	}
	return strconv.Itoa(n)
}

// setLimitsCmd sets conntrack.zone_limit and replaces conntrack.zone_limits
// (ovs-appctl dpctl/ct-set-limits).
func (cl *cli) setLimitsCmd() *cobra.Command {
	var def int
	var ports, routers []string
	cmd := &cobra.Command{Use: "set-limits", Short: "Set the default per-zone limit and replace the zones' own limits (like ovs-appctl dpctl/ct-set-limits); a limit of 0 is none",
		Args: cobra.NoArgs,
		Example: `  vswitchctl conntrack set-limits --default 1000 --port a=100 --router r1=0
  vswitchctl conntrack set-limits            # every zone takes the default`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u := api.ZoneLimitsUpdate{ZoneLimits: []api.ZoneLimitConfig{}}
			if cmd.Flags().Changed("default") {
				u.ZoneLimit = &def
			}
			for _, set := range []struct {
				flag string
				vals []string
			}{{"port", ports}, {"router", routers}} {
				for _, v := range set.vals {
					name, lim, ok := strings.Cut(v, "=")
					n, err := strconv.Atoi(lim)
					if !ok || name == "" || err != nil {
						return usageErr("--%s %q: want NAME=LIMIT", set.flag, v)
					}
					z := api.ZoneLimitConfig{Limit: &n}
					if set.flag == "port" {
						z.Port = name
					} else {
						z.Router = name
					}
					u.ZoneLimits = append(u.ZoneLimits, z)
				}
			}
			body, err := json.Marshal(u)
			if err != nil {
				return err
			}
			r, err := cl.c.do("PUT", "/v1/conntrack/limits", body, "Content-Type", "application/json")
			if err != nil {
				return notYet(err, "conntrack limits")
			}
			return cl.printResult(r, "conntrack limits set")
		}}
	cmd.Flags().IntVar(&def, "default", 0, "the limit of zones without their own (conntrack.zone_limit; 0: none)")
	cmd.Flags().StringArrayVar(&ports, "port", nil, "NAME=LIMIT: a port's zone limit (repeatable)")
	cmd.Flags().StringArrayVar(&routers, "router", nil, "NAME=LIMIT: a router's NAT zone limit (repeatable)")
	return cmd
}

// tupleString is one direction as "SRC:SPORT -> DST:DPORT" (an ICMP
// echo's id after "id").
func tupleString(t api.ConnTuple, proto string) string {
	end := func(a string, port int) string {
		if port == 0 {
			return a
		}
		if ap, err := netip.ParseAddr(a); err == nil && ap.Is6() {
			a = "[" + a + "]"
		}
		return a + ":" + strconv.Itoa(port)
	}
	if proto == "icmp" || proto == "icmpv6" {
		id := max(t.SrcPort, t.DstPort)
		return t.Src + " -> " + t.Dst + " id " + strconv.Itoa(id)
	}
	return end(t.Src, t.SrcPort) + " -> " + end(t.Dst, t.DstPort)
}

func natString(c api.Connection) string {
	var s []string
	if c.SNAT {
		s = append(s, "snat")
	}
	if c.DNAT {
		s = append(s, "dnat")
	}
	return strings.Join(s, ",")
}
