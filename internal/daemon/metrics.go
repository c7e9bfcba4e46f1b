package daemon

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vswitch/vswitch/api"
	vswitch "github.com/vswitch/vswitch/switch"
)

// collector reads the ports' counters at scrape time: the data plane only
// adds to its atomic counters, and no label is looked up per packet.
type collector struct {
	d        *Daemon
	revision func() uint64

	rxPackets, rxBytes, txPackets, txBytes, drops *prometheus.Desc
	up, queues, connects, badMessages, configRev  *prometheus.Desc
	fdbEntries, fdbRefused                        *prometheus.Desc
	wPolls, wBusyPolls, wPackets, wBusy, wIdle    *prometheus.Desc
	wStage                                        *prometheus.Desc
	ctEntries, ctMax, ctCreated, ctExpired        *prometheus.Desc
	nHeld, nHeldBytes, nPending, nHeldTotal       *prometheus.Desc
	nReleased, nDrops, nSolicits, nProbes, nLost  *prometheus.Desc
}

var dropReasons = func() []string {
	out := make([]string, vswitch.NumDropReasons)
	for r := vswitch.DropReason(1); r < vswitch.NumDropReasons; r++ {
		out[r] = r.String()
	}
	return out
}()

func newCollector(d *Daemon, revision func() uint64) *collector {
	port := []string{"port", "bridge", "type"}
	return &collector{
		d: d, revision: revision,
		rxPackets:   prometheus.NewDesc("vswitch_port_rx_packets_total", "Packets the switch received on the port.", port, nil),
		rxBytes:     prometheus.NewDesc("vswitch_port_rx_bytes_total", "Bytes the switch received on the port.", port, nil),
		txPackets:   prometheus.NewDesc("vswitch_port_tx_packets_total", "Packets the switch sent out of the port.", port, nil),
		txBytes:     prometheus.NewDesc("vswitch_port_tx_bytes_total", "Bytes the switch sent out of the port.", port, nil),
		drops:       prometheus.NewDesc("vswitch_port_drops_total", "Packets dropped, by port and reason.", append(port, "reason"), nil),
		up:          prometheus.NewDesc("vswitch_port_running", "1 if the port's rings run, else 0.", port, nil),
		queues:      prometheus.NewDesc("vswitch_port_queue_pairs", "Queue pairs running on the port.", port, nil),
		connects:    prometheus.NewDesc("vswitch_port_vhost_connects_total", "vhost-user front-end connections.", port, nil),
		badMessages: prometheus.NewDesc("vswitch_port_vhost_bad_messages_total", "vhost-user messages refused as malformed.", port, nil),
		configRev:   prometheus.NewDesc("vswitch_config_revision", "Revision of the desired state.", nil, nil),
		fdbEntries:  prometheus.NewDesc("vswitch_bridge_fdb_entries", "Learned (VLAN, MAC) entries.", []string{"bridge"}, nil),
		fdbRefused: prometheus.NewDesc("vswitch_bridge_fdb_refused_total",
			"MACs not learned because the bridge's fdb_max was reached or its probe window was full.", []string{"bridge"}, nil),
		wPolls:     prometheus.NewDesc("vswitch_worker_polls_total", "Polling iterations over the worker's queues.", []string{"worker"}, nil),
		wBusyPolls: prometheus.NewDesc("vswitch_worker_busy_polls_total", "Polling iterations that found packets.", []string{"worker"}, nil),
		wPackets:   prometheus.NewDesc("vswitch_worker_packets_total", "Packets the worker received.", []string{"worker"}, nil),
		wBusy:      prometheus.NewDesc("vswitch_worker_busy_seconds_total", "Time in polling iterations that found packets.", []string{"worker"}, nil),
		wIdle:      prometheus.NewDesc("vswitch_worker_idle_seconds_total", "Time in polling iterations that found none.", []string{"worker"}, nil),
		wStage:     prometheus.NewDesc("vswitch_worker_stage_packets_total", "Packets that entered a pipeline stage.", []string{"worker", "stage"}, nil),
		ctEntries:  prometheus.NewDesc("vswitch_conntrack_entries", "Tracked connections (expired ones not yet reclaimed included).", nil, nil),
		ctMax:      prometheus.NewDesc("vswitch_conntrack_max_entries", "The connection limit (conntrack.max_entries).", nil, nil),
		ctCreated:  prometheus.NewDesc("vswitch_conntrack_created_total", "Connections committed.", nil, nil),
		ctExpired:  prometheus.NewDesc("vswitch_conntrack_expired_total", "Connections reclaimed after their timeout.", nil, nil),
		nHeld:      prometheus.NewDesc("vswitch_neighbor_queued_packets", "Routed packets held now while their next hop is resolved.", nil, nil),
		nHeldBytes: prometheus.NewDesc("vswitch_neighbor_queued_bytes", "Frame bytes of the packets held now.", nil, nil),
		nPending:   prometheus.NewDesc("vswitch_neighbor_pending_next_hops", "Next hops being resolved with packets held for them.", nil, nil),
		nHeldTotal: prometheus.NewDesc("vswitch_neighbor_held_packets_total", "Routed packets held while their next hop was resolved.", nil, nil),
		nReleased:  prometheus.NewDesc("vswitch_neighbor_released_packets_total", "Held packets sent on once their next hop answered.", nil, nil),
		nDrops: prometheus.NewDesc("vswitch_neighbor_drops_total",
			"Routed packets dropped while their next hop was resolved, by reason (also in the input ports' drops).", []string{"reason"}, nil),
		nSolicits: prometheus.NewDesc("vswitch_neighbor_solicitations_total",
			"ARP requests (protocol arp) and neighbour solicitations (nd) sent, refresh probes included.", []string{"protocol"}, nil),
		nProbes: prometheus.NewDesc("vswitch_neighbor_refresh_probes_total", "Unicast solicitations that asked a neighbour in use before its entry expired.", nil, nil),
		nLost:   prometheus.NewDesc("vswitch_neighbor_updates_lost_total", "Neighbours learned that the table missed: its update queue was full.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rxPackets, c.rxBytes, c.txPackets, c.txBytes, c.drops, c.up, c.queues, c.connects, c.badMessages, c.configRev, c.fdbEntries, c.fdbRefused,
		c.wPolls, c.wBusyPolls, c.wPackets, c.wBusy, c.wIdle, c.wStage,
		c.ctEntries, c.ctMax, c.ctCreated, c.ctExpired,
		c.nHeld, c.nHeldBytes, c.nPending, c.nHeldTotal, c.nReleased, c.nDrops, c.nSolicits, c.nProbes, c.nLost} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	status := map[string]api.PortStatus{}
	for _, s := range c.d.Ports() {
		status[s.Name] = s
	}
	ch <- prometheus.MustNewConstMetric(c.ctMax, prometheus.GaugeValue, float64(c.d.Switch.ConntrackSettings().Capacity))
	if t := c.d.Switch.Conntrack(); t != nil {
		ch <- prometheus.MustNewConstMetric(c.ctEntries, prometheus.GaugeValue, float64(t.Len()))
		ch <- prometheus.MustNewConstMetric(c.ctCreated, prometheus.CounterValue, float64(t.Created.Load()))
		ch <- prometheus.MustNewConstMetric(c.ctExpired, prometheus.CounterValue, float64(t.Expired.Load()))
	}
	for _, b := range c.d.Switch.Bridges() {
		ch <- prometheus.MustNewConstMetric(c.fdbEntries, prometheus.GaugeValue, float64(b.FDB.Len()), b.Name)
		ch <- prometheus.MustNewConstMetric(c.fdbRefused, prometheus.CounterValue, float64(b.FDB.Refused.Load()+b.FDB.Full.Load()), b.Name)
	}
	for _, p := range c.d.Switch.Ports() {
		lv := []string{p.Name, p.Bridge, p.Type}
		k := p.Counters
		ch <- prometheus.MustNewConstMetric(c.rxPackets, prometheus.CounterValue, float64(k.RxPackets.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(c.rxBytes, prometheus.CounterValue, float64(k.RxBytes.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(c.txPackets, prometheus.CounterValue, float64(k.TxPackets.Load()), lv...)
		ch <- prometheus.MustNewConstMetric(c.txBytes, prometheus.CounterValue, float64(k.TxBytes.Load()), lv...)
		for r := vswitch.DropReason(1); r < vswitch.NumDropReasons; r++ {
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(k.Drops[r].Load()), p.Name, p.Bridge, p.Type, dropReasons[r])
		}
		if s, ok := status[p.Name]; ok {
			run := 0.0
			if s.State == api.StateRunning {
				run = 1
			}
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, run, lv...)
			ch <- prometheus.MustNewConstMetric(c.queues, prometheus.GaugeValue, float64(s.QueuePairs), lv...)
			ch <- prometheus.MustNewConstMetric(c.connects, prometheus.CounterValue, float64(s.Protocol["connects"]), lv...)
			ch <- prometheus.MustNewConstMetric(c.badMessages, prometheus.CounterValue, float64(s.Protocol["bad_messages"]), lv...)
		}
	}
	for _, w := range c.d.Workers() {
		id := strconv.Itoa(w.ID)
		secs := func(cycles uint64) float64 { return float64(cycles) / w.CyclesPerNs / 1e9 }
		ch <- prometheus.MustNewConstMetric(c.wPolls, prometheus.CounterValue, float64(w.Polls), id)
		ch <- prometheus.MustNewConstMetric(c.wBusyPolls, prometheus.CounterValue, float64(w.BusyPolls), id)
		ch <- prometheus.MustNewConstMetric(c.wPackets, prometheus.CounterValue, float64(w.Packets), id)
		ch <- prometheus.MustNewConstMetric(c.wBusy, prometheus.CounterValue, secs(w.BusyCycles), id)
		ch <- prometheus.MustNewConstMetric(c.wIdle, prometheus.CounterValue, secs(w.IdleCycles), id)
		for _, st := range w.Stages {
			ch <- prometheus.MustNewConstMetric(c.wStage, prometheus.CounterValue, float64(st.Packets), id, st.Stage)
		}
	}
	n := c.d.NeighborStats()
	ch <- prometheus.MustNewConstMetric(c.nHeld, prometheus.GaugeValue, float64(n.HeldPackets))
	ch <- prometheus.MustNewConstMetric(c.nHeldBytes, prometheus.GaugeValue, float64(n.HeldBytes))
	ch <- prometheus.MustNewConstMetric(c.nPending, prometheus.GaugeValue, float64(n.PendingNextHops))
	ch <- prometheus.MustNewConstMetric(c.nHeldTotal, prometheus.CounterValue, float64(n.HeldTotal))
	ch <- prometheus.MustNewConstMetric(c.nReleased, prometheus.CounterValue, float64(n.Released))
	for r, v := range n.Drops {
		ch <- prometheus.MustNewConstMetric(c.nDrops, prometheus.CounterValue, float64(v), r)
	}
	ch <- prometheus.MustNewConstMetric(c.nSolicits, prometheus.CounterValue, float64(n.ARPRequests), "arp")
	ch <- prometheus.MustNewConstMetric(c.nSolicits, prometheus.CounterValue, float64(n.NDSolicitations), "nd")
	ch <- prometheus.MustNewConstMetric(c.nProbes, prometheus.CounterValue, float64(n.RefreshProbes))
	ch <- prometheus.MustNewConstMetric(c.nLost, prometheus.CounterValue, float64(n.UpdatesLost))
	if c.revision != nil {
		ch <- prometheus.MustNewConstMetric(c.configRev, prometheus.GaugeValue, float64(c.revision()))
	}
}

// MetricsHandler serves the switch's metrics, plus the Go runtime's and
// the process's, in the Prometheus text format. revision reports the
// desired state's revision (nil leaves it out).
func (d *Daemon) MetricsHandler(revision func() uint64) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(d, revision), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: d.log, ErrorHandling: promhttp.ContinueOnError})
}
