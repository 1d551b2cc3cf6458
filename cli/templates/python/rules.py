"""The rules for one row, free of I/O: what to send, and what became of it.

`tick` is the only function that calls the world: `app.py` hands it the
host's imports, `test_rules.py` a small in-memory one.
"""

import base64

from wit_world.imports.types import (
    ClaimFilter, Delivery, Dispatch, HoldPlan, Level, Outcome, RetryPlan,
    Route_Daemon, Route_Session, SendResult_Accepted, SendResult_Failed,
    SendResult_Rejected, SessionState, Verdict_Dead, Verdict_Done, Verdict_Hold,
    Verdict_Retry,
)

LEGACY_NONCE_BYTES = 24

# This policy's settings (its `[policy.{{name}}]` table) and their defaults.
DEFAULTS = {
    "batch_rows": 256,
    "max_attempts": 10,
    "backoff_base_ms": 1_000,
    "backoff_cap_ms": 60_000,
    "lease_ms": 30_000,
    "ack_timeout_ms": 10_000,
    "row_ttl_ms": 24 * 60 * 60 * 1000,
}


def settings_from(pairs):
    """The defaults with `pairs` on top; errors name the key, nothing changes."""
    settings = dict(DEFAULTS)
    for key, text in pairs:
        if key not in DEFAULTS:
            raise ValueError(f"unknown setting `{key}`: this policy knows {', '.join(DEFAULTS)}")
        try:
            value = int(text.strip())
        except ValueError:
            value = 0
        if value <= 0:
            raise ValueError(f"setting `{key}` = {text!r}: give a whole number above 0")
        settings[key] = value
    if settings["lease_ms"] <= settings["ack_timeout_ms"]:
        raise ValueError("setting `lease_ms` must exceed `ack_timeout_ms`: a lease must outlast the wait for an ack")
    return settings


class Dead:
    def __init__(self, reason):
        self.reason = reason


class Retry:
    def __init__(self, error):
        self.error = error


def present(value):
    """An empty string is NULL, as the daemon writes it."""
    return value or None


def route_mesh(row, meshes):
    """The mesh a row goes over, or (None, the label of a missing one)."""
    mesh = present(row.mesh)
    if mesh is not None:
        return (mesh, None) if mesh in meshes else (None, mesh)
    return (meshes[0], None) if len(meshes) == 1 else (None, "null")


def decide(row, now, settings, meshes, sessions, fresh_nonce):
    """A Dispatch to send, or Dead or Retry without a send."""
    if row.defect is not None:
        return Dead(f"malformed_row: {row.defect}")
    if now - row.enqueued_at > settings["row_ttl_ms"]:
        return Dead("expired")
    mesh, missing = route_mesh(row, meshes)
    if mesh is None:
        return Dead(f"no_broker_for_mesh:{missing}")
    fields = {"target_spec": present(row.target_spec), "nonce": present(row.nonce),
              "ciphertext": present(row.ciphertext)}
    if all(fields.values()):
        target, nonce, ciphertext = fields.values()
    elif not any(fields.values()):
        # A legacy row: a broadcast, with a fresh nonce.
        target = "*"
        nonce = base64.b64encode(fresh_nonce()).decode()
        ciphertext = base64.b64encode(row.payload).decode()
    else:
        # Never broadcast a half-routed direct message.
        gaps = ", ".join(k for k, v in fields.items() if not v)
        return Dead(f"malformed_row: missing {gaps}")
    key = present(row.sender_session_pubkey)
    if key is None:
        route = Route_Daemon(mesh)
    elif sessions.get(key) == SessionState.OPEN:
        # A session's row goes over that session's link, or waits for it.
        route = Route_Session(key)
    else:
        return Retry("session_ws_not_open")
    return Dispatch(
        rowid=row.rowid, route=route, client_message_id=row.client_message_id,
        request_fingerprint_hex=bytes(row.request_fingerprint).hex(),
        target_spec=target, priority=row.priority if row.priority in ("now", "low") else "next",
        nonce=nonce, ciphertext=ciphertext,
    )


def rate_refused(result):
    """Refused for the member's rate, or not written for its spent budget."""
    if isinstance(result, SendResult_Rejected):
        text = result.value.lower().replace("_", " ").replace("-", " ")
        return "rate limit" in text or "too many requests" in text
    return isinstance(result, SendResult_Failed) and result.value == "rate_budget_empty"


PERMANENT = ("payload too large", "forbidden", "not found", "invalid", "schema", "signature")


def retry(row, error, now, settings):
    if row.attempts >= settings["max_attempts"]:
        return Verdict_Dead(f"max_attempts: {error}")
    wait = min(settings["backoff_base_ms"] << min(row.attempts, 30), settings["backoff_cap_ms"])
    return Verdict_Retry(RetryPlan(next_attempt_at=now + wait, last_error=error))


def judge(row, result, now, settings):
    if isinstance(result, SendResult_Accepted):
        return Verdict_Done(Delivery(broker_message_id=result.value, delivered_at=now))
    if rate_refused(result):
        # Not the row's fault: give the attempt back, come back in a second.
        return Verdict_Hold(HoldPlan(next_attempt_at=now + 1_000, last_error=None))
    if isinstance(result, SendResult_Rejected) and any(p in result.value.lower() for p in PERMANENT):
        return Verdict_Dead(result.value)
    return retry(row, result.value, now, settings)


def tick(world, settings, now):
    """One pass: reclaim, claim, decide, send, settle, sweep; the report's counts."""
    report = {"reclaimed": world.reclaim(now), "expired": 0}
    links = world.mesh_links()
    idle = [link.slug for link in links if not link.open or link.tokens == 0]
    skip = ClaimFilter(skip_meshes=idle, skip_unnamed=len(links) == 1 and bool(idle))
    rows = world.claim_due(now, settings["batch_rows"], settings["lease_ms"], skip)
    meshes = [link.slug for link in links]
    keys = sorted({k for k in (present(r.sender_session_pubkey) for r in rows) if k})
    sessions = dict(zip(keys, world.session_states(keys))) if keys else {}
    decisions = [decide(r, now, settings, meshes, sessions,
                        lambda: world.random_bytes(LEGACY_NONCE_BYTES)) for r in rows]
    dispatches = [d for d in decisions if isinstance(d, Dispatch)]
    results = iter(world.send_batch(dispatches, settings["ack_timeout_ms"]) if dispatches else [])
    after = world.now()

    outcomes, throttled = [], set()
    for row, decision in zip(rows, decisions):
        if isinstance(decision, Dispatch):
            result = next(results, None) or SendResult_Failed("host_returned_no_result")
            mesh = route_mesh(row, meshes)[0]
            if isinstance(result, SendResult_Rejected) and rate_refused(result) and mesh not in throttled:
                throttled.add(mesh)
                world.throttle(mesh)  # the member's bucket is empty: slow all its links
            verdict = judge(row, result, after, settings)
        elif isinstance(decision, Dead):
            verdict = Verdict_Dead(decision.reason)
        else:
            verdict = retry(row, decision.error, after, settings)
        if isinstance(verdict, Verdict_Dead):
            world.log(Level.WARN, "policy_dead", [("id", row.id), ("reason", verdict.value)])
        # Every claimed row, with the attempts it was claimed with.
        outcomes.append(Outcome(rowid=row.rowid, attempts=row.attempts, verdict=verdict))
    if outcomes:
        world.settle(outcomes)
    kinds = [type(o.verdict) for o in outcomes]
    report.update(
        claimed=len(rows), done=kinds.count(Verdict_Done), dead=kinds.count(Verdict_Dead),
        retried=kinds.count(Verdict_Retry), held=kinds.count(Verdict_Hold),
        more_due=len(rows) >= settings["batch_rows"],
    )
    if not report["more_due"]:
        now = world.now()
        report["expired"] = world.expire(now, now - settings["row_ttl_ms"])
    # When to come back: the next due row, or the next token of a spent mesh.
    due = [world.next_due_at(skip)] + [l.next_token_at for l in links if l.open and l.tokens == 0]
    due = [t for t in due if t is not None]
    report["next_due_at"] = min(due) if due else None
    return report
