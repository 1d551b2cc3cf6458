"""The default policy's rules, in Python, free of I/O.

The same rules as Sluice's embedded default (`policy/src` in Rust): route by
mesh, a session's rows over that session's link only, a broadcast for
legacy rows, a budget spent by priority, backoff, dead-lettering and expiry.
`tick` is the only function that calls the world; `app.py` hands it the
host's imports, and the tests hand it a small in-memory one.
"""

import base64
from dataclasses import dataclass, field

from wit_world.imports.types import (
    ClaimFilter,
    Delivery,
    Dispatch,
    HoldPlan,
    Level,
    Outcome,
    RetryPlan,
    Route_Daemon,
    Route_Session,
    SendResult_Accepted,
    SendResult_Failed,
    SendResult_Rejected,
    SessionState,
    Verdict_Dead,
    Verdict_Done,
    Verdict_Hold,
    Verdict_Retry,
)

LEGACY_NONCE_BYTES = 24
RATE_BUDGET_EMPTY = "rate_budget_empty"
# How long a row refused for its rate waits when its mesh has no limit.
UNLIMITED_HOLD_MS = 1_000
DAY_MS = 24 * 60 * 60 * 1000
U32_MAX = 2**32 - 1

# ---------------------------------------------------------------- settings

# name: (default, smallest, largest)
SETTINGS = {
    "max_attempts": (25, 1, 10_000),
    "backoff_base_ms": (500, 1, DAY_MS),
    "backoff_cap_ms": (30_000, 1, DAY_MS),
    "backoff_exponent_max": (12, 0, 40),
    "lease_ms": (30_000, 1, DAY_MS),
    "batch_rows": (32, 1, 10_000),
    "batch_rows_max": (1024, 1, 10_000),
    "batch_target_ms": (100, 1, 60_000),
    "ack_timeout_ms": (15_000, 1, 3_600_000),
    "row_ttl_ms": (DAY_MS, 1, 365 * DAY_MS),
    "session_gone_after_ms": (10 * 60 * 1000, 1, 365 * DAY_MS),
    "session_not_ready_log_every": (60, 1, U32_MAX),
}


class SettingError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    values: dict

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @staticmethod
    def default():
        return Settings({k: d for k, (d, _, _) in SETTINGS.items()})

    @staticmethod
    def from_pairs(pairs):
        """The defaults with `pairs` on top; all or nothing."""
        values = {k: d for k, (d, _, _) in SETTINGS.items()}
        for key, text in pairs:
            if key not in SETTINGS:
                raise SettingError(
                    f"unknown policy setting `{key}`: known settings are {', '.join(SETTINGS)}"
                )
            _, low, high = SETTINGS[key]
            try:
                value = int(text.strip())
            except ValueError:
                raise SettingError(
                    f"policy setting `{key}` = {text!r} is not a whole number: give one from {low} to {high}"
                ) from None
            if not low <= value <= high:
                raise SettingError(
                    f"policy setting `{key}` = {value} is out of range: give one from {low} to {high}"
                )
            values[key] = value
        given = {key for key, _ in pairs}
        # `batch_rows` alone fixes the claim.
        if "batch_rows" in given and "batch_rows_max" not in given:
            values["batch_rows_max"] = values["batch_rows"]
        s = Settings(values)
        if s.batch_rows > s.batch_rows_max:
            raise SettingError(
                f"policy setting `batch_rows` ({s.batch_rows}) exceeds `batch_rows_max` ({s.batch_rows_max}): raise the max or lower batch_rows"
            )
        if s.backoff_base_ms > s.backoff_cap_ms:
            raise SettingError(
                f"policy setting `backoff_base_ms` ({s.backoff_base_ms}) exceeds `backoff_cap_ms` ({s.backoff_cap_ms}): raise the cap or lower the base"
            )
        if s.lease_ms <= s.ack_timeout_ms:
            raise SettingError(
                f"policy setting `lease_ms` ({s.lease_ms}) must exceed `ack_timeout_ms` ({s.ack_timeout_ms}): a lease that runs out while a send awaits its ack lets another drainer send the row again"
            )
        return s

    def backoff_ms(self, attempts):
        exponent = min(attempts, self.backoff_exponent_max)
        return min(self.backoff_base_ms * (1 << exponent), self.backoff_cap_ms)


# ---------------------------------------------------------- error classes

TRANSIENT = ("rate limit", "too many requests", "timeout", "timed out", "closed",
             "not open", "no connected peer for target")
PERMANENT = ("payload too large", "forbidden", "not found", "invalid", "schema",
             "auth", "signature", "blocked by recipient grants")
RATE = ("rate limit", "too many requests")


def _normalise(error):
    return error.replace("_", " ").replace("-", " ").lower()


def is_rate_limit(error):
    text = _normalise(error)
    return any(p in text for p in RATE)


def is_permanent(error):
    """Transient texts are checked first; anything unknown is transient."""
    text = _normalise(error)
    if any(p in text for p in TRANSIENT):
        return False
    return any(p in text for p in PERMANENT)


# ------------------------------------------------------------- decisions


@dataclass
class Log:
    level: Level
    event: str
    fields: list


@dataclass
class Send:
    dispatch: Dispatch


@dataclass
class Dead:
    reason: str
    log: Log = None


@dataclass
class Retry:
    error: str
    log: Log = None


def present(value):
    """An empty string is NULL, as the daemon writes it."""
    return value if value else None


def _line(level, event, row, **extra):
    return Log(level, event, [("id", row.id), *extra.items()])


def route_mesh(row, meshes):
    """(mesh, None), or (None, the label of the mesh no link exists for)."""
    mesh = present(row.mesh)
    if mesh is not None:
        return (mesh, None) if mesh in meshes else (None, mesh)
    if len(meshes) == 1:
        return meshes[0], None
    return None, "null"


def decide(row, now, settings, meshes, sessions, fresh_nonce):
    """What to do with a claimed row before sending."""
    if row.defect is not None:
        reason = f"malformed_row: {row.defect}"
        return Dead(reason, _line(Level.WARN, "drain_malformed_row", row, err=reason))
    if now - row.enqueued_at > settings.row_ttl_ms:
        age = str(now - row.enqueued_at)
        return Dead("expired", _line(Level.WARN, "drain_expired_rows", row, age_ms=age))
    mesh, missing_mesh = route_mesh(row, meshes)
    if mesh is None:
        log = _line(Level.WARN, "drain_no_broker_for_mesh", row, mesh=missing_mesh)
        return Dead(f"no_broker_for_mesh:{missing_mesh}", log)

    fields = {
        "target_spec": present(row.target_spec),
        "nonce": present(row.nonce),
        "ciphertext": present(row.ciphertext),
    }
    if all(v is not None for v in fields.values()):
        target, nonce, ciphertext = fields["target_spec"], fields["nonce"], fields["ciphertext"]
        priority = row.priority if row.priority in ("now", "low") else "next"
    elif all(v is None for v in fields.values()):
        # A legacy row: broadcast it with a fresh nonce.
        target = "*"
        nonce = base64.b64encode(fresh_nonce()).decode()
        ciphertext = base64.b64encode(row.payload).decode()
        priority = "next"
    else:
        # Never broadcast a half-routed direct message.
        missing = ", ".join(k for k, v in fields.items() if v is None)
        reason = f"malformed_row: missing {missing}"
        return Dead(reason, _line(Level.WARN, "drain_malformed_row", row, err=reason))

    pubkey = present(row.sender_session_pubkey)
    if pubkey is None:
        route = Route_Daemon(mesh)
    else:
        short = pubkey[:12]
        state = sessions.get(pubkey, SessionState.ABSENT)
        if state == SessionState.OPEN:
            route = Route_Session(pubkey)
        elif state == SessionState.ABSENT and now - row.enqueued_at > settings.session_gone_after_ms:
            log = _line(Level.WARN, "drain_session_gone", row, session_pubkey=short)
            return Dead("session_gone", log)
        else:
            every = settings.session_not_ready_log_every
            log = None
            if row.attempts == 1 or row.attempts % every == 0:
                log = _line(Level.INFO, "drain_session_ws_not_ready", row,
                            session_pubkey=short, attempts=str(row.attempts))
            return Retry("session_ws_not_open", log)
    return Send(Dispatch(
        rowid=row.rowid,
        route=route,
        client_message_id=row.client_message_id,
        request_fingerprint_hex=bytes(row.request_fingerprint).hex(),
        target_spec=target,
        priority=priority,
        nonce=nonce,
        ciphertext=ciphertext,
    ))


def retry(row, error, now, settings):
    """A transient failure: back off, or dead once attempts run out."""
    if row.attempts >= settings.max_attempts:
        log = _line(Level.WARN, "drain_max_attempts", row, err=error)
        return Verdict_Dead(f"max_attempts: {error}"), log
    plan = RetryPlan(next_attempt_at=now + settings.backoff_ms(row.attempts), last_error=error)
    return Verdict_Retry(plan), None


def judge(row, result, now, settings):
    """The verdict for what the host reported for a row's dispatch."""
    if isinstance(result, SendResult_Accepted):
        return Verdict_Done(Delivery(broker_message_id=result.value, delivered_at=now)), None
    if isinstance(result, SendResult_Rejected) and is_permanent(result.value):
        log = _line(Level.WARN, "drain_permanent_failure", row, err=result.value)
        return Verdict_Dead(result.value), log
    return retry(row, result.value, now, settings)


# ---------------------------------------------------------------- budget


def spacing_ms(per_minute):
    return 0 if per_minute == 0 else -(-60_000 // per_minute)


class Pacer:
    """Hands out one tick's share of each member's send budget."""

    def __init__(self, links, now):
        self.budgets = {}
        for link in links:
            spacing = spacing_ms(link.per_minute)
            next_slot = now + spacing if link.tokens > 0 else max(link.next_token_at, now)
            self.budgets[link.slug] = [link.tokens, spacing, next_slot]

    def take(self, mesh):
        budget = self.budgets.get(mesh)
        if budget is None:
            return False
        if budget[1] == 0:
            return True
        if budget[0] > 0:
            budget[0] -= 1
            return True
        return False

    def slot(self, mesh, now):
        """When the next row held back for `mesh` may go; books the slot."""
        budget = self.budgets.get(mesh)
        if budget is None or budget[1] == 0:
            return now + UNLIMITED_HOLD_MS
        slot = max(budget[2], now)
        budget[2] = slot + budget[1]
        return slot

    def exhaust(self, mesh, now):
        budget = self.budgets.get(mesh)
        if budget is not None:
            budget[0] = 0
            budget[2] = max(budget[2], now + budget[1])


def claim_filter(links):
    idle = [link for link in links if not link.open or link.tokens == 0]
    return ClaimFilter(
        skip_meshes=[link.slug for link in idle],
        skip_unnamed=len(links) == 1 and bool(idle),
    )


def next_budget_at(links):
    waits = [link.next_token_at for link in links if link.open and link.tokens == 0]
    return min(waits) if waits else None


# ------------------------------------------------------------ claim size


@dataclass
class ClaimSize:
    """The claim size a drain loop carries from tick to tick."""
    rows: int = 0

    def limit(self, settings):
        rows = self.rows or settings.batch_rows
        return max(settings.batch_rows, min(rows, settings.batch_rows_max))

    def observe(self, limit, claimed, troubled, took_ms, settings):
        rows = self.limit(settings)
        target = settings.batch_target_ms
        if troubled or took_ms > 2 * target:
            nxt = rows // 2
        elif claimed < limit:
            nxt = 1 if claimed <= 1 else 1 << (claimed - 1).bit_length()
        elif took_ms <= target:
            nxt = rows * 2
        else:
            nxt = rows
        self.rows = max(settings.batch_rows, min(nxt, settings.batch_rows_max))


# ------------------------------------------------------------------ tick

PRIORITY_RANK = {"now": 0, "next": 1, "low": 2}


@dataclass
class Report:
    claimed: int = 0
    done: int = 0
    dead: int = 0
    retried: int = 0
    held: int = 0
    reclaimed: int = 0
    expired: int = 0
    more_due: bool = False
    next_due_at: int = None
    logs: list = field(default_factory=list)


def tick(world, settings, claim, now):
    """One pass; `world` has the host's store, links and env calls."""
    report = Report(reclaimed=world.reclaim(now))
    links = world.mesh_links()
    skip = claim_filter(links)
    limit = claim.limit(settings)
    rows = world.claim_due(now, limit, settings.lease_ms, skip)
    report.claimed = len(rows)
    report.more_due = report.claimed >= limit
    troubled, took_ms = False, 0
    if rows:
        outcomes, troubled, answered_at = _drain_rows(world, settings, now, rows, links)
        took_ms = max(0, answered_at - now)
        for outcome in outcomes:
            verdict = outcome.verdict
            if isinstance(verdict, Verdict_Done):
                report.done += 1
            elif isinstance(verdict, Verdict_Dead):
                report.dead += 1
            elif isinstance(verdict, Verdict_Retry):
                report.retried += 1
            else:
                report.held += 1
        world.settle(outcomes)
    claim.observe(limit, report.claimed, troubled, took_ms, settings)

    # The sweep reads every pending row: it waits for a drained backlog.
    if not report.more_due:
        now = world.now()
        report.expired = world.expire(now, now - settings.row_ttl_ms)
        if report.expired:
            world.log(Level.WARN, "drain_expired_rows", [("count", str(report.expired))])
    due = [t for t in (world.next_due_at(skip), next_budget_at(links)) if t is not None]
    report.next_due_at = min(due) if due else None
    return report


def _drain_rows(world, settings, now, rows, links):
    meshes = [link.slug for link in links]
    keys = sorted({k for k in (present(r.sender_session_pubkey) for r in rows) if k})
    sessions = dict(zip(keys, world.session_states(keys))) if keys else {}
    decisions = [
        decide(row, now, settings, meshes, sessions,
               lambda: world.random_bytes(LEGACY_NONCE_BYTES))
        for row in rows
    ]

    # Spend each member's budget: `now` first, then `next`, then `low`.
    pacer = Pacer(links, now)
    held = {}
    sending = [i for i, d in enumerate(decisions) if isinstance(d, Send)]
    sending.sort(key=lambda i: PRIORITY_RANK.get(decisions[i].dispatch.priority, 1))
    for i in sending:
        mesh = route_mesh(rows[i], meshes)[0] or ""
        if not pacer.take(mesh):
            held[i] = pacer.slot(mesh, now)
    dispatches = [d.dispatch for i, d in enumerate(decisions)
                  if isinstance(d, Send) and i not in held]
    results = iter(world.send_batch(dispatches, settings.ack_timeout_ms) if dispatches else [])
    after = world.now()

    failures = {}
    throttled = []
    held_after = 0
    outcomes = []
    for i, (row, decision) in enumerate(zip(rows, decisions)):
        log = None
        if isinstance(decision, Send) and i in held:
            verdict = Verdict_Hold(HoldPlan(next_attempt_at=held[i], last_error=None))
        elif isinstance(decision, Send):
            result = next(results, None)
            mesh = route_mesh(row, meshes)[0] or ""
            if isinstance(result, SendResult_Failed) and result.value == RATE_BUDGET_EMPTY:
                held_after += 1
                verdict = Verdict_Hold(HoldPlan(pacer.slot(mesh, after), None))
            elif isinstance(result, SendResult_Rejected) and is_rate_limit(result.value):
                held_after += 1
                if mesh not in throttled:
                    throttled.append(mesh)
                    world.throttle(mesh)
                    pacer.exhaust(mesh, after)
                verdict = Verdict_Hold(HoldPlan(pacer.slot(mesh, after), result.value))
            elif result is None:
                # A host that answered fewer results broke the contract.
                verdict, log = retry(row, "host_returned_no_result", after, settings)
            else:
                if isinstance(result, SendResult_Failed):
                    route = decision.dispatch.route
                    label = (f"mesh:{route.value}" if isinstance(route, Route_Daemon)
                             else f"session:{route.value[:12]}")
                    entry = failures.setdefault((label, result.value), [0, row.id])
                    entry[0] += 1
                verdict, log = judge(row, result, after, settings)
        elif isinstance(decision, Dead):
            verdict, log = Verdict_Dead(decision.reason), decision.log
        else:
            verdict, cap_log = retry(row, decision.error, after, settings)
            log = cap_log or decision.log
        if log is not None:
            world.log(log.level, log.event, log.fields)
        outcomes.append(Outcome(rowid=row.rowid, attempts=row.attempts, verdict=verdict))

    # One line per link and error, not one per row.
    for (link, error), (count, first_id) in sorted(failures.items()):
        world.log(Level.WARN, "drain_send_threw",
                  [("link", link), ("err", error), ("rows", str(count)), ("first_id", first_id)])
    if throttled:
        world.log(Level.INFO, "drain_rate_limited", [("mesh", ",".join(sorted(throttled)))])
    troubled = bool(held) or bool(failures) or held_after > 0
    return outcomes, troubled, after
