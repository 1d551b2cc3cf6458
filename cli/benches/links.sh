#!/usr/bin/env bash
# Figures for the broker links, measured with the release `sluice` binary
# against `sluice broker` on 127.0.0.1, each pair in the same run:
#   1. throughput with broker faults (10% of acks dropped, every socket
#      closed after 500 frames) against the same rows without faults;
#   2. a paced drain at the real broker's budget (60 a minute, burst 10)
#      against the bucket's own bound;
#   3. the broker killed twice during a drain: log lines and retries.
# Usage: cargo build --release && cli/benches/links.sh [ROWS]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
sluice=${SLUICE_BIN:-$here/target/release/sluice}
rows=${1:-20000}
paced_rows=${SLUICE_BENCH_PACED_ROWS:-40}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

member=$("$sluice" keygen)
session=$("$sluice" keygen)
session_pub=$(sed -n 's/public_key = "\(.*\)"/\1/p' <<<"$session")

start_broker() { # port-file, flags...
  local out=$1; shift
  "$sluice" broker --port "${PORT:-0}" "$@" >"$out" 2>/dev/null &
  for _ in $(seq 100); do grep -q listening "$out" 2>/dev/null && break; sleep 0.05; done
  sed -n 's/listening on ws:\/\/127.0.0.1:\([0-9]*\)/\1/p' "$out"
}

config() { # dir, port, mesh extra, policy extra
  mkdir -p "$1"
  cat >"$1/sluice.toml" <<TOML
outbox = "outbox.db"
[policy]
$4
[[mesh]]
slug = "main"
broker_url = "ws://127.0.0.1:$2"
mesh_id = "mesh_bench"
member_id = "mem_bench"
$member
$3
[[session]]
mesh = "main"
session_id = "bench-session"
$session
TOML
}

fill() { # dir, rows: a tenth are session rows
  python3 - "$2" "$session_pub" <<'PY' | "$sluice" enqueue --config "$1/sluice.toml" --json >/dev/null
import json, sys
n, key = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    row = {"payload": "x" * 200, "mesh": "main", "target_spec": "@peers", "priority": "next",
           "nonce": "bm9uY2Vub25jZW5vbmNlbm9uY2Vub25j", "ciphertext": "c" * 300}
    if i % 10 == 0:
        row["sender_session_pubkey"] = key
    print(json.dumps(row))
PY
}

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" "$2"; }

echo "== 1. faults: $rows rows, a tenth over a session link"
policy="batch_rows = 1024
ack_timeout_ms = 300
lease_ms = 5000
backoff_base_ms = 10
backoff_cap_ms = 200"
for run in clean faults; do
  flags=(--rate-limit none)
  [ "$run" = faults ] && flags+=(--drop-acks 0.1 --close-after-frames 500 --seed 7)
  port=$(start_broker "$work/$run.broker" "${flags[@]}")
  config "$work/$run" "$port" "rate_limit_per_minute = 0" "$policy"
  fill "$work/$run" "$rows"
  "$sluice" run --config "$work/$run/sluice.toml" --exit-when-drained >"$work/$run.out" 2>"$work/$run.err"
  kill %1 2>/dev/null || true; wait 2>/dev/null || true
  echo "$run: $(cat "$work/$run.out")"
done
clean=$(field rows_per_second "$work/clean.out"); faults=$(field rows_per_second "$work/faults.out")
python3 -c "print(f'faults / clean throughput: {$faults/$clean:.2f}')"

echo "== 2. paced: $paced_rows rows at 60 a minute, burst 10 (half over the session link)"
port=$(start_broker "$work/paced.broker" --rate-limit 60/10)
config "$work/paced" "$port" "rate_limit_per_minute = 60
rate_limit_burst = 10" ""
python3 - "$paced_rows" "$session_pub" <<'PY' | "$sluice" enqueue --config "$work/paced/sluice.toml" --json >/dev/null
import json, sys
for i in range(int(sys.argv[1])):
    row = {"payload": "p", "mesh": "main", "target_spec": "*", "nonce": "bm9uY2U=", "ciphertext": "Yw=="}
    if i % 2 == 0:
        row["sender_session_pubkey"] = sys.argv[2]
    print(json.dumps(row))
PY
started=$(date +%s.%N)
"$sluice" run --config "$work/paced/sluice.toml" --exit-when-drained >"$work/paced.out" 2>"$work/paced.err"
ended=$(date +%s.%N)
kill -INT %1 2>/dev/null || true; wait 2>/dev/null || true
echo "paced: $(cat "$work/paced.out")"
echo "broker: $(tail -1 "$work/paced.broker")"
python3 -c "
bound = max(0, $paced_rows - 10)  # seconds: the burst goes at once, then one a second
took = $ended - $started
print(f'paced: {took:.1f} s for a bound of {bound} s: {took/bound:.2f}x the bucket')"

echo "== 3. broker killed twice during a drain of $rows rows"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PORT
start_broker "$work/outage.broker" --rate-limit none >/dev/null
config "$work/outage" "$PORT" "rate_limit_per_minute = 0" "batch_rows = 256"
fill "$work/outage" "$rows"
"$sluice" run --config "$work/outage/sluice.toml" --exit-when-drained >"$work/outage.out" 2>"$work/outage.err" &
drain=$!
for _ in 1 2; do
  sleep 0.3; kill %1 2>/dev/null || true; wait %1 2>/dev/null || true
  sleep 2; start_broker "$work/outage.broker" --rate-limit none >/dev/null
done
wait "$drain"
echo "outage: $(cat "$work/outage.out")"
echo "outage: most frequent log lines:"
sed 's/\x1b\[[0-9;]*m//g' "$work/outage.err" | awk '{print "   ", $2, $3, $4}' | sort | uniq -c | sort -rn | head -4
echo "outage: $(wc -l <"$work/outage.err") log lines, $(grep -c WARN "$work/outage.err") WARN, $(grep -c drain_send_threw "$work/outage.err") drain_send_threw, $(wc -c <"$work/outage.err") bytes"
