"""The rules in CPython: `./build.sh test` (it writes the types first)."""

import unittest

import rules
from wit_world.imports.types import (
    Dispatch, MeshLink, Route_Daemon, Row, SendResult_Accepted, SendResult_Failed,
    SendResult_Rejected, SessionState, Verdict_Dead, Verdict_Done, Verdict_Hold,
    Verdict_Retry,
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
    """An in-memory host: rows to claim, and an answer for each send."""

    def __init__(self, rows, answer):
        self.rows, self.answer = rows, answer
        self.settled, self.throttled = [], []

    def reclaim(self, now): return 0
    def mesh_links(self): return [MeshLink("m", True, 100, NOW, 60)]
    def claim_due(self, now, limit, lease_ms, skip):
        taken, self.rows = self.rows[:limit], self.rows[limit:]
        return taken
    def session_states(self, keys): return [SessionState.ABSENT for _ in keys]
    def send_batch(self, dispatches, timeout): return [self.answer(d) for d in dispatches]
    def random_bytes(self, n): return bytes(n)
    def now(self): return NOW
    def throttle(self, mesh): self.throttled.append(mesh)
    def settle(self, outcomes): self.settled.extend(outcomes); return len(outcomes)
    def expire(self, now, cutoff): return 0
    def next_due_at(self, skip): return None
    def log(self, level, event, fields): pass


SETTINGS = rules.settings_from([])


def decide(r):
    return rules.decide(r, NOW, SETTINGS, ["m"], {}, lambda: bytes(24))


class Rules(unittest.TestCase):
    def test_a_routed_row_is_sent_with_its_own_content(self):
        d = decide(row(1))
        self.assertIsInstance(d, Dispatch)
        self.assertEqual((d.route, d.request_fingerprint_hex), (Route_Daemon("m"), "01ab"))

    def test_a_legacy_row_is_broadcast_and_a_half_routed_one_is_dead(self):
        d = decide(row(1, target_spec="", nonce=None, ciphertext=None))
        self.assertEqual((d.target_spec, d.ciphertext), ("*", "aGVsbG8="))
        self.assertEqual(decide(row(2, nonce=None)).reason, "malformed_row: missing nonce")

    def test_a_session_row_waits_and_an_unknown_mesh_is_dead(self):
        self.assertEqual(decide(row(1, sender_session_pubkey="ab" * 32)).error, "session_ws_not_open")
        self.assertEqual(decide(row(2, mesh="x")).reason, "no_broker_for_mesh:x")

    def test_settings_errors_name_the_key(self):
        with self.assertRaisesRegex(ValueError, "`nope`"):
            rules.settings_from([("nope", "1")])
        with self.assertRaisesRegex(ValueError, "`max_attempts`"):
            rules.settings_from([("max_attempts", "x")])

    def test_every_claimed_row_is_settled_with_its_attempts(self):
        answers = {"c1": SendResult_Accepted("b1"), "c2": SendResult_Rejected("forbidden"),
                   "c3": SendResult_Failed("ack_timeout"),
                   "c4": SendResult_Rejected("rate_limit: slow down")}
        world = World([row(1), row(2), row(3, attempts=4), row(4), row(5, defect="bad")],
                      lambda d: answers[d.client_message_id])
        report = rules.tick(world, SETTINGS, NOW)
        self.assertEqual([(o.rowid, o.attempts) for o in world.settled],
                         [(1, 1), (2, 1), (3, 4), (4, 1), (5, 1)])
        self.assertEqual([type(o.verdict) for o in world.settled],
                         [Verdict_Done, Verdict_Dead, Verdict_Retry, Verdict_Hold, Verdict_Dead])
        self.assertEqual(world.throttled, ["m"])
        self.assertEqual((report["claimed"], report["done"], report["held"]), (5, 1, 1))


if __name__ == "__main__":
    unittest.main()
