package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/tmp", "vsd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func load(t *testing.T, dir, yaml string) *api.Config {
	t.Helper()
	c, err := api.Load([]byte(yaml), dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const twoPorts = `bridges: [{name: br0}, {name: br1}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock}
`

func frame(src, dst byte, n int) []byte {
	f := make([]byte, 64)
	copy(f, []byte{0x52, 0x54, 0, 0, 0, dst, 0x52, 0x54, 0, 0, 0, src, 0x08, 0x00})
	f[20] = byte(n)
	return f
}

// waitFrames polls fe's receive ring until it holds n frames.
func waitFrames(t *testing.T, fe *vhostusertest.Frontend, n int) [][]byte {
	t.Helper()
	var got [][]byte
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		got = append(got, fe.Received(0)...)
		time.Sleep(time.Millisecond)
	}
	if len(got) != n {
		t.Fatalf("received %d frames, want %d", len(got), n)
	}
	return got
}

func waitRunning(t *testing.T, d *Daemon, name string) api.PortStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range d.Ports() {
			if p.Name == name && p.State == api.StateRunning {
				return p
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("port %s never ran", name)
	return api.PortStatus{}
}

// startTwoPorts starts a daemon with the twoPorts config in a fresh dir,
// logging (discarded) to the returned logger.
func startTwoPorts(t *testing.T) (*Daemon, string, *logrus.Logger) {
	t.Helper()
	dir := shortDir(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	d, err := Start(load(t, dir, twoPorts), logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, dir, log
}

// Adding, changing and removing other ports and bridges leaves a running
// port's connection and traffic alone.
func TestReconcileTouchesOnlyWhatChanged(t *testing.T) {
	d, dir, log := startTwoPorts(t)
	fe1 := vhostusertest.Connect(t, dir+"/vm1.sock", virtiotest.NewGuest(t, 4<<20), vhostusertest.Options{})
	fe2 := vhostusertest.Connect(t, dir+"/vm2.sock", virtiotest.NewGuest(t, 4<<20), vhostusertest.Options{})
	waitRunning(t, d, "vm1")
	waitRunning(t, d, "vm2")
	fe2.PostRxBuffers(0, 200, 2048)
	fe1.PostRxBuffers(0, 200, 2048)
	// vm2 learns its MAC, so that vm1's frames are unicast to it.
	fe2.SendPacket(0, frame(2, 1, 0))
	waitFrames(t, fe1, 1)

	steps := []struct {
		yaml string
		want []string
	}{
		{twoPorts + "  - {name: vm3, type: vhostuser, bridge: br0, socket: vm3.sock}\n", []string{"add port vm3"}},
		{twoPorts + "  - {name: vm3, type: vhostuser, bridge: br0, socket: vm3.sock, queues: 2}\n", []string{"remove port vm3", "add port vm3"}},
		{twoPorts + "  - {name: vm3, type: vhostuser, bridge: br1, socket: vm3.sock, mode: client}\n", []string{"remove port vm3", "add port vm3"}},
		{strings.Replace(twoPorts, "{name: br1}", "{name: br1, mac_aging: 20}", 1) + "  - {name: vm3, type: vhostuser, bridge: br1, socket: vm3.sock, mode: client}\n",
			[]string{"remove port vm3", "remove bridge br1", "add bridge br1", "add port vm3"}},
		{twoPorts, []string{"remove port vm3", "remove bridge br1", "add bridge br1"}},
		{"bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock}\n  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock}\nlog: {level: debug}\n",
			[]string{"remove bridge br1", "update log"}},
	}
	sent := 0
	for i, st := range steps {
		// Traffic from vm1 to vm2 while the change happens.
		stop := make(chan struct{})
		done := make(chan int)
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				if n < 100 && fe1.SendPacket(0, frame(1, 2, sent+n)) {
					n++
				}
				time.Sleep(100 * time.Microsecond)
			}
		}()
		acts, err := d.Reconcile(load(t, dir, st.yaml))
		close(stop)
		n := <-done
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var got []string
		for _, a := range acts {
			got = append(got, a.String())
		}
		if strings.Join(got, ",") != strings.Join(st.want, ",") {
			t.Errorf("step %d: did %q, want %q", i, got, st.want)
		}
		waitFrames(t, fe2, n)
		fe2.PostRxBuffers(0, n, 2048)
		sent += n
	}
	ps := map[string]api.PortStatus{}
	for _, p := range d.Ports() {
		ps[p.Name] = p
	}
	for _, name := range []string{"vm1", "vm2"} {
		p := ps[name]
		if p.State != api.StateRunning || p.Protocol["connects"] != 1 || len(p.Drops) != 0 {
			t.Errorf("%s disturbed: state %s, connects %d, drops %v", name, p.State, p.Protocol["connects"], p.Drops)
		}
	}
	if ps["vm1"].RxPackets != uint64(sent) || ps["vm2"].TxPackets != uint64(sent) || ps["vm1"].TxPackets != 1 {
		t.Errorf("vm1 rx %d, vm2 tx %d, sent %d", ps["vm1"].RxPackets, ps["vm2"].TxPackets, sent)
	}
	if _, err := os.Stat(dir + "/vm3.sock"); !os.IsNotExist(err) {
		t.Errorf("removed port's socket still there: %v", err)
	}
	if lv := log.GetLevel(); lv != logrus.DebugLevel {
		t.Errorf("log level %v after the update", lv)
	}

	// Metrics: the counters by port and drop reason, read at scrape time.
	rec := httptest.NewRecorder()
	d.MetricsHandler(func() uint64 { return 7 }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		fmt.Sprintf(`vswitch_port_rx_packets_total{bridge="br0",port="vm1",type="vhostuser"} %d`, sent),
		`vswitch_port_drops_total{bridge="br0",port="vm2",reason="no_guest_rx_buffer",type="vhostuser"} 0`,
		`vswitch_port_running{bridge="br0",port="vm1",type="vhostuser"} 1`,
		"vswitch_config_revision 7",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q in\n%s", want, body)
		}
	}
}

// A change that fails part-way is undone by reconciling back: the ports
// that ran still run.
func TestReconcileFailureRollsBack(t *testing.T) {
	d, dir, _ := startTwoPorts(t)
	cfg := load(t, dir, twoPorts)
	// Something that is not a socket sits where vm4's socket would go.
	os.WriteFile(dir+"/vm4.sock", []byte("x"), 0o600)
	store := api.NewStore(api.NewState(cfg), d.Reconcile, nil)
	bad := twoPorts + "  - {name: vm3, type: vhostuser, bridge: br1, socket: vm3.sock}\n  - {name: vm4, type: vhostuser, bridge: br1, socket: vm4.sock}\n"
	c, _ := api.Parse([]byte(bad))
	if _, err := store.Replace(c, 0, false); err == nil || !strings.Contains(err.Error(), "vm4") {
		t.Fatalf("apply: %v", err)
	}
	var names []string
	for _, p := range d.Ports() {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "vm1,vm2" {
		t.Errorf("after the rollback the ports are %v", names)
	}
	if !bytes.Equal(mustJSON(d.Running()), mustJSON(cfg)) {
		t.Errorf("running config %+v, want %+v", d.Running(), cfg)
	}
}

func mustJSON(c *api.Config) []byte {
	c = c.Clone()
	c.Normalize()
	b, _ := jsonMarshal(c)
	return b
}

var jsonMarshal = json.Marshal

// A port whose front-end sent a message we cannot read says why in its
// status (GET /v1/ports/{name}); the next good connection clears it.
func TestPortStatusError(t *testing.T) {
	d, dir, _ := startTwoPorts(t)
	h := api.NewHandler(api.Options{Source: d})
	get := func() api.PortStatus {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/ports/vm1", nil))
		var ps api.PortStatus
		if err := json.Unmarshal(rec.Body.Bytes(), &ps); err != nil {
			t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
		}
		return ps
	}
	fe := vhostusertest.Connect(t, dir+"/vm1.sock", virtiotest.NewGuest(t, 4<<20), vhostusertest.Options{})
	waitRunning(t, d, "vm1")
	if ps := get(); ps.Error != "" {
		t.Errorf("running port with error %q", ps.Error)
	}
	hdr := make([]byte, 12)
	hdr[0], hdr[4] = 1, 0x7 // GET_FEATURES with a version the protocol does not have
	fe.SendRaw(hdr)
	if !fe.Closed(5 * time.Second) {
		t.Fatal("connection still open")
	}
	deadline := time.Now().Add(5 * time.Second)
	ps := get()
	for ps.State != api.StateWaiting && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		ps = get()
	}
	if ps.State != api.StateWaiting || !strings.HasPrefix(ps.Error, "connection closed: unreadable message") {
		t.Errorf("state %q error %q, want waiting and why the connection closed", ps.State, ps.Error)
	}
	vhostusertest.Connect(t, dir+"/vm1.sock", virtiotest.NewGuest(t, 4<<20), vhostusertest.Options{})
	if ps := waitRunning(t, d, "vm1"); ps.Error != "" {
		t.Errorf("error %q after a good connection", ps.Error)
	}
}
