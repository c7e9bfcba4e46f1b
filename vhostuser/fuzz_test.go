package vhostuser_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vswitch/vswitch/vhostuser"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

// Fuzz input: one byte of flags, then messages (12-byte header + body of
// the header's size, or what is left).
const (
	fzNegotiate = 1 << iota // features and protocol features set first
	fzMemTable              // the guest's memory table mapped first
	fzRings                 // both vrings set up, enabled and running first
)

func encodeMsg(req vhostuser.Request, flags uint32, body []byte) []byte {
	b := make([]byte, vhostuser.HeaderSize, vhostuser.HeaderSize+len(body))
	vhostuser.EncodeHeader(b, vhostuser.Header{Request: req, Flags: flags, Size: uint32(len(body))})
	return append(b, body...)
}

// fuzzGuest is the guest every fuzz input runs against: two rings of 8 at
// fixed addresses and fixed buffers.
type fuzzGuest struct {
	g      *virtiotest.Guest
	rx, tx *virtiotest.SplitRing
	bufs   [4]uint64
	ringLo uint64
	ringHi uint64
}

func newFuzzGuest(tb testing.TB) *fuzzGuest {
	fg := &fuzzGuest{g: virtiotest.NewGuest(tb, 1<<20)}
	fg.ringLo = fg.g.Allocated()
	fg.rx = fg.g.NewSplitRing(8)
	fg.tx = fg.g.NewSplitRing(8)
	fg.ringHi = fg.g.Allocated()
	for i := range fg.bufs {
		fg.bufs[i] = fg.g.Alloc(2048, 64)
	}
	return fg
}

// reset clears the rings and makes two receive buffers and two packets
// available.
func (fg *fuzzGuest) reset() {
	fg.g.Fill(fg.ringLo, int(fg.ringHi-fg.ringLo), 0)
	fg.rx = fg.g.NewSplitRingAt(8, fg.rx.DescAddr, fg.rx.AvailAddr, fg.rx.UsedAddr)
	fg.tx = fg.g.NewSplitRingAt(8, fg.tx.DescAddr, fg.tx.AvailAddr, fg.tx.UsedAddr)
	fg.rx.AddChain(virtiotest.Buf{Addr: fg.bufs[0], Len: 2048, Write: true})
	fg.rx.AddChain(virtiotest.Buf{Addr: fg.bufs[1], Len: 1024, Write: true}, virtiotest.Buf{Addr: fg.bufs[1] + 1024, Len: 1024, Write: true})
	fg.g.Fill(fg.bufs[2], 100, 0x11)
	fg.g.Fill(fg.bufs[3], 100, 0x22)
	fg.tx.AddChain(virtiotest.Buf{Addr: fg.bufs[2], Len: 100})
	fg.tx.AddChain(virtiotest.Buf{Addr: fg.bufs[3], Len: 12}, virtiotest.Buf{Addr: fg.bufs[3] + 12, Len: 88})
}

func (fg *fuzzGuest) memTable() []byte {
	r := fg.g.Region()
	return memTable(vhostuser.MemRegion{GuestPhysAddr: r.GuestPhysAddr, Size: r.Size, UserAddr: r.UserAddr, MmapOffset: r.MmapOffset})
}

// setupMsgs are the messages that make vring i run, kick and call without
// fds (NOFD).
func (fg *fuzzGuest) setupMsgs(i uint32, r *virtiotest.SplitRing) [][]byte {
	c := r.Config(false, -1)
	const v = vhostuser.FlagVersion
	return [][]byte{
		encodeMsg(vhostuser.SetVringNum, v, vhostuser.VringState{Index: i, Num: 8}.Bytes()),
		encodeMsg(vhostuser.SetVringBase, v, vhostuser.VringState{Index: i}.Bytes()),
		encodeMsg(vhostuser.SetVringAddr, v, vhostuser.VringAddr{Index: i, Desc: c.Desc, Used: c.Used, Avail: c.Avail}.Bytes()),
		encodeMsg(vhostuser.SetVringKick, v, vhostuser.U64(uint64(i)|1<<8).Bytes()),
		encodeMsg(vhostuser.SetVringCall, v, vhostuser.U64(uint64(i)|1<<8).Bytes()),
		encodeMsg(vhostuser.SetVringEnable, v, vhostuser.VringState{Index: i, Num: 1}.Bytes()),
	}
}

// fuzzSeeds are well-formed and nearly well-formed inputs.
func fuzzSeeds(fg *fuzzGuest) [][]byte {
	const v = vhostuser.FlagVersion
	var seeds [][]byte
	cat := func(flags byte, msgs ...[]byte) []byte { return append([]byte{flags}, bytes.Join(msgs, nil)...) }
	u64 := func(x uint64) []byte { return vhostuser.U64(x).Bytes() }
	offered := virtio.Bit(virtio.FVersion1) | virtio.Bit(virtio.FProtocolFeatures) | virtio.Bit(virtio.RingFEventIdx)
	handshake := [][]byte{
		encodeMsg(vhostuser.GetFeatures, v, nil),
		encodeMsg(vhostuser.GetProtocolFeatures, v, nil),
		encodeMsg(vhostuser.SetProtocolFeatures, v, u64(vhostusertest.DefaultProtocol)),
		encodeMsg(vhostuser.GetQueueNum, v, nil),
		encodeMsg(vhostuser.SetOwner, v|vhostuser.FlagNeedReply, nil),
		encodeMsg(vhostuser.SetFeatures, v, u64(offered)),
	}
	handshake = append(handshake, fg.setupMsgs(0, fg.rx)...)
	handshake = append(handshake, fg.setupMsgs(1, fg.tx)...)
	seeds = append(seeds, cat(fzMemTable, handshake...))
	seeds = append(seeds, cat(fzNegotiate|fzMemTable|fzRings,
		encodeMsg(vhostuser.GetVringBase, v, vhostuser.VringState{Index: 1}.Bytes()),
		encodeMsg(vhostuser.SetVringNum, v, vhostuser.VringState{Index: 1, Num: 4}.Bytes()),
		fg.setupMsgs(1, fg.tx)[3],
		encodeMsg(vhostuser.SendRARP, v, []byte{0x52, 0x54, 0, 1, 2, 3, 0, 0}),
		encodeMsg(vhostuser.NetSetMTU, v, u64(1500)),
		encodeMsg(vhostuser.ResetOwner, v, nil),
	))
	seeds = append(seeds, cat(fzNegotiate|fzMemTable|fzRings,
		encodeMsg(vhostuser.SetVringAddr, v, vhostuser.VringAddr{Index: 0, Desc: virtiotest.UserBase + fg.g.Size() - 64, Used: virtiotest.UserBase, Avail: virtiotest.UserBase}.Bytes()),
		encodeMsg(vhostuser.SetMemTable, v, fg.memTable()),
		encodeMsg(vhostuser.Request(12345), v, []byte("junk")),
		encodeMsg(vhostuser.GetConfig, v, nil),
	))
	seeds = append(seeds, cat(0, encodeMsg(vhostuser.GetFeatures, 2, nil)))
	seeds = append(seeds, cat(fzNegotiate, encodeMsg(vhostuser.SetFeatures, v, []byte{1, 2, 3})))
	seeds = append(seeds, cat(fzNegotiate|fzMemTable|fzRings, []byte{byte(vhostuser.SendRARP), 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 1}))
	return seeds
}

// FuzzMessage feeds arbitrary bytes to the header and body decoders and,
// as a message sequence, to Device.Handle (without fds) on a device that
// may already have memory and running rings, running a fake data plane
// between messages. Nothing may panic, and the device must stay
// consistent.
func FuzzMessage(f *testing.F) {
	fg := newFuzzGuest(f)
	for _, s := range fuzzSeeds(fg) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoders(t, data)
		if len(data) > 1 {
			fuzzDecoders(t, data[1:])
		}
		fuzzDevice(t, fg, data)
	})
}

func fuzzDecoders(t *testing.T, data []byte) {
	if h, err := vhostuser.DecodeHeader(data); err == nil {
		if h.Size > vhostuser.MaxPayload || h.Flags&3 != vhostuser.FlagVersion || h.Flags&vhostuser.FlagReply != 0 {
			t.Fatalf("DecodeHeader accepted %+v", h)
		}
		var b [vhostuser.HeaderSize]byte
		vhostuser.EncodeHeader(b[:], h)
		if !bytes.Equal(b[:], data[:vhostuser.HeaderSize]) {
			t.Fatalf("header does not round-trip: %x -> %x", data[:vhostuser.HeaderSize], b)
		}
	}
	body := data
	if len(data) >= vhostuser.HeaderSize {
		body = data[vhostuser.HeaderSize:]
	}
	for _, b := range [][]byte{data, body} {
		if v, err := vhostuser.DecodeU64(b); err == nil && !bytes.Equal(v.Bytes(), b) {
			t.Fatal("U64 does not round-trip")
		}
		if v, err := vhostuser.DecodeVringState(b); err == nil && !bytes.Equal(v.Bytes(), b) {
			t.Fatal("VringState does not round-trip")
		}
		if v, err := vhostuser.DecodeVringAddr(b); err == nil {
			if !bytes.Equal(v.Bytes(), b) || v.Validate() != nil {
				t.Fatal("VringAddr does not round-trip")
			}
		}
		if v, err := vhostuser.DecodeVringFd(b); err == nil && binary.LittleEndian.Uint64(b)&^0x1ff != 0 {
			t.Fatalf("VringFd accepted reserved bits: %+v", v)
		}
		if m, err := vhostuser.DecodeMemoryTable(b); err == nil {
			if len(m.Regions) == 0 || len(m.Regions) > vhostuser.MaxRegions || m.Validate() != nil {
				t.Fatalf("DecodeMemoryTable accepted %+v", m)
			}
			if _, err := vhostuser.DecodeMemoryTable(m.Bytes()); err != nil {
				t.Fatalf("memory table does not round-trip: %v", err)
			}
		}
	}
}

// fuzzDevice runs one input and returns how many packets the fake data
// plane delivered.
func fuzzDevice(t *testing.T, fg *fuzzGuest, data []byte) (delivered int) {
	fg.reset()
	be := &vhostusertest.FakeBackend{}
	dev := vhostuser.NewDevice(vhostuser.Options{Name: "fuzz", QueuePairs: 2, Log: testLog("fuzz")}, be)
	defer dev.Disconnect()
	var flags byte
	if len(data) > 0 {
		flags, data = data[0], data[1:]
	}
	must := func(b []byte, fds ...int) {
		h, _ := vhostuser.DecodeHeader(b)
		if _, err := dev.Handle(&vhostuser.Message{Header: h, Payload: b[vhostuser.HeaderSize:], Fds: fds}); err != nil {
			t.Fatalf("setup %s: %v", h.Request, err)
		}
	}
	const v = vhostuser.FlagVersion
	if flags&(fzNegotiate|fzRings) != 0 {
		must(encodeMsg(vhostuser.SetProtocolFeatures, v, vhostuser.U64(vhostusertest.DefaultProtocol).Bytes()))
		must(encodeMsg(vhostuser.SetFeatures, v, vhostuser.U64(dev.OfferedFeatures()&^virtio.Bit(virtio.FRingPacked)).Bytes()))
	}
	if flags&(fzMemTable|fzRings) != 0 {
		must(encodeMsg(vhostuser.SetMemTable, v, fg.memTable()), dup(t, fg.g.Fd()))
	}
	if flags&fzRings != 0 {
		for _, m := range append(fg.setupMsgs(0, fg.rx), fg.setupMsgs(1, fg.tx)...) {
			must(m)
		}
		if vhostusertest.RunningPairs(be.State()) != 1 {
			t.Fatal("setup did not start the rings")
		}
	}
	for n := 0; len(data) >= vhostuser.HeaderSize && n < 64; n++ {
		h := vhostuser.Header{
			Request: vhostuser.Request(binary.LittleEndian.Uint32(data)),
			Flags:   binary.LittleEndian.Uint32(data[4:]),
			Size:    binary.LittleEndian.Uint32(data[8:]),
		}
		data = data[vhostuser.HeaderSize:]
		body := data[:min(uint64(h.Size), uint64(len(data)))]
		data = data[len(body):]
		reply, err := dev.Handle(&vhostuser.Message{Header: h, Payload: body})
		if err == nil && reply != nil && len(reply) > vhostuser.MaxPayload {
			t.Fatalf("%s: reply of %d bytes", h.Request, len(reply))
		}
		if st := be.State(); st != nil && (len(st.Rx) != len(st.Tx) || len(st.Rx) > 2) {
			t.Fatalf("state with %d rx and %d tx queues", len(st.Rx), len(st.Tx))
		}
		if s := dev.Status(); s.QueuePairs > 2 || s.Regions > 1 {
			t.Fatalf("status %+v", s)
		}
		d, _ := be.Loopback()
		delivered += d
	}
	return delivered
}

// TestFuzzSeeds checks the seeds reach the states they are meant to: the
// handshake seed makes the rings run and forward the guest's two packets.
func TestFuzzSeeds(t *testing.T) {
	fg := newFuzzGuest(t)
	seeds := fuzzSeeds(fg)
	if n := fuzzDevice(t, fg, seeds[0]); n != 2 {
		t.Fatalf("handshake seed delivered %d packets, want 2", n)
	}
	if got := fg.rx.PopUsed(); len(got) != 2 || got[0].Len != 100 || got[1].Len != 100 {
		t.Fatalf("rx used %+v", got)
	}
	if n := fuzzDevice(t, fg, seeds[1]); n != 2 {
		t.Fatalf("running seed delivered %d packets, want 2", n)
	}
}
