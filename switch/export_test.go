package vswitch

// AdvanceClock moves a manual switch's coarse clock by sec seconds, as
// its housekeeping would (tests drive time themselves).
func (s *Switch) AdvanceClock(sec uint32) { s.clock.Add(sec) }

// ExpireNeighbors drops the expired neighbour entries, as a manual
// switch's housekeeping would each second.
func (s *Switch) ExpireNeighbors() { s.neigh.expire(s.clock.Load()) }
