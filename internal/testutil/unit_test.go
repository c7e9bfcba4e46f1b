package testutil

import (
	"bytes"
	"compress/gzip"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The testdata logs are real: testpmd-io-2port.log is the switch of
// TestGuestsPingThroughTestpmd, the rxonly/txonly pair is TestTestpmdLoopbackReference.
func TestParseTestpmdForwardStats(t *testing.T) {
	for _, tc := range []struct {
		file string
		want map[int]PortStats
	}{
		{"testpmd-io-2port.log", map[int]PortStats{
			0: {RxPackets: 9, TxPackets: 7},
			1: {RxPackets: 7, TxPackets: 8, TxDropped: 1},
		}},
		{"testpmd-rxonly.log", map[int]PortStats{0: {RxPackets: 61066784}}},
		{"testpmd-txonly.log", map[int]PortStats{0: {TxPackets: 61066784, TxDropped: 458432}}},
	} {
		got := ParseTestpmdForwardStats(readTestdata(t, tc.file))
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.file, got, tc.want)
			continue
		}
		for p, w := range tc.want {
			if got[p] != w {
				t.Errorf("%s port %d: got %+v, want %+v", tc.file, p, got[p], w)
			}
		}
	}
	if got := ParseTestpmdForwardStats("no stats here\n"); len(got) != 0 {
		t.Errorf("empty log: got %v", got)
	}
}

// Expected values come from peers/scripts/pps.py on the same files.
func TestTestpmdRate(t *testing.T) {
	rxLog, txLog := readTestdata(t, "testpmd-rxonly.log"), readTestdata(t, "testpmd-txonly.log")
	for _, tc := range []struct {
		log            string
		skip           int
		secs           float64
		wantRx, wantTx float64
	}{
		{rxLog, 0, 100, 11.847, 0},
		{rxLog, 1, 100, 15.249, 0},
		{rxLog, 1, 2, 15.249, 0}, // the block crossing 2 s is included whole, as in pps.py
		{txLog, 0, 0, 0, 15.279},
		{txLog, 1, 0, 0, 0}, // only one active block: nothing left after skipping it
	} {
		rx, tx := TestpmdRate(tc.log, 0, tc.skip, tc.secs)
		if math.Abs(rx-tc.wantRx) > 0.001 || math.Abs(tx-tc.wantTx) > 0.001 {
			t.Errorf("skip=%d secs=%v: got rx %.3f tx %.3f, want rx %.3f tx %.3f",
				tc.skip, tc.secs, rx, tx, tc.wantRx, tc.wantTx)
		}
	}
	if rx, tx := TestpmdRate(rxLog, 1, 0, 0); rx != 0 || tx != 0 {
		t.Errorf("absent port: got %v %v", rx, tx)
	}
}

func TestMemFailure(t *testing.T) {
	log := "EAL: ok\nupdate_memory_region(): Too many memory regions\nvirtio_user_start_device(): (x.sock) Failed to start device\n"
	if got := memFailure(log); got != "update_memory_region(): Too many memory regions" {
		t.Errorf("memFailure = %q", got)
	}
	if got := memFailure(readTestdata(t, "testpmd-io-2port.log")); got != "" {
		t.Errorf("false positive: %q", got)
	}
}

func TestVersionLess(t *testing.T) {
	if !versionLess("/boot/vmlinuz-6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-56-amd64") {
		t.Error("6.1.0-9 should sort before 6.1.0-56")
	}
	if versionLess("/boot/vmlinuz-6.10.0-1-amd64", "/boot/vmlinuz-6.9.0-1-amd64") {
		t.Error("6.10 should sort after 6.9")
	}
}

// cpioEntry is one parsed newc entry.
type cpioEntry struct {
	mode       int64
	rmaj, rmin int64
	data       []byte
}

// readCpio parses a newc archive (test-side reader, independent of the writer's helpers).
func readCpio(t *testing.T, b []byte) map[string]cpioEntry {
	t.Helper()
	out := map[string]cpioEntry{}
	align := func(n int) int { return (n + 3) &^ 3 }
	off := 0
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad cpio header at %d", off)
		}
		field := func(i int) int64 {
			v, err := strconv.ParseInt(string(b[off+6+8*i:off+14+8*i]), 16, 64)
			if err != nil {
				t.Fatalf("bad cpio field %d at %d", i, off)
			}
			return v
		}
		mode, size, namesize := field(1), int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		dataOff := align(off + 110 + namesize)
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = cpioEntry{mode: mode, rmaj: field(9), rmin: field(10), data: b[dataOff : dataOff+size]}
		off = align(dataOff + size)
	}
}

func TestBuildInitramfs(t *testing.T) {
	_, kver, err := GuestKernel()
	Require(t, err == nil, "%v", err)
	_, err = os.Stat(BusyboxPath)
	Require(t, err == nil, "busybox-static: %v", err)

	var buf bytes.Buffer
	if err := BuildInitramfs(&buf, kver); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	files := readCpio(t, raw)
	t.Logf("kernel %s: %d entries, %d KiB uncompressed", kver, len(files), len(raw)/1024)

	if e := files["init"]; !bytes.Equal(e.data, guestInit) || e.mode != cpioReg|0o755 {
		t.Errorf("init: mode %o, %d bytes", e.mode, len(e.data))
	}
	if e := files["bin/busybox"]; len(e.data) < 100000 || string(e.data[:4]) != "\x7fELF" {
		t.Errorf("bin/busybox: %d bytes", len(e.data))
	}
	for _, a := range GuestApplets {
		if e := files["bin/"+a]; e.mode != cpioLink|0o777 || string(e.data) != "busybox" {
			t.Errorf("bin/%s: mode %o -> %q", a, e.mode, e.data)
		}
	}
	if e := files["dev/console"]; e.mode != cpioChr|0o600 || e.rmaj != 5 || e.rmin != 1 {
		t.Errorf("dev/console: %+v", e)
	}
	order := strings.Fields(string(files["lib/modules/order"].data))
	if len(order) == 0 {
		t.Fatal("no modules in lib/modules/order")
	}
	for _, m := range order {
		if e := files["lib/modules/"+m+".ko"]; len(e.data) < 4 || string(e.data[:4]) != "\x7fELF" {
			t.Errorf("module %s is not an uncompressed ELF", m)
		}
	}
	if order[len(order)-1] != "virtio_net" {
		t.Errorf("virtio_net must load last: %v", order)
	}
}
