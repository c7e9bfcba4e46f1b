package nat

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
)

// Table design. Readers (every worker, every packet) take no lock and write
// nothing shared except the connection's own state. Connections live in
// one preallocated array of fixed-size entries without pointers (the GC
// never scans it and nothing is allocated after New). The index is a
// bucketized open-addressing hash table: a bucket is one cache line of 7
// slots plus a count of entries that overflowed from it into the next
// buckets, so a lookup usually reads one line and stops there. A slot
// packs (32-bit hash tag, entry index, direction); each connection has two
// slots, one per direction, pointing at the same entry.
//
// Entries are reused, so a reader validates what it read with the entry's
// generation (a seqlock without a writer spin): odd means free or being
// rewritten; a reader loads the generation, compares the key with atomic
// loads, and re-loads the generation; a change means the entry was freed or
// reused under it and the lookup retries. We chose this over RCU-style
// immutable heap entries behind atomic pointers because those allocate per
// connection and give the GC a million pointers to scan.
//
// Inserts and deletes take the lock of the shard of each of the two keys'
// home buckets (in shard order), so a duplicate check and the insert are
// atomic per key; slots are claimed with CAS because an overflow probe may
// reach a bucket of another shard. Each shard owns a slice of the entry
// array with its own free list, so allocation needs no global lock.
//
// Expiry: an expired entry is a miss for lookups at once; entries are
// reclaimed by Sweep, which every worker calls with a small budget per batch
// (a cursor over the entry array), so there is never a stop-the-world scan.

const (
	slotsPerBucket = 7
	maxProbe       = 32 // buckets an entry may sit from its home bucket (linear probing clusters)
	maxShards      = 256
)

type bucket struct {
	slot     [slotsPerBucket]atomic.Uint64
	overflow atomic.Uint32
	_        uint32
}

// tcpDir is one direction's window tracking (Linux ip_ct_tcp_state).
type tcpDir struct {
	end    atomic.Uint32 // highest seq+len sent
	maxEnd atomic.Uint32 // highest ack+window the peer allowed
	maxWin atomic.Uint32 // largest window advertised (scaled); 0 = not seen
	scale  atomic.Uint32 // window scale; bit 8 set when the SYN offered one
}

// conn is one connection. Keys, zone and nat fields change only while the
// generation is odd or under the shard locks.
type conn struct {
	gen    atomic.Uint32
	state  atomic.Uint32 // tcp state (low 4 bits) | conn flags
	expire atomic.Uint32 // clock value at which the entry expires
	pool   uint16        // port pool of a translated source port, +1 (0: none)
	_      uint16
	key    [2][5]atomic.Uint64 // original and reply keys
	win    [2]tcpDir
}

// conn flags in state, above the 4-bit TCP state.
const (
	flSeenReply = 1 << 4
	flSNAT      = 1 << 5
	flDNAT      = 1 << 6
)

func (c *conn) loadKey(dir int) (k key) {
	for i := range k {
		k[i] = c.key[dir][i].Load()
	}
	return k
}

func (c *conn) keyEq(dir int, k *key) bool {
	w := &c.key[dir]
	return w[4].Load() == k[4] && w[0].Load() == k[0] && w[1].Load() == k[1] &&
		w[2].Load() == k[2] && w[3].Load() == k[3]
}

type shard struct {
	mu   sync.Mutex
	free []uint32 // free entry indices of this shard
	_    [40]byte
}

// Table is the connection table shared by all workers.
type Table struct {
	cfg      Config
	seed     [6]uint64
	buckets  []bucket
	mask     uint64
	conns    []conn
	shards   []shard
	shardMsk uint64
	perShard uint32
	count    atomic.Int64
	zoneCnt  []atomic.Int32  // live connections per zone
	zoneLim  []atomic.Uint32 // per-zone limit + 1; 0 = zoneDef
	sweepPos atomic.Uint64
	timeouts atomic.Pointer[Timeouts]
	limit    atomic.Int64                // most live connections, at most cfg.Capacity (Reconfigure)
	zoneDef  atomic.Uint32               // per-zone limit of zones without their own, 0 = none
	window   atomic.Uint32               // WindowCheck
	pools    atomic.Pointer[[]*portPool] // append-only; index+1 in conn.pool
	poolMu   sync.Mutex
	workers  atomic.Uint32
	// Stats the table keeps itself (not per packet).
	Created atomic.Uint64
	Expired atomic.Uint64
}

// WindowCheck is how strictly TCP sequence and acknowledgement numbers are
// checked against the tracked windows.
type WindowCheck uint8

const (
	// WindowOff tracks no windows: only flags drive the state.
	WindowOff WindowCheck = iota
	// WindowLoose tracks windows and lets out-of-window segments through
	// without moving the state (Linux nf_conntrack_tcp_be_liberal), except
	// an out-of-window RST, which is invalid so it cannot kill the
	// connection.
	WindowLoose
	// WindowStrict makes every out-of-window segment invalid.
	WindowStrict
)

var windowNames = [...]string{"off", "loose", "strict"}

func (w WindowCheck) String() string {
	if int(w) < len(windowNames) {
		return windowNames[w]
	}
	return "unknown"
}

// ParseWindowCheck reads off, loose or strict.
func ParseWindowCheck(s string) (WindowCheck, error) {
	for i, n := range windowNames {
		if s == n {
			return WindowCheck(i), nil
		}
	}
	return 0, fmt.Errorf("%q is not one of off, loose, strict", s)
}

// Config sizes and tunes a Table.
type Config struct {
	Capacity   int         // most live connections in all zones
	ZoneLimit  uint32      // most live connections per zone, 0 = only Capacity
	Window     WindowCheck // TCP window strictness
	Timeouts   Timeouts    // zero fields take Linux's defaults
	SweepBatch int         // entries each Sweep call looks at, 0 = 64
}

// Timeouts are connection lifetimes in clock units (seconds for the
// switch's coarse clock), per TCP state and for UDP, ICMP and other
// protocols. The defaults are Linux nf_conntrack's.
type Timeouts struct {
	TCP        [numTCPStates]uint32
	UDP        uint32 // until a reply is seen
	UDPReplied uint32
	ICMP       uint32
	Other      uint32
}

// DefaultTimeouts are nf_conntrack's defaults in seconds.
func DefaultTimeouts() Timeouts {
	var t Timeouts
	t.TCP = [numTCPStates]uint32{
		tcpSynSent: 120, tcpSynRecv: 60, tcpEstablished: 432000, tcpFinWait: 120,
		tcpCloseWait: 60, tcpLastAck: 30, tcpTimeWait: 120, tcpClose: 10,
	}
	t.UDP, t.UDPReplied, t.ICMP, t.Other = 30, 120, 30, 600
	return t
}

func (t *Timeouts) fill() {
	d := DefaultTimeouts()
	for i := range t.TCP {
		if t.TCP[i] == 0 {
			t.TCP[i] = d.TCP[i]
		}
	}
	for _, p := range [][2]*uint32{{&t.UDP, &d.UDP}, {&t.UDPReplied, &d.UDPReplied}, {&t.ICMP, &d.ICMP}, {&t.Other, &d.Other}} {
		if *p[0] == 0 {
			*p[0] = *p[1]
		}
	}
}

// New allocates a table for cfg.Capacity connections.
func New(cfg Config) (*Table, error) {
	if cfg.Capacity < 1 || cfg.Capacity > 1<<28 {
		return nil, fmt.Errorf("conntrack capacity %d: want 1..%d", cfg.Capacity, 1<<28)
	}
	if cfg.Window > WindowStrict {
		return nil, fmt.Errorf("conntrack window check %d unknown", cfg.Window)
	}
	if cfg.SweepBatch <= 0 {
		cfg.SweepBatch = 64
	}
	cfg.Timeouts.fill()
	t := &Table{cfg: cfg}
	to := cfg.Timeouts
	t.timeouts.Store(&to)
	t.limit.Store(int64(cfg.Capacity))
	t.zoneDef.Store(cfg.ZoneLimit)
	t.window.Store(uint32(cfg.Window))
	var sb [48]byte
	_, _ = rand.Read(sb[:])
	for i := range t.seed {
		t.seed[i] = binary.LittleEndian.Uint64(sb[i*8:]) | 1
	}
	// Two keys per connection at most ~57% slot load.
	nb := 1
	for nb*slotsPerBucket < 3*cfg.Capacity+slotsPerBucket {
		nb <<= 1
	}
	t.buckets = make([]bucket, nb)
	t.mask = uint64(nb - 1)
	ns := 1
	for ns < maxShards && ns*1024 < cfg.Capacity {
		ns <<= 1
	}
	t.shards = make([]shard, ns)
	t.shardMsk = uint64(ns - 1)
	per := cfg.Capacity / ns
	if ns > 1 {
		per += per/8 + 16 // slack for uneven hashing across shards
	}
	t.perShard = uint32(per)
	t.conns = make([]conn, 1+ns*per) // entry 0 is never used: slot 0 means empty
	for s := range t.shards {
		f := make([]uint32, per)
		for i := range f {
			f[i] = uint32(1 + s*per + per - 1 - i) // pop order: lowest index first
		}
		t.shards[s].free = f
	}
	for i := range t.conns {
		t.conns[i].gen.Store(1)
	}
	t.zoneCnt = make([]atomic.Int32, 1<<16)
	t.zoneLim = make([]atomic.Uint32, 1<<16)
	empty := []*portPool{}
	t.pools.Store(&empty)
	return t, nil
}

// SetZoneLimit gives zone a connection limit of its own in place of the
// default per-zone limit (Config.ZoneLimit); 0 is none, only the table's
// (ovs-appctl dpctl/ct-set-limits zone=N,limit=L). Connections beyond a
// lowered limit stay until they end; new ones are refused until the
// count is under it.
func (t *Table) SetZoneLimit(zone uint16, n uint32) {
	t.zoneLim[zone].Store(min(n, math.MaxUint32-1) + 1)
}

// ClearZoneLimit returns zone to the default per-zone limit
// (dpctl/ct-del-limits).
func (t *Table) ClearZoneLimit(zone uint16) { t.zoneLim[zone].Store(0) }

// ZoneLimit is the limit in force for zone (0: none) and whether it is
// the zone's own (SetZoneLimit) rather than the default.
func (t *Table) ZoneLimit(zone uint16) (limit uint32, own bool) {
	if v := t.zoneLim[zone].Load(); v != 0 {
		return v - 1, true
	}
	return t.zoneDef.Load(), false
}

// zoneFull says zone holds as many connections as its limit allows.
func (t *Table) zoneFull(zone uint16) bool {
	lim, _ := t.ZoneLimit(zone)
	return lim != 0 && uint32(t.zoneCnt[zone].Load()) >= lim
}

// ZoneCounts calls f with every zone that holds connections (expired
// ones not yet reclaimed included) and how many, in zone order.
func (t *Table) ZoneCounts(f func(zone uint16, n int)) {
	for z := range t.zoneCnt {
		if n := t.zoneCnt[z].Load(); n > 0 {
			f(uint16(z), int(n))
		}
	}
}

// SetTimeouts replaces the timeouts; connections pick them up at their next
// packet.
func (t *Table) SetTimeouts(to Timeouts) {
	to.fill()
	t.timeouts.Store(&to)
}

// Capacity is the number of entries the table was made with.
func (t *Table) Capacity() int { return t.cfg.Capacity }

// Reconfigure applies cfg to a running table: the connection limit
// (cfg.Capacity, 0 for the whole table; it cannot exceed Capacity, the
// entries are allocated once), the default per-zone limit, the window
// check and the timeouts. Workers see each setting at their next packet.
// Connections beyond a lowered limit stay until they end; new ones are
// refused (ReasonFull, ReasonZoneFull) until the count is under it.
// cfg.SweepBatch is ignored.
func (t *Table) Reconfigure(cfg Config) error {
	if cfg.Capacity < 0 || cfg.Capacity > t.cfg.Capacity {
		return fmt.Errorf("conntrack limit %d: the table was made for %d connections (a larger table needs a new one)", cfg.Capacity, t.cfg.Capacity)
	}
	if cfg.Window > WindowStrict {
		return fmt.Errorf("conntrack window check %d unknown", cfg.Window)
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = t.cfg.Capacity
	}
	t.limit.Store(int64(cfg.Capacity))
	t.zoneDef.Store(cfg.ZoneLimit)
	t.window.Store(uint32(cfg.Window))
	t.SetTimeouts(cfg.Timeouts)
	return nil
}

// Settings returns the table's current settings (Timeouts with the
// defaults filled in).
func (t *Table) Settings() Config {
	return Config{Capacity: int(t.limit.Load()), ZoneLimit: t.zoneDef.Load(), Window: WindowCheck(t.window.Load()),
		Timeouts: *t.timeouts.Load(), SweepBatch: t.cfg.SweepBatch}
}

// Len is the number of live (possibly expired, not yet swept) connections.
func (t *Table) Len() int { return int(t.count.Load()) }

// ZoneLen is the number of connections in zone.
func (t *Table) ZoneLen(zone uint16) int { return int(t.zoneCnt[zone].Load()) }

func slotVal(h uint64, idx uint32, dir int) uint64 {
	return h&^0xffffffff | uint64(idx)<<1 | uint64(dir)
}

// find looks k up and returns its entry, the direction it matched and the
// generation it was valid at. idx 0 is a miss.
func (t *Table) find(k *key, h uint64) (idx uint32, dir int, gen uint32) {
	tag := h >> 32
	home := h & t.mask
retry:
	for try := 0; try < 4; try++ {
		for p := uint64(0); p < maxProbe; p++ {
			bk := &t.buckets[(home+p)&t.mask]
			for s := range bk.slot {
				v := bk.slot[s].Load()
				if v>>32 != tag || v == 0 {
					continue
				}
				i := uint32(v) >> 1
				d := int(v & 1)
				c := &t.conns[i]
				g := c.gen.Load()
				if g&1 != 0 || !c.keyEq(d, k) {
					continue
				}
				if c.gen.Load() != g {
					continue retry
				}
				return i, d, g
			}
			if p == 0 && bk.overflow.Load() == 0 {
				break
			}
		}
		break
	}
	return 0, 0, 0
}

// place claims a slot for v from k's home bucket on. The caller holds the
// home shard's lock.
func (t *Table) place(h, v uint64) bool {
	home := h & t.mask
	for p := uint64(0); p < maxProbe; p++ {
		bk := &t.buckets[(home+p)&t.mask]
		if p == 1 {
			t.buckets[home].overflow.Add(1) // before the slot shows, so readers look on
		}
		for s := range bk.slot {
			if bk.slot[s].Load() == 0 && bk.slot[s].CompareAndSwap(0, v) {
				return true
			}
		}
	}
	t.buckets[home].overflow.Add(^uint32(0))
	return false
}

// unplace clears the slot holding v.
func (t *Table) unplace(h, v uint64) {
	home := h & t.mask
	for p := uint64(0); p < maxProbe; p++ {
		bk := &t.buckets[(home+p)&t.mask]
		for s := range bk.slot {
			if bk.slot[s].Load() == v {
				bk.slot[s].Store(0)
				if p > 0 {
					t.buckets[home].overflow.Add(^uint32(0))
				}
				return
			}
		}
	}
}

func (t *Table) lock2(h0, h1 uint64) (a, b *shard) {
	s0, s1 := (h0&t.mask)&t.shardMsk, (h1&t.mask)&t.shardMsk
	if s0 > s1 {
		s0, s1 = s1, s0
	}
	a = &t.shards[s0]
	a.mu.Lock()
	if s1 != s0 {
		b = &t.shards[s1]
		b.mu.Lock()
	}
	return a, b
}

func unlock2(a, b *shard) {
	if b != nil {
		b.mu.Unlock()
	}
	a.mu.Unlock()
}

// insertErr says why an insert failed.
type insertErr uint8

const (
	insOK insertErr = iota
	insFull
	insZoneFull
	insBucketFull
	insExists // a live connection already has one of the keys
)

// insert adds a connection with keys orig and reply, initial state st and
// expiry time exp; now is the clock. A live duplicate of either key fails the insert unless
// replaceable says it may go (expired, or a closed TCP connection a new SYN
// reopens). seg, for TCP, is the opening SYN.
func (t *Table) insert(orig, reply *key, st, now, exp uint32, pool uint16, seg *tcpSeg) (uint32, uint32, insertErr) {
	h0, h1 := hash(orig, &t.seed), hash(reply, &t.seed)
	for range 4 {
		idx, gen, e, stale := t.tryInsert(orig, reply, h0, h1, st, now, exp, pool, seg)
		if stale == 0 {
			return idx, gen, e
		}
		// The stale entry's other key may be in a shard we do not hold.
		t.remove(stale.idx(), stale.gen())
	}
	return 0, 0, insExists
}

func (t *Table) tryInsert(orig, reply *key, h0, h1 uint64, st, now, exp uint32, pool uint16, seg *tcpSeg) (idx, gen uint32, e insertErr, stale Handle) {
	a, b := t.lock2(h0, h1)
	defer unlock2(a, b)
	if i, _, g := t.find(orig, h0); i != 0 {
		if !t.replaceable(&t.conns[i], now) {
			return 0, 0, insExists, 0
		}
		return 0, 0, 0, mkHandle(i, g)
	}
	if i, _, g := t.find(reply, h1); i != 0 {
		if !t.replaceable(&t.conns[i], now) {
			return 0, 0, insExists, 0
		}
		return 0, 0, 0, mkHandle(i, g)
	}
	zone := orig.zone()
	if t.zoneFull(zone) {
		return 0, 0, insZoneFull, 0
	}
	if t.count.Add(1) > t.limit.Load() {
		t.count.Add(-1)
		return 0, 0, insFull, 0
	}
	sh := &t.shards[(h0&t.mask)&t.shardMsk]
	if len(sh.free) == 0 {
		t.count.Add(-1)
		return 0, 0, insFull, 0
	}
	idx = sh.free[len(sh.free)-1]
	c := &t.conns[idx]
	gen = c.gen.Load() // odd: free
	for i := range 5 {
		c.key[0][i].Store(orig[i])
		c.key[1][i].Store(reply[i])
	}
	c.state.Store(st)
	c.expire.Store(exp)
	c.pool = pool
	for d := range c.win {
		c.win[d].end.Store(0)
		c.win[d].maxEnd.Store(0)
		c.win[d].maxWin.Store(0)
		c.win[d].scale.Store(0)
	}
	if seg != nil {
		initDir(&c.win[0], seg)
	}
	gen++
	c.gen.Store(gen) // even: live; keys are visible to whoever sees the slots
	if !t.place(h0, slotVal(h0, idx, 0)) {
		c.gen.Store(gen + 1)
		t.count.Add(-1)
		return 0, 0, insBucketFull, 0
	}
	if !t.place(h1, slotVal(h1, idx, 1)) {
		t.unplace(h0, slotVal(h0, idx, 0))
		c.gen.Store(gen + 1)
		t.count.Add(-1)
		return 0, 0, insBucketFull, 0
	}
	sh.free = sh.free[:len(sh.free)-1]
	t.zoneCnt[zone].Add(1)
	t.Created.Add(1)
	return idx, gen, insOK, 0
}

// replaceable says an existing entry may give way to a new connection with
// one of its keys: it is expired, or a closed TCP connection.
func (t *Table) replaceable(c *conn, now uint32) bool {
	if int32(c.expire.Load()-now) <= 0 {
		return true
	}
	k := c.loadKey(0)
	if k.proto() == protoTCP {
		s := c.state.Load() & stateMask
		return s == tcpTimeWait || s == tcpClose
	}
	return false
}

// deleteLocked removes entry idx if it is still at generation gen. The
// caller holds the shard locks of both its keys.
func (t *Table) deleteLocked(idx, gen uint32) bool {
	c := &t.conns[idx]
	if !c.gen.CompareAndSwap(gen, gen+1) {
		return false
	}
	k0, k1 := c.loadKey(0), c.loadKey(1)
	h0, h1 := hash(&k0, &t.seed), hash(&k1, &t.seed)
	t.unplace(h0, slotVal(h0, idx, 0))
	t.unplace(h1, slotVal(h1, idx, 1))
	if c.pool != 0 {
		t.releasePort(c.pool-1, &k1)
		c.pool = 0
	}
	sh := &t.shards[(idx-1)/t.perShard]
	sh.free = append(sh.free, idx) // within the capacity made in New: no allocation
	t.zoneCnt[k0.zone()].Add(-1)
	t.count.Add(-1)
	return true
}

// remove deletes entry idx at generation gen, taking the locks.
func (t *Table) remove(idx, gen uint32) bool {
	c := &t.conns[idx]
	k0, k1 := c.loadKey(0), c.loadKey(1)
	if c.gen.Load() != gen {
		return false
	}
	a, b := t.lock2(hash(&k0, &t.seed), hash(&k1, &t.seed))
	ok := t.deleteLocked(idx, gen)
	unlock2(a, b)
	return ok
}

// Sweep looks at the next cfg.SweepBatch entries and deletes the expired
// ones. Workers call it once per batch; it returns how many it deleted.
func (t *Table) Sweep(now uint32) int {
	n := uint64(t.cfg.SweepBatch)
	total := uint64(len(t.conns) - 1)
	start := t.sweepPos.Add(n) - n
	del := 0
	for j := uint64(0); j < n && j < total; j++ {
		idx := uint32(1 + (start+j)%total)
		c := &t.conns[idx]
		g := c.gen.Load()
		if g&1 != 0 || int32(c.expire.Load()-now) > 0 {
			continue
		}
		if t.remove(idx, g) {
			del++
		}
	}
	if del > 0 {
		t.Expired.Add(uint64(del))
	}
	return del
}
