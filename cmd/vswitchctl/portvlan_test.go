package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/api"
)

// port add sends the VLAN flags as the config's tag, trunks, vlan_mode.
func TestPortAddVLANFlags(t *testing.T) {
	var got api.PortConfig
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &got)
		w.Header().Set("ETag", `"7"`)
		w.WriteHeader(http.StatusCreated)
		w.Write(b)
	}))
	defer srv.Close()
	addr := "tcp://" + strings.TrimPrefix(srv.URL, "http://")
	var out, errOut bytes.Buffer
	if code := run([]string{"--api", addr, "port", "add", "t", "--bridge", "br0", "--socket", "t.sock", "--trunks", "10,20", "--vlan-mode", "native-untagged", "--tag", "10"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if got.Tag != 10 || len(got.Trunks) != 2 || got.Trunks[1] != 20 || got.VLANMode != "native-untagged" {
		t.Fatalf("sent %+v", got)
	}
	if code := run([]string{"--api", addr, "port", "add", "t", "--bridge", "br0", "--trunks", "x"}, &out, &errOut); code != exitUsage {
		t.Errorf("bad --trunks: exit %d", code)
	}
	if s := vlanString(&got); s != "mode native-untagged, tag 10, trunks 10,20" {
		t.Errorf("vlan line %q", s)
	}
}
