#!/usr/bin/env bash
# bench-loop.sh [RUNS] [SECS] [FRAME]: the learned-unicast loop of PEERS.md
# section 8. One testpmd owns both ports on CPU 1 (mac forwarding, crossing
# --eth-peer, primed with --tx-first); the switch under test forwards on
# CPU 0. Runs alternate between vswitchd and testpmd's net_vhost io forward
# (the DPDK vhost library, no lookup); prints each run and the medians, in
# Mpps per direction. Needs root, dpdk-testpmd and hugepages.
set -euo pipefail
RUNS=${1:-3}; SECS=${2:-10}; FRAME=${3:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAB=$(mktemp -d)
trap 'pkill -f "$LAB" 2>/dev/null || true; sleep 0.5; rm -rf "$LAB"' EXIT
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$LAB/vswitchd" ./cmd/vswitchd)
cat > "$LAB/vswitchd.yaml" <<YAML
dataplane: {workers: 1, poll: busy, cpus: [0]}
bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: A.sock}
  - {name: vm2, type: vhostuser, bridge: br0, socket: B.sock}
YAML
MEM="--in-memory --single-file-segments -m 256"

# rate LOG PORT: steady-state rx Mpps of PORT from --stats-period blocks,
# skipping the first two blocks (warm-up); interval = delta packets / pps.
rate() {
  awk -v want="$2" '
    /NIC statistics for port/ { split($0, a, "port "); port = a[2] + 0; next }
    port == want && /RX-packets:/ { rx = $2 }
    port == want && /Rx-pps:/ {
      pps = $2; d = rx - prev; prev = rx; n++
      if (n > 3 && pps > 0) { tot += d; t += d / pps }
    }
    END { if (t > 0) printf "%.3f", tot / t / 1e6; else printf "0" }' "$1"
}

frontend() { # SOCKDIR LOG
  timeout -s INT $((SECS + 6)) dpdk-testpmd -l 0,1 --main-lcore 0 --no-pci $MEM \
    --vdev "net_virtio_user0,path=$1/A.sock,mac=02:00:00:00:00:01" \
    --vdev "net_virtio_user1,path=$1/B.sock,mac=02:00:00:00:00:02" \
    -- --nb-cores=1 --forward-mode=mac --eth-peer=0,02:00:00:00:00:02 --eth-peer=1,02:00:00:00:00:01 \
       --tx-first --burst=64 --txpkts="$FRAME" --total-num-mbufs=32768 --auto-start --stats-period 1 > "$2" 2>&1 || true
  if grep -q "Failed to start device" "$2"; then echo "frontend failed: $2" >&2; exit 1; fi
}

run_vswitchd() { # N
  local d="$LAB/vs$1"; mkdir -p "$d"
  "$LAB/vswitchd" --config "$LAB/vswitchd.yaml" --run-dir "$d" > "$d/vswitchd.log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do [ -S "$d/B.sock" ] && break; sleep 0.1; done
  frontend "$d" "$d/fe.log"
  kill -TERM $pid; wait $pid || true
  rate "$d/fe.log" 0
}

run_testpmd() { # N
  local d="$LAB/tp$1"; mkdir -p "$d"
  dpdk-testpmd -l 0,1 --main-lcore 1 --no-pci $MEM --file-prefix "be$1" \
    --vdev "net_vhost0,iface=$d/A.sock,queues=1" --vdev "net_vhost1,iface=$d/B.sock,queues=1" \
    -- --nb-cores=1 --forward-mode=io --total-num-mbufs=32768 --auto-start --stats-period 1 > "$d/be.log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do [ -S "$d/B.sock" ] && break; sleep 0.1; done
  frontend "$d" "$d/fe.log"
  kill -INT $pid; wait $pid || true
  rate "$d/fe.log" 0
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

vs=""; tp=""
echo "learned-unicast loop, ${FRAME}-byte frames, ${SECS}s per run, $(nproc) cores; Mpps per direction"
for i in $(seq "$RUNS"); do
  v=$(run_vswitchd "$i"); echo "run $i vswitchd        $v"; vs="$vs $v"
  t=$(run_testpmd "$i");  echo "run $i testpmd-vhost   $t"; tp="$tp $t"
done
mv=$(echo $vs | median); mt=$(echo $tp | median)
echo "median vswitchd $mv, testpmd net_vhost io $mt, ratio $(awk -v a="$mv" -v b="$mt" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}')"
