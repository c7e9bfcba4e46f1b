package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/vswitch/vswitch/acl"
	"github.com/vswitch/vswitch/api"
)

// aclFlags are the flags of acl add and acl set: an ACL's fields under
// the config's names, with '-' for '_'.
func aclFlags(f *pflag.FlagSet, a *acl.ACL, icmpType, icmpCode *int) {
	f.StringVar(&a.Port, "port", "", "port the ACL is bound to")
	f.StringVar(&a.Direction, "direction", "", "ingress (to the guest) or egress (from the guest)")
	f.StringVar(&a.Action, "action", "", "allow, deny or reject (TCP RST / ICMP unreachable)")
	f.IntVar(&a.Priority, "priority", 0, "0..65535; the highest matching priority wins")
	f.StringVar(&a.EtherType, "ethertype", "", "ipv4 or ipv6 (default: both)")
	f.StringVar(&a.Protocol, "protocol", "", "tcp, udp, sctp, icmp, icmpv6 or a number (default: any)")
	f.StringVar(&a.Source, "source", "", "source prefix or address")
	f.StringVar(&a.Destination, "destination", "", "destination prefix or address")
	f.StringVar(&a.Ports, "ports", "", "destination ports: 80 or 80-81 (tcp, udp, sctp)")
	f.StringVar(&a.SourcePorts, "source-ports", "", "source ports: 1024-65535 (tcp, udp, sctp)")
	f.IntVar(icmpType, "icmp-type", 0, "ICMP type (icmp, icmpv6)")
	f.IntVar(icmpCode, "icmp-code", 0, "ICMP code (with --icmp-type)")
}

// completeFixed completes a flag from a fixed list.
func completeFixed(words ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return words, cobra.ShellCompDirectiveNoFileComp
	}
}

func (cl *cli) registerACLFlagCompletion(cmd *cobra.Command) {
	cmd.RegisterFlagCompletionFunc("port", cl.completeFlagNames("ports"))
	cmd.RegisterFlagCompletionFunc("direction", completeFixed("ingress", "egress"))
	cmd.RegisterFlagCompletionFunc("action", completeFixed("allow", "deny", "reject"))
	cmd.RegisterFlagCompletionFunc("ethertype", completeFixed("ipv4", "ipv6"))
	cmd.RegisterFlagCompletionFunc("protocol", completeFixed("tcp", "udp", "sctp", "icmp", "icmpv6"))
}

// aclMatch is an ACL's match in one line: "ipv4 tcp src 10.0.0.0/8 dport 22".
func aclMatch(a acl.ACL) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, strings.TrimSpace(k+" "+v))
		}
	}
	add("", a.EtherType)
	add("", a.Protocol)
	add("src", a.Source)
	add("dst", a.Destination)
	add("sport", a.SourcePorts)
	add("dport", a.Ports)
	if a.ICMPType != nil {
		add("type", strconv.Itoa(*a.ICMPType))
	}
	if a.ICMPCode != nil {
		add("code", strconv.Itoa(*a.ICMPCode))
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, " ")
}

func (cl *cli) aclCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "acl", Short: "List, show, add, change and delete ACLs (stateless, per port, by priority)"}
	list := &cobra.Command{Use: "list", Short: "List ACLs (among equal priorities, the first listed wins)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var as []api.ACLStatus
			if _, err := cl.c.getJSON("/v1/acls", &as); err != nil {
				return notYet(err, "acls")
			}
			if cl.json {
				return cl.printJSON(as)
			}
			var rows [][]string
			for _, a := range as {
				rows = append(rows, []string{a.Name, a.Port, a.Direction, strconv.Itoa(a.Priority), a.Action, aclMatch(a.ACL)})
			}
			cl.table("NAME\tPORT\tDIRECTION\tPRIORITY\tACTION\tMATCH", rows)
			return nil
		}}
	show := &cobra.Command{Use: "show NAME", Short: "Show an ACL", Args: cobra.ExactArgs(1), ValidArgsFunction: cl.completeNames("acls"),
		RunE: func(_ *cobra.Command, args []string) error {
			var a api.ACLStatus
			if _, err := cl.c.getJSON("/v1/acls/"+url.PathEscape(args[0]), &a); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(a)
			}
			tw := tabwriter.NewWriter(cl.out, 0, 4, 2, ' ', 0)
			kv := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
			kv("name", a.Name)
			kv("port", a.Port)
			kv("direction", a.Direction)
			kv("priority", strconv.Itoa(a.Priority))
			kv("action", a.Action)
			kv("match", aclMatch(a.ACL))
			kv("revision", u(a.Revision))
			return tw.Flush()
		}}

	var newACL acl.ACL
	var addType, addCode int
	var addFile string
	add := &cobra.Command{Use: "add NAME --port PORT --direction DIR --action ACTION [match flags] | add [NAME] -f FILE",
		Short: "Add an ACL from flags or from a file (YAML or JSON, the config's field names); exit 4 if it exists",
		Example: `  vswitchctl acl add no-telnet --port vm1 --direction ingress --priority 100 --protocol tcp --ports 23 --action deny
  vswitchctl acl add -f no-telnet.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body []byte
			var name string
			var err error
			if addFile != "" {
				if body, name, err = resourceFile(addFile, args); err != nil {
					return err
				}
			} else {
				if len(args) == 0 {
					return usageErr("acl add: give NAME and flags, or -f FILE")
				}
				newACL.Name, name = args[0], args[0]
				if cmd.Flags().Changed("icmp-type") {
					newACL.ICMPType = &addType
				}
				if cmd.Flags().Changed("icmp-code") {
					newACL.ICMPCode = &addCode
				}
				body, _ = json.Marshal(newACL)
			}
			r, err := cl.c.do("POST", "/v1/acls", body)
			if err != nil {
				return err
			}
			return cl.printResult(r, "acl "+name+" added")
		}}
	aclFlags(add.Flags(), &newACL, &addType, &addCode)
	add.Flags().StringVarP(&addFile, "file", "f", "", "the ACL in YAML or JSON (- reads stdin)")
	cl.registerACLFlagCompletion(add)

	var setACL acl.ACL
	var setType, setCode int
	var setFile, setRev string
	set := &cobra.Command{Use: "set NAME [field flags] | set NAME -f FILE",
		Short: "Change fields of an ACL, or replace it with a file's; the filters are recompiled, no port restarts",
		Example: `  vswitchctl acl set no-telnet --priority 200 --revision 7
  vswitchctl acl set no-telnet --source ""      # clear a field`,
		Args: cobra.ExactArgs(1), ValidArgsFunction: cl.completeNames("acls"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if setFile != "" {
				return cl.replaceFromFile("acl", "acls", setFile, args, setRev)
			}
			patch := map[string]any{}
			cmd.Flags().Visit(func(f *pflag.Flag) {
				switch f.Name {
				case "priority":
					patch["priority"] = setACL.Priority
				case "icmp-type":
					patch["icmp_type"] = setType
				case "icmp-code":
					patch["icmp_code"] = setCode
				case "port", "direction", "action", "ethertype", "protocol", "source", "destination", "ports", "source-ports":
					patch[strings.ReplaceAll(f.Name, "-", "_")] = f.Value.String()
				}
			})
			if len(patch) == 0 {
				return usageErr("acl set: nothing to change (see --help)")
			}
			return cl.patch("acl", "acls", args[0], patch, setRev)
		}}
	aclFlags(set.Flags(), &setACL, &setType, &setCode)
	set.Flags().StringVarP(&setFile, "file", "f", "", "replace the ACL with this one (YAML or JSON; - reads stdin)")
	set.Flags().StringVar(&setRev, "revision", "", "only if the ACL is still at this revision (its ETag); exit 4 otherwise")
	cl.registerACLFlagCompletion(set)

	cmd.AddCommand(list, show, add, set, cl.delCmd("acl", "acls", "Delete an ACL"))
	return cmd
}

// parseRule reads a security group rule given as KEY=VALUE pairs
// separated by commas, with the config's keys:
// direction=ingress,protocol=tcp,ports=22,remote=10.0.0.0/8.
func parseRule(s string) (map[string]any, error) {
	rule := map[string]any{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, usageErr("--rule %q: %q is not KEY=VALUE", s, kv)
		}
		k = strings.ReplaceAll(k, "-", "_")
		if _, dup := rule[k]; dup {
			return nil, usageErr("--rule %q: %s given twice", s, k)
		}
		switch k {
		case "icmp_type", "icmp_code":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, usageErr("--rule %q: %s: %q is not a number", s, k, v)
			}
			rule[k] = n
		default:
			rule[k] = v
		}
	}
	return rule, nil
}

func parseRules(specs []string) ([]map[string]any, error) {
	rules := []map[string]any{}
	for _, s := range specs {
		r, err := parseRule(s)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

const ruleHelp = "a rule as KEY=VALUE,...: direction (ingress or egress), ethertype, protocol, ports, icmp_type, icmp_code, remote or remote_group; repeat for more rules"

func (cl *cli) sgCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sg", Aliases: []string{"security-group"},
		Short: "List, show, add, change and delete security groups (stateful; ports join them with port set --security-groups)"}
	list := &cobra.Command{Use: "list", Short: "List security groups and their member ports", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var gs []api.SecurityGroupStatus
			if _, err := cl.c.getJSON("/v1/security_groups", &gs); err != nil {
				return notYet(err, "security_groups")
			}
			if cl.json {
				return cl.printJSON(gs)
			}
			var rows [][]string
			for _, g := range gs {
				rows = append(rows, []string{g.Name, strconv.Itoa(len(g.Rules)), strings.Join(g.Ports, ",")})
			}
			cl.table("NAME\tRULES\tPORTS", rows)
			return nil
		}}
	show := &cobra.Command{Use: "show NAME", Short: "Show a security group: its rules and member ports", Args: cobra.ExactArgs(1),
		ValidArgsFunction: cl.completeNames("security_groups"),
		RunE: func(_ *cobra.Command, args []string) error {
			var g api.SecurityGroupStatus
			if _, err := cl.c.getJSON("/v1/security_groups/"+url.PathEscape(args[0]), &g); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(g)
			}
			fmt.Fprintf(cl.out, "name: %s\nports: %s\nrevision: %d\n\n", g.Name, strings.Join(g.Ports, ", "), g.Revision)
			var rows [][]string
			for _, r := range g.Rules {
				icmp := "-"
				if r.ICMPType != nil {
					icmp = strconv.Itoa(*r.ICMPType)
					if r.ICMPCode != nil {
						icmp += "/" + strconv.Itoa(*r.ICMPCode)
					}
				}
				remote := r.Remote
				if r.RemoteGroup != "" {
					remote = "group " + r.RemoteGroup
				}
				rows = append(rows, []string{r.Direction, dash(r.EtherType), dash(r.Protocol), dash(r.Ports), icmp, dash(remote)})
			}
			cl.table("DIRECTION\tETHERTYPE\tPROTOCOL\tPORTS\tICMP\tREMOTE", rows)
			return nil
		}}

	var addRules []string
	var addFile string
	add := &cobra.Command{Use: "add NAME [--rule RULE]... | add [NAME] -f FILE",
		Short: "Add a security group from --rule flags or from a file (YAML or JSON, the config's field names); exit 4 if it exists",
		Example: `  vswitchctl sg add web --rule direction=ingress,protocol=tcp,ports=80-81,remote=0.0.0.0/0 --rule direction=egress
  vswitchctl sg add -f web.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var body []byte
			var name string
			var err error
			if addFile != "" {
				if len(addRules) > 0 {
					return usageErr("sg add: --rule and -f do not go together")
				}
				if body, name, err = resourceFile(addFile, args); err != nil {
					return err
				}
			} else {
				if len(args) == 0 {
					return usageErr("sg add: give NAME (and --rule flags), or -f FILE")
				}
				name = args[0]
				rules, err := parseRules(addRules)
				if err != nil {
					return err
				}
				body, _ = json.Marshal(map[string]any{"name": name, "rules": rules})
			}
			r, err := cl.c.do("POST", "/v1/security_groups", body)
			if err != nil {
				return err
			}
			return cl.printResult(r, "security group "+name+" added")
		}}
	add.Flags().StringArrayVar(&addRules, "rule", nil, ruleHelp)
	add.Flags().StringVarP(&addFile, "file", "f", "", "the group in YAML or JSON (- reads stdin)")

	var setRules []string
	var setFile, setRev string
	set := &cobra.Command{Use: "set NAME (--rule RULE... | --no-rules | -f FILE)",
		Short: "Replace a security group's rules; the filters are recompiled, no port restarts",
		Args:  cobra.ExactArgs(1), ValidArgsFunction: cl.completeNames("security_groups"),
		RunE: func(cmd *cobra.Command, args []string) error {
			noRules, _ := cmd.Flags().GetBool("no-rules")
			switch {
			case setFile != "" && (len(setRules) > 0 || noRules):
				return usageErr("sg set: --rule, --no-rules and -f do not go together")
			case setFile != "":
				return cl.replaceFromFile("security group", "security_groups", setFile, args, setRev)
			case len(setRules) == 0 && !noRules:
				return usageErr("sg set: give --rule flags, --no-rules or -f FILE")
			case len(setRules) > 0 && noRules:
				return usageErr("sg set: --rule and --no-rules do not go together")
			}
			rules, err := parseRules(setRules)
			if err != nil {
				return err
			}
			return cl.patch("security group", "security_groups", args[0], map[string]any{"rules": rules}, setRev)
		}}
	set.Flags().StringArrayVar(&setRules, "rule", nil, ruleHelp+" (replaces every rule)")
	set.Flags().Bool("no-rules", false, "remove every rule")
	set.Flags().StringVarP(&setFile, "file", "f", "", "replace the group with this one (YAML or JSON; - reads stdin)")
	set.Flags().StringVar(&setRev, "revision", "", "only if the group is still at this revision (its ETag); exit 4 otherwise")

	del := cl.delCmd("security group", "security_groups", "Delete a security group (exit 4 while a port or a remote_group names it)")
	cmd.AddCommand(list, show, add, set, del)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// patch sends a merge patch to /v1/collection/name.
func (cl *cli) patch(kind, collection, name string, patch map[string]any, rev string) error {
	b, _ := json.Marshal(patch)
	r, err := cl.c.do("PATCH", "/v1/"+collection+"/"+url.PathEscape(name), b, "If-Match", revisionHeader(rev))
	if err != nil {
		return err
	}
	return cl.printResult(r, kind+" "+name+" changed")
}

// replaceFromFile PUTs a file's resource over /v1/collection/NAME.
func (cl *cli) replaceFromFile(kind, collection, file string, args []string, rev string) error {
	body, name, err := resourceFile(file, args)
	if err != nil {
		return err
	}
	r, err := cl.c.do("PUT", "/v1/"+collection+"/"+url.PathEscape(name), body, "If-Match", revisionHeader(rev))
	if err != nil {
		return err
	}
	return cl.printResult(r, kind+" "+name+" replaced")
}

// delCmd deletes /v1/collection/NAME, with --revision.
func (cl *cli) delCmd(kind, collection, short string) *cobra.Command {
	var rev string
	del := &cobra.Command{Use: "del NAME", Aliases: []string{"delete", "rm"}, Short: short, Args: cobra.ExactArgs(1),
		ValidArgsFunction: cl.completeNames(collection),
		RunE: func(_ *cobra.Command, args []string) error {
			if _, err := cl.c.do("DELETE", "/v1/"+collection+"/"+url.PathEscape(args[0]), nil, "If-Match", revisionHeader(rev)); err != nil {
				return err
			}
			if cl.json {
				return cl.printJSON(map[string]string{"deleted": args[0]})
			}
			fmt.Fprintln(cl.out, kind+" "+args[0]+" deleted")
			return nil
		}}
	del.Flags().StringVar(&rev, "revision", "", "only if the "+kind+" is still at this revision; exit 4 otherwise")
	return del
}

// resourceFile reads one resource from a YAML or JSON file ("-": stdin)
// and returns it as JSON with its name: the file's, else args[0]; both
// given must agree. The daemon checks the fields.
func resourceFile(file string, args []string) ([]byte, string, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, "", usageErr("%v", err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, "", usageErr("%s: %v", file, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, "", usageErr("%s: want one object with the config's field names (name, ...)", file)
	}
	name, _ := m["name"].(string)
	if _, has := m["name"]; has && name == "" {
		return nil, "", usageErr("%s: name: want a non-empty string", file)
	}
	switch {
	case len(args) == 1 && name == "":
		name = args[0]
		m["name"] = name
	case len(args) == 1 && name != args[0]:
		return nil, "", usageErr("%s names %q, the command line %q", file, name, args[0])
	case name == "":
		return nil, "", usageErr("%s: no name (give one in the file or on the command line)", file)
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, "", usageErr("%s: %v", file, err)
	}
	return out, name, nil
}
