package main

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/api"
)

type fakeSource []api.PortStatus

func (f fakeSource) Ports() []api.PortStatus { return f }

// port show prints why a port failed; port list stays as it was.
func TestPortShowError(t *testing.T) {
	srv := httptest.NewServer(api.NewHandler(api.Options{Source: fakeSource{{
		Name: "up0", Type: api.TypeAFXDP, Bridge: "br0", State: api.StateStopped,
		Error: "device eth9 disappeared; the port is stopped", Drops: map[string]uint64{},
	}}}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	addr := "tcp://" + strings.TrimPrefix(srv.URL, "http://")
	if code := run([]string{"--api", addr, "port", "show", "up0"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "error:") || !strings.Contains(out.String(), "device eth9 disappeared") {
		t.Errorf("port show:\n%s", out.String())
	}
}
