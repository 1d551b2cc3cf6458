"""The rules on their own, in CPython: `python3 -m unittest` after
`componentize-py -d ../../wit -w drain-policy bindings .` (the types)."""

import unittest

import rules
from wit_world.imports.types import (
    Level, MeshLink, Route_Daemon, Route_Session, Row, SendResult_Accepted,
    SendResult_Failed, SendResult_Rejected, SessionState, Verdict_Dead,
    Verdict_Done, Verdict_Hold, Verdict_Retry,
)

NOW = 1_700_000_000_000


def row(rowid, **columns):
    values = dict(
        rowid=rowid, id=f"r{rowid}", client_message_id=f"c{rowid}",
        request_fingerprint=b"\x01\xab", payload=b"hello", enqueued_at=NOW - 1000,
        attempts=1, mesh="m", target_spec="peer", nonce="bm9uY2U=", ciphertext="Y3Q=",
        priority=None, sender_session_pubkey=None, defect=None,
    )
    values.update(columns)
    return Row(**values)


class World:
    """An in-memory host: the rows to claim, and one answer per send."""

    def __init__(self, rows, answer, links=None, sessions=None):
        self.rows, self.answer = rows, answer
        self.links = links or [MeshLink("m", True, 2**32 - 1, NOW, 0)]
        self.sessions = sessions or {}
        self.settled, self.sent, self.throttled, self.logs = [], [], [], []

    def reclaim(self, now): return 0
    def mesh_links(self): return self.links
    def claim_due(self, now, limit, lease_ms, skip):
        taken, self.rows = self.rows[:limit], self.rows[limit:]
        return taken
    def session_states(self, keys):
        return [self.sessions.get(k, SessionState.ABSENT) for k in keys]
    def send_batch(self, dispatches, ack_timeout_ms):
        self.sent.extend(dispatches)
        return [self.answer(d) for d in dispatches]
    def random_bytes(self, n): return bytes(n)
    def now(self): return NOW
    def throttle(self, mesh): self.throttled.append(mesh)
    def settle(self, outcomes): self.settled.extend(outcomes); return len(outcomes)
    def expire(self, now, cutoff): return 0
    def next_due_at(self, skip): return None
    def log(self, level, event, fields): self.logs.append(event)


def decide(r, sessions=None, meshes=("m",)):
    return rules.decide(r, NOW, rules.Settings.default(), list(meshes), sessions or {},
                        lambda: bytes(24))


class Decide(unittest.TestCase):
    def test_a_routed_row_goes_over_its_mesh_with_its_own_content(self):
        d = decide(row(1)).dispatch
        self.assertEqual(d.route, Route_Daemon("m"))
        self.assertEqual((d.client_message_id, d.request_fingerprint_hex), ("c1", "01ab"))
        self.assertEqual((d.target_spec, d.nonce, d.ciphertext, d.priority),
                         ("peer", "bm9uY2U=", "Y3Q=", "next"))

    def test_a_legacy_row_is_broadcast_and_a_half_routed_one_is_dead(self):
        d = decide(row(1, target_spec="", nonce=None, ciphertext=None)).dispatch
        self.assertEqual((d.target_spec, d.ciphertext), ("*", "aGVsbG8="))
        dead = decide(row(2, nonce=""))
        self.assertEqual(dead.reason, "malformed_row: missing nonce")

    def test_meshes_and_sessions(self):
        self.assertEqual(decide(row(1, mesh="x")).reason, "no_broker_for_mesh:x")
        self.assertEqual(decide(row(2, mesh=None), meshes=("a", "b")).reason,
                         "no_broker_for_mesh:null")
        self.assertEqual(decide(row(3, mesh="")).dispatch.route, Route_Daemon("m"))
        open_ = decide(row(4, sender_session_pubkey="ab" * 32), {"ab" * 32: SessionState.OPEN})
        self.assertEqual(open_.dispatch.route, Route_Session("ab" * 32))
        waiting = decide(row(5, sender_session_pubkey="cd" * 32))
        self.assertEqual(waiting.error, "session_ws_not_open")
        gone = decide(row(6, sender_session_pubkey="cd" * 32, enqueued_at=NOW - 11 * 60_000))
        self.assertEqual(gone.reason, "session_gone")

    def test_errors_are_told_apart(self):
        self.assertTrue(rules.is_permanent("payload too large"))
        self.assertFalse(rules.is_permanent("auth timeout"))  # transient first
        self.assertFalse(rules.is_permanent("something new"))
        self.assertTrue(rules.is_rate_limit("rate_limit: max 60 msg/min"))


class Settings(unittest.TestCase):
    def test_errors_name_the_key_and_change_nothing(self):
        with self.assertRaisesRegex(rules.SettingError, "`nope`"):
            rules.Settings.from_pairs([("max_attempts", "3"), ("nope", "1")])
        with self.assertRaisesRegex(rules.SettingError, "`lease_ms`"):
            rules.Settings.from_pairs([("lease_ms", "10")])
        self.assertEqual(rules.Settings.from_pairs([("batch_rows", "7")]).batch_rows_max, 7)

    def test_backoff_doubles_to_its_cap(self):
        s = rules.Settings.default()
        self.assertEqual([s.backoff_ms(n) for n in (0, 1, 2, 6, 20)],
                         [500, 1000, 2000, 30_000, 30_000])


class Tick(unittest.TestCase):
    def test_every_claimed_row_is_settled_with_its_claimed_attempts(self):
        answers = {"c1": SendResult_Accepted("b1"), "c2": SendResult_Rejected("forbidden"),
                   "c3": SendResult_Failed("ack_timeout")}
        world = World([row(1), row(2, attempts=4), row(3), row(4, defect="attempts: text")],
                      lambda d: answers[d.client_message_id])
        report = rules.tick(world, rules.Settings.default(), rules.ClaimSize(), NOW)
        self.assertEqual([(o.rowid, o.attempts) for o in world.settled],
                         [(1, 1), (2, 4), (3, 1), (4, 1)])
        kinds = [type(o.verdict) for o in world.settled]
        self.assertEqual(kinds, [Verdict_Done, Verdict_Dead, Verdict_Retry, Verdict_Dead])
        self.assertEqual((report.claimed, report.done, report.dead, report.retried),
                         (4, 1, 2, 1))
        self.assertEqual(len(world.sent), 3)  # the defective row is never sent

    def test_a_rate_refusal_throttles_the_member_and_holds_the_row(self):
        world = World([row(1), row(2)], lambda d: SendResult_Rejected("rate_limit: slow down"),
                      links=[MeshLink("m", True, 10, NOW, 60)])
        report = rules.tick(world, rules.Settings.default(), rules.ClaimSize(), NOW)
        self.assertEqual(world.throttled, ["m"])
        self.assertTrue(all(isinstance(o.verdict, Verdict_Hold) for o in world.settled))
        self.assertEqual(report.held, 2)

    def test_a_spent_budget_holds_rows_a_spacing_apart(self):
        world = World([row(1), row(2), row(3)], lambda d: SendResult_Accepted("b"),
                      links=[MeshLink("m", True, 1, NOW, 60)])
        rules.tick(world, rules.Settings.default(), rules.ClaimSize(), NOW)
        self.assertEqual(len(world.sent), 1)
        holds = [o.verdict.value.next_attempt_at for o in world.settled
                 if isinstance(o.verdict, Verdict_Hold)]
        self.assertEqual(holds, [NOW + 1000, NOW + 2000])


if __name__ == "__main__":
    unittest.main()
