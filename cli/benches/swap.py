#!/usr/bin/env python3
"""Swap latency of a running drainer: from the moment a new policy file lands
(an atomic rename onto the watched --policy file) to the first tick on the new
policy (its `policy_running` log line), cold (compile cache emptied before
each swap) and cached, and the time from `sluice run` to the first send with a
warm cache. Each figure is the median of several swaps in the same run.

Usage: cargo build --release && python3 cli/benches/swap.py [SWAPS]
"""
import datetime, os, re, shutil, socket, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sluice = os.environ.get("SLUICE_BIN", os.path.join(root, "target/release/sluice"))
policies = [os.path.join(root, "target/release", n) for n in ("sluice-default.wasm", "sluice-outage-aware.wasm")]
swaps = int(sys.argv[1]) if len(sys.argv) > 1 else 8
work = tempfile.mkdtemp()
cache = os.path.join(work, "cache")
env = dict(os.environ, SLUICE_CACHE_DIR=cache, RUST_LOG="info", NO_COLOR="1")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

port = free_port()
broker = subprocess.Popen([sluice, "broker", "--port", str(port), "--rate-limit", "none"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
keys = subprocess.run([sluice, "keygen"], capture_output=True, text=True).stdout
config = os.path.join(work, "sluice.toml")
with open(config, "w") as f:
    f.write(f'outbox = "outbox.db"\n[[mesh]]\nslug = "main"\nbroker_url = "ws://127.0.0.1:{port}"\n'
            f'mesh_id = "m"\nmember_id = "u"\nrate_limit_per_minute = 0\n{keys}')
live = os.path.join(work, "live.wasm")
shutil.copy(policies[0], live)

def stamp(line):
    m = re.match(r"(\S+Z)", line)
    return datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() if m else None

def drain_log(path):
    with open(path, errors="replace") as f:
        return [l for l in f]

# Start to first send, warm cache: one row, the whole `sluice run` until the
# broker acked it (the drain logs nothing per send; the process exits when
# drained, so its wall time bounds start-to-first-send from above).
subprocess.run([sluice, "run", "--config", config, "--exit-when-drained"], env=env, capture_output=True)  # warms the cache
starts = []
for i in range(5):
    subprocess.run([sluice, "enqueue", "--config", config, "--payload", f"warm {i}"], env=env, capture_output=True)
    t0 = time.time()
    subprocess.run([sluice, "run", "--config", config, "--exit-when-drained"], env=env, capture_output=True)
    starts.append((time.time() - t0) * 1000)

log = os.path.join(work, "run.err")
run = subprocess.Popen([sluice, "run", "--config", config, "--policy", live], env=env,
                       stdout=subprocess.DEVNULL, stderr=open(log, "w"))
time.sleep(1.0)

def swap_to(path, cold):
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    staged = os.path.join(work, "next.wasm")
    shutil.copy(path, staged)
    before = len(drain_log(log))
    t0 = time.time()
    os.rename(staged, live)
    deadline = t0 + 10
    while time.time() < deadline:
        lines = drain_log(log)[before:]
        for line in lines:
            if "policy_running" in line:
                return (stamp(line) - t0) * 1000
        time.sleep(0.005)
    return None

results = {}
for mode in ("cold", "cached"):
    samples = []
    for i in range(swaps):
        latency = swap_to(policies[(i + 1) % 2], mode == "cold")
        if latency is not None:
            samples.append(latency)
        time.sleep(0.3)
    results[mode] = samples
run.terminate(); run.wait(); broker.terminate()
for mode, samples in results.items():
    print(f"swap {mode:6}: median {statistics.median(samples):6.1f} ms, min {min(samples):6.1f}, max {max(samples):6.1f} over {len(samples)} swaps (file landing to first tick)")
print(f"start to drained, one row, warm cache: median {statistics.median(starts):.0f} ms over {len(starts)} runs (an upper bound on start to first send)")
shutil.rmtree(work, ignore_errors=True)
