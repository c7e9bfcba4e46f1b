package main

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vswitch/vswitch/api"
)

// fakeLive captures one packet per read after being armed.
type fakeLive struct {
	mu    sync.Mutex
	count int
	got   int
}

func (f *fakeLive) Trace(string, []byte) (*api.TraceResult, error) { return &api.TraceResult{}, nil }

func (f *fakeLive) ArmTrace(port string, n int) error {
	if port != "a" {
		return fmt.Errorf("no port %q", port)
	}
	f.mu.Lock()
	f.count, f.got = n, 0
	f.mu.Unlock()
	return nil
}

func (f *fakeLive) DisarmTrace(string) error { return nil }

func (f *fakeLive) LiveTrace(port string) (*api.LiveTrace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := &api.LiveTrace{Port: port, Armed: true, Count: f.count, Records: []api.LiveTraceRecord{}}
	for i := 0; i < f.got; i++ {
		res.Records = append(res.Records, api.LiveTraceRecord{Seq: i, Len: 98, Headers: "ipv4 10.10.0.2 > 10.20.0.2",
			Stages:  []api.TraceStage{{Stage: "route", Decision: "via r1-v20 vlan 20"}},
			Outputs: []api.TraceOutput{{Port: "b", VLAN: 20}}})
	}
	res.Captured = len(res.Records)
	if f.got < f.count {
		f.got++
	}
	return res, nil
}

func TestTraceLive(t *testing.T) {
	srv := httptest.NewServer(api.NewHandler(api.Options{Source: fakeSource{}, Tracer: &fakeLive{}}))
	defer srv.Close()
	addr := "tcp://" + strings.TrimPrefix(srv.URL, "http://")
	var out, errOut bytes.Buffer
	if code := run([]string{"--api", addr, "trace", "--live", "a", "--count", "3"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	s := out.String()
	if !strings.Contains(s, "3 of 3 packets captured") || strings.Count(s, "via r1-v20 vlan 20") != 3 || !strings.Contains(s, "output b (vlan 20, untagged)") {
		t.Errorf("trace --live:\n%s", s)
	}
	out.Reset()
	if code := run([]string{"--api", addr, "trace", "--live", "nope"}, &out, &errOut); code != exitNotFound {
		t.Errorf("unknown port: exit %d", code)
	}
	if code := run([]string{"--api", addr, "trace", "--live", "a", "--count", "5000"}, &out, &errOut); code != exitUsage {
		t.Errorf("count out of range: exit %d", code)
	}
	if code := run([]string{"--api", addr, "trace"}, &out, &errOut); code != exitUsage {
		t.Errorf("no port: exit %d", code)
	}
}
