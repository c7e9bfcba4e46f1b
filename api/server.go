package api

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"time"
)

// PortStatus is one port as GET /v1/ports shows it.
type PortStatus struct {
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Bridge     string            `json:"bridge"`
	Socket     string            `json:"socket,omitempty"`
	Mode       string            `json:"mode,omitempty"`
	State      string            `json:"state"` // waiting, connecting, connected, running
	Features   []string          `json:"features,omitempty"`
	QueuePairs int               `json:"queue_pairs"`
	MTU        int               `json:"mtu,omitempty"`
	RxPackets  uint64            `json:"rx_packets"`
	RxBytes    uint64            `json:"rx_bytes"`
	TxPackets  uint64            `json:"tx_packets"`
	TxBytes    uint64            `json:"tx_bytes"`
	Drops      map[string]uint64 `json:"drops"`
	// Protocol counts the vhost-user connection's control messages.
	Protocol map[string]uint64 `json:"protocol,omitempty"`
}

// Port states.
const (
	StateWaiting    = "waiting"    // server socket, no front-end yet
	StateConnecting = "connecting" // client mode, front-end not reachable yet
	StateConnected  = "connected"  // front-end connected, rings not running
	StateRunning    = "running"    // rings running
)

// Source is what the API reads from the daemon.
type Source interface {
	Ports() []PortStatus
}

// Error is the JSON body of every error answer.
type Error struct {
	Error string `json:"error"`
}

// NewHandler routes the API. Routes are method patterns on the standard
// mux; later issues add the write side here.
func NewHandler(src Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ports", func(w http.ResponseWriter, r *http.Request) {
		ports := src.Ports()
		if ports == nil {
			ports = []PortStatus{}
		}
		writeJSON(w, http.StatusOK, ports)
	})
	mux.HandleFunc("GET /v1/ports/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		for _, p := range src.Ports() {
			if p.Name == name {
				writeJSON(w, http.StatusOK, p)
				return
			}
		}
		writeJSON(w, http.StatusNotFound, Error{Error: "no port " + name})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, Error{Error: r.Method + " " + r.URL.Path + ": no such resource"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Listener opens the API's listener. A unix socket gets mode (0660 if
// zero); a stale socket file is replaced.
func Listener(l Listen, mode os.FileMode) (net.Listener, error) {
	if l.Network == "unix" {
		if fi, err := os.Lstat(l.Address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.DialTimeout("unix", l.Address, 200*time.Millisecond); err == nil {
				c.Close()
				return nil, errors.New(l.Address + " is in use by another process")
			}
			os.Remove(l.Address)
		}
	}
	ln, err := net.Listen(l.Network, l.Address)
	if err != nil {
		return nil, err
	}
	if l.Network == "unix" {
		if mode == 0 {
			mode = 0o660
		}
		if err := os.Chmod(l.Address, mode); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// NewServer wraps h with the timeouts that keep slow clients from holding
// the daemon.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           http.MaxBytesHandler(h, 1<<20),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}
