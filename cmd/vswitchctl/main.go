// Command vswitchctl drives vswitchd through its REST API: ports, bridges,
// ACLs, security groups, stats and the whole config. Human tables by default, --json for scripts.
//
// Exit codes: 0 success, 1 daemon unreachable or failed, 2 bad command
// line, 3 not found, 4 conflict (exists, or changed since read), 5 invalid
// request, 6 unauthorized.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/vswitch/vswitch/api"
)

type cli struct {
	api, tokenFile, caFile string
	json                   bool
	timeout                time.Duration
	out                    io.Writer
	c                      *client
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	cl := &cli{out: stdout}
	root := cl.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "vswitchctl:", err)
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	// Cobra's own errors: unknown command or flag, wrong arguments.
	return exitUsage
}

func (cl *cli) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "vswitchctl",
		Short: "Control vswitchd through its API",
		Long: `vswitchctl drives vswitchd through its REST API.

It finds the daemon through --api (unix://PATH, tcp://HOST:PORT or
https://HOST:PORT), else $VSWITCH_API, else ` + DefaultAPI + `.
A bearer token comes from --token-file or $VSWITCH_TOKEN.

Exit codes: 0 success, 1 daemon unreachable or failed, 2 bad command line,
3 not found, 4 conflict (exists, or changed since read: read it again),
5 invalid request, 6 unauthorized.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cl.api, cl.tokenFile, cl.caFile, cl.timeout)
			cl.c = c
			return err
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&cl.api, "api", "", "API address: unix://PATH, tcp://HOST:PORT or https://HOST:PORT (default $VSWITCH_API, else "+DefaultAPI+")")
	pf.BoolVar(&cl.json, "json", false, "print JSON for scripts instead of tables")
	pf.StringVar(&cl.tokenFile, "token-file", "", "file holding the API bearer token (default $VSWITCH_TOKEN)")
	pf.StringVar(&cl.caFile, "cacert", "", "CA certificate (PEM) for an https:// API")
	pf.DurationVar(&cl.timeout, "timeout", 30*time.Second, "request timeout")
	root.AddCommand(cl.portCmd(), cl.bridgeCmd(), cl.statsCmd(), cl.workersCmd(), cl.configCmd(),
		cl.fdbCmd(), cl.routeCmd(), cl.neighCmd(),
		cl.aclCmd(), cl.sgCmd(), cl.traceCmd(), cl.conntrackCmd())
	return root
}

// printJSON writes v indented.
func (cl *cli) printJSON(v any) error {
	enc := json.NewEncoder(cl.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (cl *cli) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(cl.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// revisionHeader makes --revision N an If-Match header.
func revisionHeader(rev string) string {
	if rev == "" {
		return ""
	}
	return `"` + strings.Trim(rev, `"`) + `"`
}

// completeNames completes a command's resource name argument from the
// daemon.
func (cl *cli) completeNames(collection string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return cl.completeFlagNames(collection)(cmd, args, s)
	}
}

// completeFlagNames completes a flag's value (--port) with resource names
// from the daemon.
func (cl *cli) completeFlagNames(collection string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		c, err := newClient(cl.api, cl.tokenFile, cl.caFile, 3*time.Second)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var items []struct {
			Name string `json:"name"`
		}
		if _, err := c.getJSON("/v1/"+collection, &items); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []string
		for _, it := range items {
			names = append(names, it.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func (cl *cli) portCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "port", Short: "List, show, add, change and delete ports"}
	list := &cobra.Command{Use: "list", Short: "List ports", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
		var ps []api.PortStatus
		if _, err := cl.c.getJSON("/v1/ports", &ps); err != nil {
			return err
		}
		if cl.json {
			return cl.printJSON(ps)
		}
		var rows [][]string
		for _, p := range ps {
			rows = append(rows, []string{p.Name, p.Type, p.Bridge, p.Mode, p.State, strconv.Itoa(p.QueuePairs),
				u(p.RxPackets), u(p.TxPackets), u(sum(p.Drops)), p.Socket})
		}
		cl.table("NAME\tTYPE\tBRIDGE\tMODE\tSTATE\tQUEUES\tRX_PKTS\tTX_PKTS\tDROPS\tSOCKET", rows)
		return nil
	}}
	show := &cobra.Command{Use: "show NAME", Short: "Show a port: config, status, counters, drops", Args: cobra.ExactArgs(1),
		ValidArgsFunction: cl.completeNames("ports"),
		RunE: func(_ *cobra.Command, args []string) error {
			var p api.PortStatus
			if _, err := cl.c.getJSON("/v1/ports/"+url.PathEscape(args[0]), &p); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(p)
			}
			tw := tabwriter.NewWriter(cl.out, 0, 4, 2, ' ', 0)
			kv := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
			kv("name", p.Name)
			kv("type", p.Type)
			kv("bridge", p.Bridge)
			kv("socket", p.Socket)
			kv("mode", p.Mode)
			kv("state", p.State)
			if p.Error != "" {
				kv("error", p.Error)
			}
			kv("queue pairs", strconv.Itoa(p.QueuePairs))
			if p.Config != nil {
				kv("queues offered", p.Config.Queues.String())
				if p.Config.VLANMode != "" || p.Config.Tag != 0 || len(p.Config.Trunks) != 0 {
					kv("vlan", vlanString(p.Config))
				}
			}
			kv("features", strings.Join(p.Features, " "))
			kv("revision", u(p.Revision))
			kv("rx", u(p.RxPackets)+" packets, "+u(p.RxBytes)+" bytes")
			kv("tx", u(p.TxPackets)+" packets, "+u(p.TxBytes)+" bytes")
			for _, r := range sortedKeys(p.Drops) {
				kv("drops "+r, u(p.Drops[r]))
			}
			for _, k := range sortedKeys(p.Protocol) {
				kv("vhost-user "+k, u(p.Protocol[k]))
			}
			return tw.Flush()
		}}
	var pc api.PortConfig
	add := &cobra.Command{Use: "add NAME --bridge BRIDGE --socket PATH", Short: "Add a port (exit 4 if it exists)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			pc.Name = args[0]
			b, _ := json.Marshal(pc)
			r, err := cl.c.do("POST", "/v1/ports", b)
			if err != nil {
				return err
			}
			return cl.printResult(r, "port "+pc.Name+" added")
		}}
	af := add.Flags()
	af.StringVar(&pc.Type, "type", api.TypeVhostUser, "port type")
	af.StringVar(&pc.Bridge, "bridge", "", "bridge to attach to")
	af.StringVar(&pc.Socket, "socket", "", "vhost-user socket path (relative: under the run directory)")
	af.StringVar(&pc.Mode, "mode", "", "server (the switch listens) or client (it connects); default server")
	af.Var(&pc.Queues, "queues", "vhostuser: queue pairs offered (default 1); afxdp: NIC queue ids 0,1,... or a count (default all)")
	af.StringVar(&pc.SocketMode, "socket-mode", "", "octal mode of a server socket (default: vhostuser.socket_mode, else 0660)")
	af.StringVar(&pc.SocketOwner, "socket-owner", "", "user (name or uid) owning a server socket (default: vhostuser.socket_owner, else the daemon's)")
	af.StringVar(&pc.SocketGroup, "socket-group", "", "group (name or gid) of a server socket, e.g. libvirt-qemu (default: vhostuser.socket_group, else the daemon's)")
	af.StringVar(&pc.Device, "device", "", "network interface of an afxdp port")
	af.StringVar(&pc.XDPMode, "xdp-mode", "", "afxdp attach mode: native or generic (default: native, else generic)")
	af.IntVar(&pc.Tag, "tag", 0, "access VLAN (or the native VLAN of a native-tagged/native-untagged trunk)")
	af.IntSliceVar(&pc.Trunks, "trunks", nil, "VLANs a trunk port carries, e.g. 10,20 (default: all)")
	af.StringVar(&pc.VLANMode, "vlan-mode", "", "access, trunk, native-tagged or native-untagged (default: access with --tag, else trunk)")
	af.StringSliceVar(&pc.SecurityGroups, "security-groups", nil, "security groups the port is in, e.g. web,ssh (stateful; ingress denied unless a rule allows it)")
	add.RegisterFlagCompletionFunc("security-groups", cl.completeFlagNames("security_groups"))
	add.MarkFlagRequired("bridge")
	add.Use = "add NAME --bridge BRIDGE (--socket PATH | --type afxdp --device DEV)"
	var setRev string
	var setQueues api.QueueSpec
	var setGroups []string
	set := &cobra.Command{Use: "set NAME [--queues N] [--mode M] ...", Short: "Change fields of a port (the port is recreated, except for --security-groups)", Args: cobra.ExactArgs(1),
		ValidArgsFunction: cl.completeNames("ports"),
		RunE: func(cmd *cobra.Command, args []string) error {
			patch := map[string]any{}
			cmd.Flags().Visit(func(f *pflag.Flag) {
				switch f.Name {
				case "queues":
					patch["queues"] = setQueues
				case "security-groups":
					patch["security_groups"] = setGroups
				case "bridge", "socket", "mode", "type", "device":
					patch[f.Name] = f.Value.String()
				case "socket-mode", "socket-owner", "socket-group", "xdp-mode":
					patch[strings.ReplaceAll(f.Name, "-", "_")] = f.Value.String()
				}
			})
			if len(patch) == 0 {
				return usageErr("port set: nothing to change (see --help)")
			}
			b, _ := json.Marshal(patch)
			r, err := cl.c.do("PATCH", "/v1/ports/"+url.PathEscape(args[0]), b, "If-Match", revisionHeader(setRev))
			if err != nil {
				return err
			}
			return cl.printResult(r, "port "+args[0]+" changed")
		}}
	sf := set.Flags()
	sf.String("bridge", "", "bridge")
	sf.String("socket", "", "socket path")
	sf.String("mode", "", "server or client")
	sf.String("type", "", "port type")
	sf.Var(&setQueues, "queues", "queue pairs offered (vhostuser) or NIC queue ids (afxdp)")
	sf.String("socket-mode", "", "octal socket mode")
	sf.String("socket-owner", "", "socket owner (user name or uid)")
	sf.String("socket-group", "", "socket group (group name or gid)")
	sf.String("device", "", "network interface (afxdp)")
	sf.String("xdp-mode", "", "native or generic (afxdp)")
	sf.StringSliceVar(&setGroups, "security-groups", nil, "security groups the port is in (replaces the list; \"\" for none); the port keeps running")
	set.RegisterFlagCompletionFunc("security-groups", cl.completeFlagNames("security_groups"))
	sf.StringVar(&setRev, "revision", "", "only if the port is still at this revision (its ETag); exit 4 otherwise")
	var delRev string
	del := &cobra.Command{Use: "del NAME", Aliases: []string{"delete", "rm"}, Short: "Delete a port", Args: cobra.ExactArgs(1),
		ValidArgsFunction: cl.completeNames("ports"),
		RunE: func(_ *cobra.Command, args []string) error {
			if _, err := cl.c.do("DELETE", "/v1/ports/"+url.PathEscape(args[0]), nil, "If-Match", revisionHeader(delRev)); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(map[string]string{"deleted": args[0]})
			}
			fmt.Fprintln(cl.out, "port "+args[0]+" deleted")
			return nil
		}}
	del.Flags().StringVar(&delRev, "revision", "", "only if the port is still at this revision; exit 4 otherwise")
	cmd.AddCommand(list, show, add, set, del)
	return cmd
}

// printResult prints what a write returned.
func (cl *cli) printResult(r *response, human string) error {
	if cl.json {
		_, err := cl.out.Write(r.body)
		return err
	}
	fmt.Fprintf(cl.out, "%s (revision %s)\n", human, strings.Trim(r.etag, `"`))
	return nil
}

func (cl *cli) bridgeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bridge", Short: "List, show, add and delete bridges"}
	list := &cobra.Command{Use: "list", Short: "List bridges", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
		var bs []api.BridgeStatus
		if _, err := cl.c.getJSON("/v1/bridges", &bs); err != nil {
			return err
		}
		if cl.json {
			return cl.printJSON(bs)
		}
		var rows [][]string
		for _, b := range bs {
			rows = append(rows, []string{b.Name, strconv.Itoa(b.MACTableSize), strconv.Itoa(b.MACAging), strings.Join(b.Ports, ",")})
		}
		cl.table("NAME\tMAC_TABLE_SIZE\tMAC_AGING\tPORTS", rows)
		return nil
	}}
	show := &cobra.Command{Use: "show NAME", Short: "Show a bridge", Args: cobra.ExactArgs(1), ValidArgsFunction: cl.completeNames("bridges"),
		RunE: func(_ *cobra.Command, args []string) error {
			var b api.BridgeStatus
			if _, err := cl.c.getJSON("/v1/bridges/"+url.PathEscape(args[0]), &b); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(b)
			}
			fmt.Fprintf(cl.out, "name: %s\nmac_table_size: %d\nmac_aging: %d\nports: %s\nrevision: %d\n",
				b.Name, b.MACTableSize, b.MACAging, strings.Join(b.Ports, ", "), b.Revision)
			return nil
		}}
	var bc api.BridgeConfig
	add := &cobra.Command{Use: "add NAME", Short: "Add a bridge (exit 4 if it exists)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			bc.Name = args[0]
			b, _ := json.Marshal(bc)
			r, err := cl.c.do("POST", "/v1/bridges", b)
			if err != nil {
				return err
			}
			return cl.printResult(r, "bridge "+bc.Name+" added")
		}}
	add.Flags().IntVar(&bc.MACTableSize, "mac-table-size", 0, "FDB slots (default 8192)")
	add.Flags().IntVar(&bc.MACAging, "mac-aging", 0, "seconds a MAC entry lives without traffic (default 300)")
	del := &cobra.Command{Use: "del NAME", Aliases: []string{"delete", "rm"}, Short: "Delete a bridge that has no ports", Args: cobra.ExactArgs(1),
		ValidArgsFunction: cl.completeNames("bridges"),
		RunE: func(_ *cobra.Command, args []string) error {
			if _, err := cl.c.do("DELETE", "/v1/bridges/"+url.PathEscape(args[0]), nil); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(map[string]string{"deleted": args[0]})
			}
			fmt.Fprintln(cl.out, "bridge "+args[0]+" deleted")
			return nil
		}}
	cmd.AddCommand(list, show, add, del)
	return cmd
}

func (cl *cli) statsCmd() *cobra.Command {
	return &cobra.Command{Use: "stats [PORT]", Short: "Port counters and drops by reason", Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: cl.completeNames("ports"),
		RunE: func(_ *cobra.Command, args []string) error {
			var ps []api.PortStatus
			if _, err := cl.c.getJSON("/v1/ports", &ps); err != nil {
				return err
			}
			if len(args) == 1 {
				var keep []api.PortStatus
				for _, p := range ps {
					if p.Name == args[0] {
						keep = append(keep, p)
					}
				}
				if len(keep) == 0 {
					return &codeError{code: exitNotFound, msg: "no port " + args[0]}
				}
				ps = keep
			}
			type stat struct {
				Name      string            `json:"name"`
				RxPackets uint64            `json:"rx_packets"`
				RxBytes   uint64            `json:"rx_bytes"`
				TxPackets uint64            `json:"tx_packets"`
				TxBytes   uint64            `json:"tx_bytes"`
				Drops     map[string]uint64 `json:"drops"`
			}
			var out []stat
			var rows [][]string
			for _, p := range ps {
				out = append(out, stat{p.Name, p.RxPackets, p.RxBytes, p.TxPackets, p.TxBytes, p.Drops})
				var drops []string
				for _, r := range sortedKeys(p.Drops) {
					drops = append(drops, r+"="+u(p.Drops[r]))
				}
				rows = append(rows, []string{p.Name, u(p.RxPackets), u(p.RxBytes), u(p.TxPackets), u(p.TxBytes), strings.Join(drops, " ")})
			}
			if cl.json {
				return cl.printJSON(out)
			}
			cl.table("PORT\tRX_PKTS\tRX_BYTES\tTX_PKTS\tTX_BYTES\tDROPS", rows)
			return nil
		}}
}

// workersCmd prints the polling workers' counters, like OVS's
// dpif-netdev/pmd-stats-show.
func (cl *cli) workersCmd() *cobra.Command {
	return &cobra.Command{Use: "workers", Short: "Polling workers: queues, packets, average batch, busy share, busy ns per packet", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var ws []api.WorkerStatus
			if _, err := cl.c.getJSON("/v1/workers", &ws); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(ws)
			}
			var rows [][]string
			for _, w := range ws {
				cpu := "-"
				if w.CPU >= 0 {
					cpu = strconv.Itoa(w.CPU)
				}
				rows = append(rows, []string{strconv.Itoa(w.ID), cpu, u(w.Packets), u(w.Polls), u(w.BusyPolls),
					fmt.Sprintf("%.1f", w.AvgBatch), fmt.Sprintf("%.1f%%", w.BusyPct), fmt.Sprintf("%.1f", w.NsPerPkt), strings.Join(w.Queues, " ")})
			}
			cl.table("WORKER\tCPU\tPACKETS\tPOLLS\tBUSY_POLLS\tAVG_BATCH\tBUSY\tNS/PKT\tQUEUES", rows)
			// Packets into each pipeline stage, a line per worker.
			for _, w := range ws {
				var st []string
				for _, s := range w.Stages {
					st = append(st, s.Stage+"="+u(s.Packets))
				}
				if len(st) > 0 {
					fmt.Fprintf(cl.out, "worker %d stages: %s\n", w.ID, strings.Join(st, " "))
				}
			}
			return nil
		}}
}

func (cl *cli) configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Get or apply the whole desired config"}
	get := &cobra.Command{Use: "get", Short: "Print the desired config (YAML; --json for JSON)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			r, err := cl.c.do("GET", "/v1/config", nil)
			if err != nil {
				return err
			}
			if cl.json {
				_, err := cl.out.Write(r.body)
				return err
			}
			y, err := jsonToYAML(r.body)
			if err != nil {
				return err
			}
			fmt.Fprintf(cl.out, "# revision %s\n%s", strings.Trim(r.etag, `"`), y)
			return nil
		}}
	var file, rev string
	apply := &cobra.Command{Use: "apply -f FILE", Short: "Make FILE (YAML or JSON; - for stdin) the desired config; only what changed is applied", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if file == "" {
				return usageErr("config apply: -f FILE is required")
			}
			var b []byte
			var err error
			if file == "-" {
				b, err = io.ReadAll(os.Stdin)
			} else {
				b, err = os.ReadFile(file)
			}
			if err != nil {
				return usageErr("config apply: %v", err)
			}
			ct := "application/yaml"
			if strings.EqualFold(filepath.Ext(file), ".json") {
				ct = "application/json"
			}
			r, err := cl.c.do("PUT", "/v1/config", b, "Content-Type", ct, "If-Match", revisionHeader(rev))
			if err != nil {
				return err
			}
			if cl.json {
				_, err := cl.out.Write(r.body)
				return err
			}
			var res api.Result
			json.Unmarshal(r.body, &res)
			if len(res.Actions) == 0 {
				fmt.Fprintf(cl.out, "nothing changed (revision %d)\n", res.Revision)
				return nil
			}
			for _, a := range res.Actions {
				fmt.Fprintln(cl.out, a)
			}
			fmt.Fprintf(cl.out, "applied (revision %d)\n", res.Revision)
			return nil
		}}
	apply.Flags().StringVarP(&file, "file", "f", "", "config file (YAML, or JSON if it ends in .json; - reads stdin)")
	apply.Flags().StringVar(&rev, "revision", "", "only if the config is still at this revision; exit 4 otherwise")
	cmd.AddCommand(get, apply)
	return cmd
}

// vlanString is a port's VLAN settings in one line.
func vlanString(pc *api.PortConfig) string {
	var parts []string
	if pc.VLANMode != "" {
		parts = append(parts, "mode "+pc.VLANMode)
	}
	if pc.Tag != 0 {
		parts = append(parts, "tag "+strconv.Itoa(pc.Tag))
	}
	if len(pc.Trunks) != 0 {
		var ts []string
		for _, t := range pc.Trunks {
			ts = append(ts, strconv.Itoa(t))
		}
		parts = append(parts, "trunks "+strings.Join(ts, ","))
	}
	return strings.Join(parts, ", ")
}

func (cl *cli) fdbCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fdb", Short: "Bridges' learned MAC tables"}
	cmd.AddCommand(&cobra.Command{Use: "show BRIDGE", Short: "List a bridge's learned MACs", Args: cobra.ExactArgs(1),
		ValidArgsFunction: cl.completeNames("bridges"),
		RunE: func(_ *cobra.Command, args []string) error {
			var es []api.FDBEntry
			if _, err := cl.c.getJSON("/v1/bridges/"+url.PathEscape(args[0])+"/fdb", &es); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(es)
			}
			var rows [][]string
			for _, e := range es {
				rows = append(rows, []string{strconv.Itoa(e.VLAN), e.MAC, e.Port, strconv.Itoa(e.Age)})
			}
			cl.table("VLAN\tMAC\tPORT\tAGE", rows)
			return nil
		}})
	return cmd
}

func (cl *cli) routeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "route", Short: "Routers: interfaces and routes (configure them with config apply)"}
	list := &cobra.Command{Use: "list", Short: "List routers", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var rs []api.RouterStatus
			if _, err := cl.c.getJSON("/v1/routers", &rs); err != nil {
				return notYet(err, "routers")
			}
			if cl.json {
				return cl.printJSON(rs)
			}
			var rows [][]string
			for _, r := range rs {
				var ifs []string
				for _, i := range r.Interfaces {
					ifs = append(ifs, i.Name)
				}
				rows = append(rows, []string{r.Name, strings.Join(ifs, ","), strconv.Itoa(len(r.Routes))})
			}
			cl.table("NAME\tINTERFACES\tROUTES", rows)
			return nil
		}}
	show := &cobra.Command{Use: "show ROUTER", Short: "A router's interfaces and routing table", Args: cobra.ExactArgs(1),
		ValidArgsFunction: cl.completeNames("routers"),
		RunE: func(_ *cobra.Command, args []string) error {
			var r api.RouterStatus
			if _, err := cl.c.getJSON("/v1/routers/"+url.PathEscape(args[0]), &r); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(r)
			}
			var rows [][]string
			for _, i := range r.Interfaces {
				rows = append(rows, []string{i.Name, i.Bridge, strconv.Itoa(i.VLAN), i.MAC, strings.Join(i.Addresses, ",")})
			}
			fmt.Fprintf(cl.out, "router %s\n\n", r.Name)
			cl.table("INTERFACE\tBRIDGE\tVLAN\tMAC\tADDRESSES", rows)
			rows = nil
			for _, rt := range r.Routes {
				via := rt.Via
				if via == "" {
					via = "-"
				}
				rows = append(rows, []string{rt.Prefix, rt.Kind, via, rt.Interface})
			}
			fmt.Fprintln(cl.out)
			cl.table("PREFIX\tKIND\tVIA\tINTERFACE", rows)
			return nil
		}}
	cmd.AddCommand(list, show)
	return cmd
}

func (cl *cli) neighCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "neigh", Short: "Routers' neighbour tables (ARP and ND)"}
	cmd.AddCommand(&cobra.Command{Use: "show ROUTER", Short: "List a router's resolved neighbours", Args: cobra.ExactArgs(1),
		ValidArgsFunction: cl.completeNames("routers"),
		RunE: func(_ *cobra.Command, args []string) error {
			var ns []api.Neighbor
			if _, err := cl.c.getJSON("/v1/routers/"+url.PathEscape(args[0])+"/neighbors", &ns); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(ns)
			}
			var rows [][]string
			for _, n := range ns {
				rows = append(rows, []string{n.IP, n.MAC, n.Interface, strconv.Itoa(n.Age), n.State})
			}
			cl.table("IP\tMAC\tINTERFACE\tAGE\tSTATE", rows)
			return nil
		}})
	cmd.AddCommand(&cobra.Command{Use: "stats", Short: "Next-hop resolution: packets held, released and dropped, solicitations sent", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var st api.NeighborStats
			if _, err := cl.c.getJSON("/v1/neighbors/stats", &st); err != nil {
				return notYet(err, "neighbor stats")
			}
			if cl.json {
				return cl.printJSON(st)
			}
			var drops []string
			for _, r := range sortedKeys(st.Drops) {
				drops = append(drops, r+"="+u(st.Drops[r]))
			}
			cl.table("COUNTER\tVALUE", [][]string{
				{"held_packets", u(st.HeldPackets)},
				{"held_bytes", u(st.HeldBytes)},
				{"pending_next_hops", strconv.Itoa(st.PendingNextHops)},
				{"held_total", u(st.HeldTotal)},
				{"released", u(st.Released)},
				{"drops", strings.Join(drops, " ")},
				{"arp_requests", u(st.ARPRequests)},
				{"nd_solicitations", u(st.NDSolicitations)},
				{"refresh_probes", u(st.RefreshProbes)},
				{"updates_lost", u(st.UpdatesLost)},
			})
			return nil
		}})
	return cmd
}

func (cl *cli) traceCmd() *cobra.Command {
	var req api.TraceRequest
	var live string
	var count int
	var wait time.Duration
	cmd := &cobra.Command{Use: "trace --in-port PORT [header fields] | --live PORT [--count N]",
		Short: "Show how the pipeline handles a packet: each stage's decision and the output ports",
		Long: `With --in-port, trace a packet described by header fields through the
pipeline without sending it (like ovs-appctl ofproto/trace). With --live,
capture the next --count packets received on a port as they are forwarded
(like VPP's trace add), wait until they are in or --wait passes, and print
them.`,
		Example: `  vswitchctl trace --in-port a --eth-dst 02:00:00:00:00:02 --ipv4-src 10.10.0.2 --ipv4-dst 10.20.0.2 --ip-proto 6 --l4-dst 80
  vswitchctl trace --in-port t --vlan 20 --ipv6-src fd20::2 --ipv6-dst fd10::2
  vswitchctl trace --live a --count 10`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if live != "" {
				return cl.liveTrace(live, count, wait)
			}
			if req.InPort == "" {
				return usageErr("trace: give --in-port (a described packet) or --live PORT")
			}
			body, _ := json.Marshal(req)
			r, err := cl.c.do("POST", "/v1/trace", body)
			if err != nil {
				return notYet(err, "trace")
			}
			var res api.TraceResult
			if err := json.Unmarshal(r.body, &res); err != nil {
				return fmt.Errorf("trace answer: %v", err)
			}
			if cl.json {
				return cl.printJSON(res)
			}
			cl.printTrace(&res)
			return nil
		}}
	f := cmd.Flags()
	f.StringVar(&req.InPort, "in-port", "", "input port (required)")
	f.StringVar(&req.EthSrc, "eth-src", "", "source MAC")
	f.StringVar(&req.EthDst, "eth-dst", "", "destination MAC")
	f.IntVar(&req.VLAN, "vlan", 0, "802.1Q tag on the frame (0: untagged)")
	f.StringVar(&req.IPv4Src, "ipv4-src", "", "IPv4 source")
	f.StringVar(&req.IPv4Dst, "ipv4-dst", "", "IPv4 destination")
	f.StringVar(&req.IPv6Src, "ipv6-src", "", "IPv6 source")
	f.StringVar(&req.IPv6Dst, "ipv6-dst", "", "IPv6 destination")
	f.IntVar(&req.IPProto, "ip-proto", 0, "IP protocol: 6 TCP, 17 UDP (default), 1 or 58 ICMP echo")
	f.IntVar(&req.TTL, "ttl", 0, "TTL or hop limit (default 64)")
	f.IntVar(&req.L4Src, "l4-src", 0, "TCP/UDP source port")
	f.IntVar(&req.L4Dst, "l4-dst", 0, "TCP/UDP destination port")
	f.StringVar(&req.TCPFlags, "tcp-flags", "", "TCP flags, comma separated: syn, ack, fin, rst, psh, urg (default syn)")
	f.Uint32Var(&req.TCPSeq, "tcp-seq", 0, "TCP sequence number (conntrack checks it against the connection's window)")
	f.Uint32Var(&req.TCPAck, "tcp-ack", 0, "TCP acknowledgement number")
	f.StringVar(&live, "live", "", "capture packets received on this port instead")
	f.IntVar(&count, "count", 10, "with --live: packets to capture (1.."+strconv.Itoa(api.MaxLiveTrace)+")")
	f.DurationVar(&wait, "wait", 10*time.Second, "with --live: how long to wait for the packets")
	return cmd
}

// liveTrace arms a live trace on port, polls until count packets are in
// or wait passes, and prints what was captured.
func (cl *cli) liveTrace(port string, count int, wait time.Duration) error {
	if count < 1 || count > api.MaxLiveTrace {
		return usageErr("--count: %d is not in 1..%d", count, api.MaxLiveTrace)
	}
	path := "/v1/ports/" + url.PathEscape(port) + "/trace"
	body, _ := json.Marshal(api.LiveTraceRequest{Count: count})
	if _, err := cl.c.do("POST", path, body); err != nil {
		return notYet(err, "live trace")
	}
	var res api.LiveTrace
	deadline := time.Now().Add(wait)
	for {
		if _, err := cl.c.getJSON(path, &res); err != nil {
			return err
		}
		if res.Captured >= count || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if cl.json {
		return cl.printJSON(res)
	}
	fmt.Fprintf(cl.out, "port %s: %d of %d packets captured\n", res.Port, res.Captured, res.Count)
	for _, r := range res.Records {
		fmt.Fprintf(cl.out, "\nPacket %d  %s  worker %d queue %d\n  %s\n", r.Seq+1, r.Time.Format("15:04:05.000000"), r.Worker, r.Queue, r.Headers)
		cl.printTrace(&api.TraceResult{InPort: port, Stages: r.Stages, Outputs: r.Outputs, Dropped: r.Dropped})
		if r.MoreOutputs > 0 {
			fmt.Fprintf(cl.out, "  and %d more outputs\n", r.MoreOutputs)
		}
	}
	return nil
}

// printTrace prints a trace as ovs-appctl ofproto/trace does: stage by
// stage, then the verdict.
func (cl *cli) printTrace(res *api.TraceResult) {
	fmt.Fprintf(cl.out, "in_port: %s\n", res.InPort)
	for i, s := range res.Stages {
		fmt.Fprintf(cl.out, "%2d. %-9s %s\n", i+1, s.Stage, s.Decision)
	}
	if len(res.Outputs) == 0 {
		fmt.Fprintln(cl.out, "Datapath actions: drop")
	} else {
		var outs []string
		for _, o := range res.Outputs {
			tag := "untagged"
			if o.Tagged {
				tag = "tagged"
			}
			outs = append(outs, fmt.Sprintf("%s (vlan %d, %s)", o.Port, o.VLAN, tag))
		}
		fmt.Fprintf(cl.out, "Datapath actions: output %s\n", strings.Join(outs, ", "))
	}
	if len(res.Dropped) > 0 {
		fmt.Fprintf(cl.out, "Drops counted: %s\n", strings.Join(res.Dropped, ", "))
	}
}

// jsonToYAML re-encodes a JSON document as block YAML, keeping the key
// order.
func jsonToYAML(b []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	var clear func(*yaml.Node)
	clear = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			clear(c)
		}
	}
	clear(&n)
	return yaml.Marshal(&n)
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }

func sum(m map[string]uint64) uint64 {
	var t uint64
	for _, v := range m {
		t += v
	}
	return t
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
