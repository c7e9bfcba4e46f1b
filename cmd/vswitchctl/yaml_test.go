package main

import (
	"reflect"
	"testing"

	"github.com/vswitch/vswitch/api"
)

// config get prints YAML that config apply reads back to the same config.
func TestJSONToYAMLRoundTrip(t *testing.T) {
	in := `{"api":{"listen":"unix:///run/vswitch/api.sock","socket_mode":"0660"},"run_dir":"/run/vswitch","log":{"level":"info"},"dataplane":{"workers":1,"cpus":[0],"poll":"adaptive"},"bridges":[{"name":"br0","mac_aging":300}],"ports":[{"name":"vm1","type":"vhostuser","bridge":"br0","socket":"/run/vswitch/vm1.sock","mode":"server","queues":1,"socket_mode":"0600"},{"name":"007","type":"vhostuser","bridge":"br0","socket":"true","mode":"client","queues":2},{"name":"up0","type":"afxdp","bridge":"br0","device":"eth1","queues":[0,2]}]}`
	y, err := jsonToYAML([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	c, err := api.Parse(y)
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	want, _ := api.DecodeConfig([]byte(in), false)
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("round trip:\n%s\n%+v\nwant %+v", y, c, want)
	}
}
