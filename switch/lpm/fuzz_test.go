package lpm

import (
	"net/netip"
	"testing"
)

// fuzzRoutes decodes data as operations of n+3 bytes: a flag byte (low
// bit: delete), n address bytes, a length byte and a value byte. It
// applies them to b and the reference and returns probe addresses.
func fuzzRoutes(data []byte, n int, b anyBuilder, want ref) []netip.Addr {
	var probes []netip.Addr
	bits := n * 8
	for len(data) >= n+3 {
		op := data[0]
		var a [16]byte
		copy(a[:n], data[1:1+n])
		var addr netip.Addr
		if n == 4 {
			addr = netip.AddrFrom4([4]byte(a[:4]))
		} else {
			addr = netip.AddrFrom16(a)
			if addr.Is4In6() {
				// Builder6 refuses these; keep the op but move it.
				a[10] = 0
				addr = netip.AddrFrom16(a)
			}
		}
		p := netip.PrefixFrom(addr, int(data[1+n])%(bits+1)).Masked()
		v := uint32(data[2+n])
		if op&1 == 1 {
			b.Delete(p)
			delete(want, p)
		} else {
			if err := b.Add(p, v); err != nil {
				panic(err)
			}
			want[p] = v
		}
		probes = append(probes, near(p)...)
		probes = append(probes, addr)
		data = data[n+3:]
	}
	return probes
}

func FuzzLookup4(f *testing.F) {
	f.Add([]byte{0, 10, 0, 0, 0, 8, 1, 0, 10, 1, 2, 0, 24, 2, 0, 10, 1, 2, 129, 32, 3})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 9, 0, 1, 2, 3, 4, 32, 1, 1, 1, 2, 3, 4, 32, 1})
	f.Add([]byte{0, 192, 168, 0, 0, 17, 5, 0, 192, 168, 128, 0, 25, 6, 0, 192, 168, 128, 0, 30, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, want := b4{NewBuilder4()}, ref{}
		probes := fuzzRoutes(data, 4, b, want)
		check(t, b.build(), want, probes)
	})
}

func FuzzLookup6(f *testing.F) {
	f.Add([]byte{0, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 1,
		0, 0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 128, 2})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3,
		0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 121, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, want := b6{NewBuilder6()}, ref{}
		probes := fuzzRoutes(data, 16, b, want)
		check(t, b.build(), want, probes)
	})
}
