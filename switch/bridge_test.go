package vswitch

import (
	"errors"
	"testing"
)

// A bridge goes away only once it has no ports; its name can then be used
// again.
func TestRemoveBridge(t *testing.T) {
	s := New(Options{Manual: true})
	defer s.Close()
	if err := s.AddBridge("br0", 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddPort("p1", "test", "br0", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveBridge("br0"); err == nil {
		t.Fatal("removed a bridge that has a port")
	}
	if err := s.RemovePort("p1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveBridge("br0"); err != nil {
		t.Fatal(err)
	}
	if len(s.Bridges()) != 0 {
		t.Fatalf("bridges left: %v", s.Bridges())
	}
	if err := s.RemoveBridge("br0"); !errors.Is(err, ErrNoBridge) {
		t.Fatalf("removing a missing bridge: %v", err)
	}
	if err := s.AddBridge("br0", 0, 0); err != nil {
		t.Fatal(err)
	}
}
