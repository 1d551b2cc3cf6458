#!/usr/bin/env bash
# A broker outage with a backlog waiting: the default policy against the
# outage-aware one, and a drainer swapped from the first to the second live,
# half-way through the outage. 1,000 rows (a tenth over a session link) are
# queued while `sluice broker` is down for OUTAGE seconds (default 600), then
# it starts on the same ports. Policy settings are the defaults.
# Usage: cargo build --release && OUTAGE=600 cli/benches/outage.sh
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
sluice=${SLUICE_BIN:-$here/target/release/sluice}
wasm=$here/target/release/sluice-outage-aware.wasm
outage=${OUTAGE:-600}
work=$(mktemp -d)
member=$("$sluice" keygen); session=$("$sluice" keygen)
session_pub=$(sed -n 's/public_key = "\(.*\)"/\1/p' <<<"$session")
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
names="default outage swapped"
for name in $names; do
  port=$(freeport); echo "$port" > "$work/$name.port"; mkdir -p "$work/$name"
  cat > "$work/$name/sluice.toml" <<TOML
outbox = "outbox.db"
[[mesh]]
slug = "main"
broker_url = "ws://127.0.0.1:$port"
mesh_id = "mesh_bench"
member_id = "mem_bench"
rate_limit_per_minute = 0
$member
[[session]]
mesh = "main"
session_id = "bench-session-$name"
$session
TOML
  python3 - 1000 "$session_pub" <<'PY' | "$sluice" enqueue --config "$work/$name/sluice.toml" --json >/dev/null
import json, sys
n, key = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    row = {"payload": "x" * 200, "mesh": "main", "target_spec": "@peers", "priority": "next",
           "nonce": "bm9uY2Vub25jZW5vbmNlbm9uY2Vub25j", "ciphertext": "c" * 300}
    if i % 10 == 0:
        row["sender_session_pubkey"] = key
    print(json.dumps(row))
PY
done
run() { # name, extra flags
  local name=$1; shift
  "$sluice" run --config "$work/$name/sluice.toml" "$@" --exit-when-drained >"$work/$name.out" 2>"$work/$name.err"
  date +%s.%N >"$work/$name.end"
}
run default & run outage --policy "$wasm" & run swapped &
echo "three drainers started; the broker is down for ${outage}s"
sleep $((outage / 2))
"$sluice" policy load "$wasm" --config "$work/swapped/sluice.toml"
sleep $((outage - outage / 2))
for name in $names; do
  "$sluice" broker --port "$(cat "$work/$name.port")" --rate-limit none >"$work/$name.broker" 2>&1 &
done
back=$(date +%s.%N)
wait %1 %2 %3
for name in $names; do
  dead=$(python3 -c "import sqlite3; print(sqlite3.connect('$work/$name/outbox.db').execute(\"select count(*) from outbox where status='dead'\").fetchone()[0])")
  echo "$name: $dead dead; drained $(python3 -c "print(f'{$(cat "$work/$name.end")-$back:.1f}')") s after the broker came back; $(wc -l <"$work/$name.err") log lines; $(cat "$work/$name.out")"
done
"$sluice" status --config "$work/swapped/sluice.toml" | sed -n '/^policy/,/^links/p'
kill $(jobs -p) 2>/dev/null
