package acl

import (
	"github.com/vswitch/vswitch/switch/header"
	"testing"
)

func checkAgainstRef(t *testing.T, c *Classifier, rules []Rule, ps []header.Parsed, ms []Meta) {
	t.Helper()
	for i := range ps {
		got := c.Lookup(&ps[i], ms[i])
		want := refLookup(rules, &ps[i], ms[i])
		if want < 0 {
			if got.Action != NoMatch {
				t.Fatalf("packet %d %+v %+v: got rule %d (%+v), want no match", i, ps[i], ms[i], got.Rule, rules[got.Rule])
			}
			continue
		}
		if got.Rule < 0 || c.rank[got.Rule] != c.rank[want] || got.Action != rules[want].Action {
			t.Fatalf("packet %d %+v %+v: got %+v, want rule %d (%+v)", i, ps[i], ms[i], got, want, rules[want])
		}
	}
}

func TestClassifierMatchesReference(t *testing.T) {
	for _, n := range []int{1, 10, 100, 1000, 10000} {
		for _, nports := range []int{1, 4} {
			rules := sgLikeRules(uint64(n), n, nports)
			c, err := CompileRules(rules)
			if err != nil {
				t.Fatal(err)
			}
			ps, ms := packetsFor(7, rules, 2000)
			checkAgainstRef(t, c, rules, ps, ms)
			t.Logf("%d rules on %d ports: %+v", n, nports, c.Stats())
		}
	}
}
