#!/usr/bin/env bash
# Messages per second per Redis shard (docs/capacity.md): redis-benchmark against a private
# redis-server on a free loopback port, publishing a payload the size of a Switchboard feed frame
# (≈ 750 bytes for a 128-byte message, measured by `npm run bench:scale`'s proxy) to channels
# with as many subscribers as a message has listening nodes. Prints requests/s (what
# redis-benchmark's client reached on this machine) and the Redis server's own CPU per publish
# (INFO cpu), from which publishes per Redis core follow. Stops what it started.
#   loadtest/tools/redis-shard-bench.sh [requests] [payload bytes]
set -euo pipefail
N=${1:-100000}
SIZE=${2:-750}
DIR=$(mktemp -d /tmp/sb-shard-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" --client-output-buffer-limit 'pubsub 0 0 0' >"$DIR/redis.log" 2>&1 &
REDIS=$!
SUBS=()
cleanup() {
  for p in "${SUBS[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$REDIS" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
PAYLOAD=$(head -c "$SIZE" /dev/zero | tr '\0' x)
cpu() { redis-cli -p "$PORT" info cpu | awk -F: '/used_cpu_(sys|user):/ {s+=$2} END {printf "%.4f", s}'; }
subscribe() { # kind count channel: raw readers (cat), which keep up where redis-cli's printing does not
  for _ in $(seq "$2"); do
    bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0; printf "%s %s\r\n" "$1" "$2" >&3; exec cat <&3 >/dev/null' "$PORT" "$1" "$3" &
    SUBS+=($!)
  done
  sleep 0.5
  echo "  ($(redis-cli -p "$PORT" info clients | awk -F: '/pubsub_clients|connected_clients/ {printf "%s ", $0}' | tr -d '\r'))" >&2
}
unsubscribe() {
  for p in "${SUBS[@]}"; do kill "$p" 2>/dev/null || true; done
  SUBS=()
  sleep 0.3
}
run() { # label pipeline command channel
  local c0 c1 rps
  c0=$(cpu)
  rps=$(printf '%s' "$PAYLOAD" | redis-benchmark -p "$PORT" -n "$N" -c 50 -P "$2" -q -x "$3" "$4" | awk '{for (i=1;i<=NF;i++) if ($i ~ /requests/) print $(i-1)}' | tail -1)
  sleep 1 # the subscribers drain what is buffered for them (their writes are Redis CPU too)
  c1=$(cpu)
  awk -v l="$1" -v r="$rps" -v c0="$c0" -v c1="$c1" -v n="$N" -v p="$2" 'BEGIN {us=(c1-c0)/n*1e6; printf "%-58s P%-3s %10s req/s   Redis CPU %6.2f µs/publish = %8.0f publishes per Redis core-second\n", l, p, r, us, (us>0?1e6/us:0)}'
}
echo "redis-benchmark: $N requests, 50 clients, ${SIZE}-byte payload, private redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$PORT; load average $(cut -d' ' -f1-3 /proc/loadavg)"
run 'PUBLISH, no subscriber' 16 publish feed
subscribe subscribe 4 feed
run 'PUBLISH to 4 subscribers (classic: every node hears)' 1 publish feed
run 'PUBLISH to 4 subscribers (classic: every node hears)' 16 publish feed
unsubscribe
subscribe psubscribe 4 'sb:socket.io#/chat#*'
run 'PUBLISH matched by 4 PSUBSCRIBE patterns (classic rooms)' 16 publish 'sb:socket.io#/chat#room-1#'
unsubscribe
subscribe ssubscribe 1 'sb:room:{r1}'
run 'SPUBLISH to 1 SSUBSCRIBE subscriber (a DM: one node)' 16 spublish 'sb:room:{r1}'
unsubscribe
subscribe ssubscribe 4 'sb:room:{r1}'
run 'SPUBLISH to 4 SSUBSCRIBE subscribers (a room on 4 nodes)' 16 spublish 'sb:room:{r1}'
unsubscribe
