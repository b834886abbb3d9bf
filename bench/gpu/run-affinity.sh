#!/usr/bin/env bash
# Why is a launch-bound plan's rank sometimes ~2x slower (the LLaMA-3.2-1B interleaved plan: rank
# 1's stage-1 backward 4.0 ms in two runs, 8.4-8.6 in two others)? On an nvidia-h200-x2 (~5 min):
# the host's CPU/NUMA/GPU topology, then two launch-bound plans of the sixteenth run run several
# times each: as they are, and with the ranks' processes held to one half of the cores or the other
# (taskset), sampling which cores the ranks' threads ran on; per-stage medians last. And the host
# AdamW's two ways of sharing its tiles among a rank's threads (runtime.cpp cpuAdamW: chunks from a
# shared counter, MMOC_ADAM_STATIC=1 a fixed range a thread) in the 1B delayed host-update plan.
#   source .gpu/env.sh && DEST=$OUT bash bench/gpu/run-affinity.sh
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?DEST: the folder for the logs}
mkdir -p "$DEST/runs"
source bench/gpu/diag-prologue.sh
{
  echo "== lscpu"; lscpu
  echo "== numa nodes"; for n in /sys/devices/system/node/node*; do echo "$n: $(cat $n/cpulist 2>/dev/null)"; done
  echo "== nvidia-smi topo -m"; nvidia-smi topo -m
  echo "== GPU PCI local_cpulist / numa_node"
  for b in $(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader); do
    d=/sys/bus/pci/devices/$(echo "$b" | tr 'A-Z' 'a-z' | sed 's/^0000\(0000:\)/\1/')
    [[ -e $d ]] || d=/sys/bus/pci/devices/$(echo "$b" | tr 'A-Z' 'a-z' | cut -c5-)
    echo "$b -> $d: cpus $(cat $d/local_cpulist 2>&1) node $(cat $d/numa_node 2>&1)"
  done
  echo "== nsys: $(command -v nsys || echo none)"
  echo "== thp: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
} > "$DEST/topology.txt" 2>&1
build_addon "$DEST/build.log"
echo "built at ${SECONDS} s"
P=bench/gpu/matrix-2026-11-23d-h200x2/plans
N=$(nproc); H=$(( N / 2 ))
run() {  # <label> <plan> [taskset cpus | VAR=value]
  local label=$1 plan=$2 cpus=${3:-}
  local pre=(); [[ -n $cpus ]] && pre=(taskset -c "$cpus"); [[ $cpus == *=* ]] && pre=(env "$cpus")
  "${pre[@]}" node bin/mmoc.js execute "$P/$plan.json" --steps 10 --json --trace "$DEST/runs/$label.trace.json" > "$DEST/runs/$label.json" 2> "$DEST/runs/$label.err" &
  local pid=$!
  sleep 6
  # the rank processes' threads: core now, CPU share since start
  ps -eLo pid,ppid,tid,psr,pcpu,comm --sort=-pcpu | awk 'NR==1 || $5 > 3' | head -40 > "$DEST/runs/$label.threads.txt"
  wait $pid
  echo "$label rc=$? at ${SECONDS} s"
}
for i in 1 2; do run "il-plain-$i" llama3.2-1b-2g-interleaved-1f1b-v2-mbs1x8-rc; done
run il-lo llama3.2-1b-2g-interleaved-1f1b-v2-mbs1x8-rc "0-$((H - 1))"
run il-hi llama3.2-1b-2g-interleaved-1f1b-v2-mbs1x8-rc "$H-$((N - 1))"
run il-plain-3 llama3.2-1b-2g-interleaved-1f1b-v2-mbs1x8-rc
for i in 1 2; do run "1x8-plain-$i" llama3.2-1b-2g-1f1b-mbs1x8; done
run 1x8-lo llama3.2-1b-2g-1f1b-mbs1x8 "0-$((H - 1))"
run 1x8-hi llama3.2-1b-2g-1f1b-mbs1x8 "$H-$((N - 1))"
for i in 1 2; do
  run "hostd-chunks-$i" llama3.2-1b-2g-1f1b-mbs2x4-hostadam-delayed
  run "hostd-static-$i" llama3.2-1b-2g-1f1b-mbs2x4-hostadam-delayed MMOC_ADAM_STATIC=1
done
for f in "$DEST"/runs/*.trace.json; do gzip -f "$f"; done
node bench/gpu/stage-medians.cjs "$DEST"/runs/*.trace.json.gz | tee "$DEST/stage-medians.txt"
# the device tool returns at most 8 files: the runs as one archive
tar -czf "$DEST/runs.tgz" -C "$DEST" runs && rm -rf "$DEST/runs"
