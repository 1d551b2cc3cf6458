#!/usr/bin/env python3
"""Sluice beside a producer on another SQLite: does the shared outbox survive,
and how long do the producer's commits wait?

Each run copies a claudemesh outbox of ROWS pending rows, starts `sluice run`
(default config, the member unlimited) against an ack-only `sluice broker`,
lets it drain alone for --alone seconds, then starts the producer (peer.py:
500 commits a second and a short-lived reader every 2 s, all on the peer's
SQLite) for --beside seconds, then lets it drain alone again for --after
seconds. Then it stops Sluice and runs PRAGMA integrity_check through the
peer. The drain's rates come from counts of its done rows, each timed where
its read began: alone, between a count at 1 s and one at --alone s, and again
over the --after window; beside, over the producer's own window (the rows of
the 0.1 s or so between a count and the producer's first or last commit are
taken off at the rate alone). Each run's ratio is the rate beside over the
rate alone before, and "bracketed" over the mean of the two rates alone.

    harness.py --peer debian=python3:sqlite3 \\
               --peer apsw-3.51.2=/venv/bin/python:apsw --runs 10

Prints a line per run and a table per peer: corrupt runs, the producer's
commit p50/p99/p99.9/max, and the drain's rate alone and beside the
producer. `--alone-only` measures the producer with no drain (its baseline).
`--peer nobody=python3:none` runs no producer: the ratio it prints is the
harness's own noise, what "beside" reads when nobody is there.
`--json FILE` writes every run's figures.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "peer.py")
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

SCHEMA = """
CREATE TABLE outbox (
  id TEXT PRIMARY KEY, client_message_id TEXT NOT NULL UNIQUE,
  request_fingerprint BLOB NOT NULL, payload BLOB NOT NULL,
  enqueued_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  status TEXT NOT NULL CHECK(status IN ('pending','inflight','done','dead','aborted')),
  last_error TEXT, delivered_at INTEGER, broker_message_id TEXT,
  aborted_at INTEGER, aborted_by TEXT, superseded_by TEXT);
CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
CREATE INDEX outbox_aborted ON outbox(status, aborted_at) WHERE status = 'aborted';
ALTER TABLE outbox ADD COLUMN mesh TEXT;
ALTER TABLE outbox ADD COLUMN target_spec TEXT;
ALTER TABLE outbox ADD COLUMN nonce TEXT;
ALTER TABLE outbox ADD COLUMN ciphertext TEXT;
ALTER TABLE outbox ADD COLUMN priority TEXT;
ALTER TABLE outbox ADD COLUMN sender_session_pubkey TEXT;
"""


def make_template(sluice, work, rows):
    """A claudemesh outbox of `rows` due rows, opened once by Sluice."""
    import sqlite3

    path = os.path.join(work, "template.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    now = int(time.time() * 1000)
    payload, ciphertext = b"a" * 200, "C" * 300
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO outbox (id, client_message_id, request_fingerprint, payload, enqueued_at,"
        " attempts, next_attempt_at, status, mesh, target_spec, nonce, ciphertext, priority)"
        " VALUES (?, ?, ?, ?, ?, 0, ?, 'pending', 'bench', '*',"
        " 'bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Ut', ?, 'next')",
        ((f"bench-{i:08d}", f"cm-bench-{i:08d}", b"\xab" * 32, payload, now, now, ciphertext)
         for i in range(rows)))
    conn.execute("COMMIT")
    conn.close()
    # What Sluice does to a claudemesh file the first time it opens it.
    config = write_config(work, "template.db", 1)
    subprocess.run([sluice, "outbox", "list", "--config", config, "--limit", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def write_config(work, outbox, port, extra="", drain=""):
    path = os.path.join(work, f"sluice-{outbox}.toml")
    with open(path, "w") as f:
        f.write(f"""outbox = "{outbox}"
[drain]
{drain}
[policy]
{extra}
[[mesh]]
slug = "bench"
broker_url = "ws://127.0.0.1:{port}"
mesh_id = "mesh_bench"
member_id = "mem_bench"
rate_limit_per_minute = 0
{MEMBER}
""")
    return path


def start_broker(sluice, work):
    out = os.path.join(work, "broker.out")
    proc = subprocess.Popen([sluice, "broker", "--port", "0", "--rate-limit", "none",
                             "--forget-messages"], stdout=open(out, "w"),
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        text = open(out).read()
        if "listening on ws://127.0.0.1:" in text:
            return proc, int(text.split("127.0.0.1:")[1].split()[0].strip("/"))
        time.sleep(0.05)
    sys.exit("harness: the test broker did not start")


def peer(python, driver, *args, timeout=600):
    out = subprocess.run([python, PEER, args[0], "--driver", driver, *args[1:]],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1:] or ["?"]
    return out.stdout.strip(), None


def count(python, driver, db):
    """(done rows, the moment the count's read began), or None."""
    out, _ = peer(python, driver, "count", db)
    try:
        rows, at = out.split()
        return int(rows), float(at)
    except (AttributeError, ValueError):
        return None


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[k]


def one_run(args, name, python, driver, template, port, index):
    work = tempfile.mkdtemp(prefix=f"share-{name}-{index}-", dir=args.work)
    db = os.path.join(work, "outbox.db")
    shutil.copy(template, db)
    # The copy is over a gigabyte of dirty pages: written back during the run,
    # it stalled the drain's and the producer's writes (a commit of 330 ms
    # once) and slowed the rates by chance. Each run starts with it on disk.
    os.sync()
    config = write_config(work, "outbox.db", port, args.policy, args.drain)
    log = os.path.join(work, "sluice.log")
    drain = None
    if not args.alone_only:
        drain = subprocess.Popen([args.sluice, "run", "--config", config],
                                 stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        time.sleep(1.0)
        cpy, cdrv = (args.counter.rsplit(":", 1) if args.counter else (python, driver))
        count0 = count(cpy, cdrv, db)
        time.sleep(max(0.0, args.alone - 1.0))
        count1 = count(cpy, cdrv, db)
    produced, err = peer(python, driver, "produce", db, str(args.beside),
                         timeout=args.beside + 120)
    producer = json.loads(produced) if produced else None
    result = {"peer": name, "run": index}
    if not args.alone_only:
        count2 = count(cpy, cdrv, db)
        # The drain alone once more, after the producer: the rate alone
        # before and after bracket the window beside, so the drain's own
        # drift over the run (the `none` peer's ratio) is not read as the
        # producer's cost.
        time.sleep(args.after)
        count3 = count(cpy, cdrv, db) if args.after > 0 else None
        drain.send_signal(signal.SIGTERM)
        try:
            drain.wait(timeout=30)
        except subprocess.TimeoutExpired:
            drain.kill()
            drain.wait()
        # Each count is timed where its read began: a window counted from
        # when a count returned, or from its nominal length, would be off by
        # a count's own time (its process starting, its scan). Alone: rows
        # between the first two counts over the time between their reads.
        # Beside: over the producer's own window; the rows of the 0.1 s or so
        # between each count and the producer's first or last commit are
        # taken off at the rate alone, more than the drain moves with the
        # producer's process starting or gone.
        try:
            result["done_counts"] = [count0[0], count1[0], count2[0]]
            result["count_moments"] = [count0[1], count1[1], count2[1]]
            alone = (count1[0] - count0[0]) / (count1[1] - count0[1])
            edges = (producer["started_at"] - count1[1]) + (count2[1] - producer["ended_at"])
            beside = (count2[0] - count1[0] - alone * edges) / (
                producer["ended_at"] - producer["started_at"])
            result["drain_alone_rows_s"], result["drain_beside_rows_s"] = alone, beside
            result["ratio"] = beside / alone
            if count3 is not None:
                after = (count3[0] - count2[0]) / (count3[1] - count2[1])
                result["drain_after_rows_s"] = after
                result["done_counts"].append(count3[0])
                result["count_moments"].append(count3[1])
                result["ratio_bracketed"] = beside / ((alone + after) / 2)
        except TypeError:  # a count or the producer failed
            result["drain_alone_rows_s"] = result["drain_beside_rows_s"] = None
        text = open(log, errors="replace").read()
        result["malformed_lines"] = text.count("malformed")
        result["log_lines"] = text.count("\n")
        result["drain_exit"] = drain.returncode
    check, check_err = peer(python, driver, "check", db)
    result["integrity"] = check if check is not None else f"check failed: {check_err}"
    result["corrupt"] = result["integrity"] != "ok"
    if producer:
        lat = sorted(producer.pop("latencies_ms"))
        for key in ("lock_wait_ms", "commit_ms"):
            part = sorted(producer.pop(key, []))
            result[key.replace("_ms", "")] = {
                "p50": percentile(part, 50), "p99": percentile(part, 99),
                "max": part[-1] if part else float("nan")}
        result.update(producer)
        result.update({k: percentile(lat, q) for k, q in
                       (("p50_ms", 50), ("p99_ms", 99), ("p999_ms", 99.9))})
        result["max_ms"] = lat[-1] if lat else float("nan")
        # How far the p99 is from its cliff: past 1% of commits over 5 ms, the
        # p99 jumps to the busy handler's next retry (8 ms).
        result["over_5ms"] = sum(1 for x in lat if x > 5.0) / len(lat) if lat else float("nan")
    else:
        result["producer_error"] = err
    if not args.keep and not result["corrupt"]:
        shutil.rmtree(work, ignore_errors=True)
    else:
        result["work"] = work
    return result


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default=os.path.join(ROOT, "target", "release", "sluice"))
    ap.add_argument("--peer", action="append", required=True,
                    help="NAME=PYTHON:DRIVER, DRIVER sqlite3, apsw, or none for no"
                    " producer (repeatable)")
    ap.add_argument("--runs", type=int, default=1)
    # Enough that the drain, at up to 130,000 rows/s here, has rows left for
    # all of the 6 s alone and the 10 s beside the producer.
    ap.add_argument("--rows", type=int, default=2_500_000)
    ap.add_argument("--alone", type=float, default=6.0, help="seconds the drain runs alone first")
    ap.add_argument("--beside", type=float, default=10.0, help="seconds the producer writes")
    ap.add_argument("--after", type=float, default=5.0,
                    help="seconds the drain runs alone again after the producer (0: none)")
    ap.add_argument("--policy", default="", help="extra lines for the config's [policy] table")
    ap.add_argument("--drain", default="", help="extra lines for the config's [drain] table")
    ap.add_argument("--counter", help="PYTHON:DRIVER for the harness's own done counts"
                    " (default: the peer's)")
    ap.add_argument("--alone-only", action="store_true", help="the producer with no drain")
    ap.add_argument("--work", default=None, help="folder for the runs' files")
    ap.add_argument("--keep", action="store_true", help="keep every run's files")
    ap.add_argument("--json", help="write every run's figures here")
    args = ap.parse_args()

    global MEMBER
    MEMBER = subprocess.run([args.sluice, "keygen"], check=True, capture_output=True,
                            text=True).stdout
    made_work = args.work is None
    args.work = args.work or tempfile.mkdtemp(prefix="sluice-share-")
    os.makedirs(args.work, exist_ok=True)
    template = make_template(args.sluice, args.work, args.rows)
    broker, port = start_broker(args.sluice, args.work)
    results = []
    try:
        for spec in args.peer:
            name, rest = spec.split("=", 1)
            python, driver = rest.rsplit(":", 1)
            version, err = peer(python, driver, "version")
            print(f"== peer {name}: {driver} on SQLite {version or err}", flush=True)
            for i in range(args.runs):
                r = one_run(args, name, python, driver, template, port, i + 1)
                r["sqlite"] = version
                results.append(r)
                print(f"{name} run {i + 1}: integrity {r['integrity']}; producer "
                      f"p50 {fmt(r.get('p50_ms'))} p99 {fmt(r.get('p99_ms'))} "
                      f"p99.9 {fmt(r.get('p999_ms'))} max {fmt(r.get('max_ms'))} ms, "
                      f"{r.get('commits', 0)} commits, {r.get('failed', '?')} failed, "
                      f"{fmt(100 * r.get('over_5ms', float('nan')))}% over 5 ms; drain "
                      f"{fmt(r.get('drain_alone_rows_s'), '.0f')} rows/s alone, "
                      f"{fmt(r.get('drain_beside_rows_s'), '.0f')} beside, "
                      f"{fmt(r.get('drain_after_rows_s'), '.0f')} alone after; ratio "
                      f"{fmt(r.get('ratio'), '.3f')} ({fmt(r.get('ratio_bracketed'), '.3f')}"
                      " against before and after)"
                      + (f"; kept {r['work']}" if "work" in r else ""), flush=True)
                for key in ("lock_wait", "commit"):
                    if key in r:
                        q = r[key]
                        print(f"    {key}: p50 {fmt(q['p50'])} p99 {fmt(q['p99'])} max {fmt(q['max'])} ms")
                if "checkpointing_commits" in r:
                    print(f"    commits that ran a checkpoint: {r['checkpointing_commits']};"
                          f" longest WAL after a commit: {r['wal_frames_max']} frames")
                if r.get("slow"):
                    print("    commits over 20 ms (s into the run, ms): "
                          + ", ".join(f"{t}: {ms}" for t, ms in r["slow"]))
    finally:
        broker.terminate()
        broker.wait()
        # The template alone is over a gigabyte; a corrupted run's files stay.
        if made_work and not args.keep and not any(r["corrupt"] for r in results):
            shutil.rmtree(args.work, ignore_errors=True)
    print("\npeer | SQLite | corrupt runs | producer p50 / p99 / p99.9 / max ms (median of runs)"
          " | drain rows/s alone / beside / alone after | ratio (bracketed)")
    for spec in args.peer:
        name = spec.split("=", 1)[0]
        rs = [r for r in results if r["peer"] == name]
        med = lambda k: (sorted(x for x in (r.get(k) for r in rs) if x is not None) or [None])[
            len([1 for r in rs if r.get(k) is not None]) // 2]
        print(f"{name} | {rs[0]['sqlite']} | {sum(r['corrupt'] for r in rs)} of {len(rs)} | "
              f"{fmt(med('p50_ms'))} / {fmt(med('p99_ms'))} / {fmt(med('p999_ms'))} / "
              f"{fmt(max((r.get('max_ms') or 0) for r in rs))} | "
              f"{fmt(med('drain_alone_rows_s'), '.0f')} / {fmt(med('drain_beside_rows_s'), '.0f')}"
              f" / {fmt(med('drain_after_rows_s'), '.0f')} | {fmt(med('ratio'), '.3f')}"
              f" ({fmt(med('ratio_bracketed'), '.3f')})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    sys.exit(1 if any(r["corrupt"] for r in results) else 0)


MEMBER = ""

if __name__ == "__main__":
    main()
