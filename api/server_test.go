package api

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A client that sends its headers too slowly is cut off: it cannot hold a
// connection of the daemon.
func TestSlowClientTimesOut(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(NewHandler(Options{Source: fakeSource{}}))
	go srv.Serve(ln)
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /v1/ports HTTP/1.1\r\nHost: x\r\n")) // and never the end
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	if d := time.Since(start); d > 12*time.Second {
		t.Fatalf("slow client held the connection for %v", d)
	}
}

// The API socket gets the configured mode, owner and group (names or ids).
func TestListenerSocketOwnerAndMode(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "vsapi")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "api.sock")
	ln, err := Listener(Listen{Network: "unix", Address: path}, 0o600, strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o600 || int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
		t.Errorf("socket mode %v uid %d gid %d", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	// A live socket is not taken over.
	if _, err := Listener(Listen{Network: "unix", Address: path}, 0, "", ""); err == nil {
		t.Error("took over a socket in use")
	}
	if _, err := Listener(Listen{Network: "unix", Address: path + "2"}, 0, "no-such-user-xyz", ""); err == nil || !strings.Contains(err.Error(), "socket_owner") {
		t.Errorf("unknown owner: %v", err)
	}
}
