"""A producer that writes the outbox as the claudemesh daemon does, on the
SQLite of whichever Python runs it: Debian's through the `sqlite3` module, or
the one a pinned `apsw` wheel bundles.

    peer.py version  --driver D               print the peer's SQLite version
    peer.py produce  --driver D DB SECONDS    500 commits a second; latencies as JSON
    peer.py count    --driver D DB            one short-lived read of the done count,
                                              and the moment that read began
    peer.py check    --driver D DB            PRAGMA integrity_check, first line

D is sqlite3, apsw, or none: no producer (its counts and check use sqlite3),
to measure the drain's rate "beside" nobody, the harness's own noise.

The daemon's settings: WAL, synchronous=NORMAL, busy_timeout=5000; each
message is BEGIN IMMEDIATE, a SELECT by client_message_id, one INSERT, COMMIT.
`PEER_ARRIVALS=poisson` spaces the commits at random (exponential) intervals of the
same mean. While it produces, it also starts a short-lived reader process (`count`)
every 2 s (PEER_READ_EVERY), as an operator's `sqlite3 outbox.db 'select count(*)…'`.
`PEER_DUMP=FILE` also writes each commit's start (CLOCK_MONOTONIC, seconds), latency,
lock wait, `COMMIT` time and WAL length there as JSON, to set beside a trace of Sluice's.
"""

import json
import os
import random
import subprocess
import sys
import time


def connect(driver, path):
    if driver == "apsw":
        import apsw

        conn = apsw.Connection(path)
        conn.setbusytimeout(5000)

        def run(sql, args=()):
            return list(conn.cursor().execute(sql, args))

        return conn, run, apsw.sqlite_lib_version()
    import sqlite3  # also the `none` driver's, for its counts and its check

    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)

    def run(sql, args=()):
        return conn.execute(sql, args).fetchall()

    return conn, run, sqlite3.sqlite_version


def idle(seconds):
    """The `none` driver's produce: no process on the file, only the window.
    Run beside the drain it measures the ratio the harness reads when nobody
    is there: how far its rate alone and `beside` differ by chance."""
    started = time.monotonic()
    time.sleep(seconds)
    print(json.dumps({"commits": 0, "latencies_ms": [], "lock_wait_ms": [], "commit_ms": [],
                      "started_at": started, "ended_at": time.monotonic(), "failed": 0}))


def produce(driver, path, seconds):
    if driver == "none":
        return idle(seconds)
    conn, run, _ = connect(driver, path)
    run("PRAGMA journal_mode=WAL")
    run("PRAGMA synchronous=NORMAL")
    if "PEER_AUTOCHECKPOINT" in os.environ:  # for experiments on the mechanism
        run(f"PRAGMA wal_autocheckpoint={int(os.environ['PEER_AUTOCHECKPOINT'])}")
    rate = 500
    payload = b"p" * 200
    ciphertext = "c" * 300
    latencies = []
    lock_waits = []
    commits = []
    failures = []
    readers = []
    # The WAL's length after each commit, from the wal-index header (mxFrame,
    # at byte 16 of the -shm file): a commit that leaves 1000 frames or more
    # (wal_autocheckpoint) runs a checkpoint of its own. The descriptor stays
    # open until the connection is closed: closing any descriptor of a file
    # drops this process's POSIX locks on it, SQLite's included.
    shm = os.open(path + "-shm", os.O_RDONLY)
    autocheckpoint = int(os.environ.get("PEER_AUTOCHECKPOINT", "1000"))
    checkpointing = 0
    slow = []  # (seconds into the run, ms) of commits over 20 ms
    wal_frames = []
    starts = []
    started = time.monotonic()
    next_read = started
    # PEER_ARRIVALS=poisson: the same mean rate, each commit due a random
    # (exponential) while after the one before, as messages that come when
    # they come; the default is one every 2 ms, on a fixed schedule.
    poisson = os.environ.get("PEER_ARRIVALS") == "poisson"
    random.seed(os.getpid())
    due = started
    i = 0
    while True:
        now = time.monotonic()
        if now - started >= seconds:
            break
        if now >= next_read and os.environ.get("PEER_READERS", "1") != "0":
            readers.append(subprocess.Popen(
                [sys.executable, __file__, "count", "--driver", driver, path],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            next_read += float(os.environ.get("PEER_READ_EVERY", "2"))
        if os.environ.get("PEER_WRITES", "1") == "0":  # readers only, for experiments
            time.sleep(0.01)
            continue
        if poisson:
            due += random.expovariate(rate)
        else:
            due = started + i / rate
        if due > now:
            time.sleep(due - now)
        cmid = f"peer-{os.getpid()}-{i:08d}"
        t0 = time.perf_counter()
        try:
            run("BEGIN IMMEDIATE")
            t1 = time.perf_counter()
            run("SELECT id FROM outbox WHERE client_message_id = ?", (cmid,))
            ms = int(time.time() * 1000)
            run(
                "INSERT INTO outbox (id, client_message_id, request_fingerprint, payload,"
                " enqueued_at, attempts, next_attempt_at, status, mesh, target_spec, nonce,"
                " ciphertext, priority) VALUES (?, ?, ?, ?, ?, 0, ?, 'pending', 'bench', '*',"
                " 'bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Ut', ?, 'next')",
                (cmid, cmid, b"\xab" * 32, payload, ms, ms, ciphertext),
            )
            t2 = time.perf_counter()
            run("COMMIT")
            t3 = time.perf_counter()
            latencies.append((t3 - t0) * 1000.0)
            starts.append(t0)
            if (t3 - t0) * 1000.0 > 20:
                slow.append((round(time.monotonic() - started, 3), round((t3 - t0) * 1000.0, 1)))
            lock_waits.append((t1 - t0) * 1000.0)
            commits.append((t3 - t2) * 1000.0)
            frames = int.from_bytes(os.pread(shm, 4, 16), sys.byteorder)
            wal_frames.append(frames)
            if autocheckpoint > 0 and frames >= autocheckpoint:
                checkpointing += 1
        except Exception as e:  # a failed send is what a daemon's user sees
            failures.append(str(e))
            try:
                run("ROLLBACK")
            except Exception:
                pass
        i += 1
    ended = time.monotonic()
    reader_errors = []
    for r in readers:
        _, err = r.communicate()
        if r.returncode != 0:
            reader_errors.append(err.decode(errors="replace").strip().splitlines()[-1:])
    conn.close()
    os.close(shm)
    if os.environ.get("PEER_DUMP"):
        with open(os.environ["PEER_DUMP"], "w") as f:
            json.dump({"t0": starts, "lat": latencies, "lw": lock_waits, "cm": commits, "wal": wal_frames}, f)
    print(json.dumps({
        "commits": len(latencies),
        # When the producer wrote, on the clock of the counts' moments.
        "started_at": started,
        "ended_at": ended,
        "latencies_ms": latencies,
        "lock_wait_ms": lock_waits,
        "commit_ms": commits,
        "checkpointing_commits": checkpointing,
        "wal_frames_max": max(wal_frames, default=0),
        "slow": slow[:20],
        "failures": failures[:5],
        "failed": len(failures),
        "readers": len(readers),
        "reader_errors": reader_errors[:5],
    }))


def main():
    mode, _, driver, *rest = sys.argv[1:]
    if mode == "version":
        print(connect(driver, ":memory:")[2])
    elif mode == "produce":
        produce(driver, rest[0], float(rest[1]))
    elif mode == "count":
        conn, run, _ = connect(driver, rest[0])
        # The count is of the snapshot its read began on; the moment printed
        # beside it (CLOCK_MONOTONIC, the same in every process) lets the
        # harness time a rate between two counts.
        at = time.monotonic()
        print(run("SELECT count(*) FROM outbox WHERE status = 'done'")[0][0], at)
        conn.close()
    elif mode == "check":
        conn, run, _ = connect(driver, rest[0])
        rows = run("PRAGMA integrity_check")
        print(rows[0][0] if len(rows) == 1 else f"{len(rows)} problems, first: {rows[0][0]}")
        conn.close()
    else:
        sys.exit(f"peer.py: unknown mode {mode}")


if __name__ == "__main__":
    main()
