"""The component's exports: `rules.py` wired to the host's imports.

componentize-py looks for a class named after the exported interface
(`Policy`) in this module.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.policy import PolicyInfo, TickReport
from wit_world.imports import env, links, store
from wit_world.imports.types import Field

import rules


class HostWorld:
    """The host's imports, as `rules.tick` calls them."""

    reclaim = staticmethod(store.reclaim)
    claim_due = staticmethod(store.claim_due)
    settle = staticmethod(store.settle)
    expire = staticmethod(store.expire)
    next_due_at = staticmethod(store.next_due_at)
    mesh_links = staticmethod(links.mesh_links)
    throttle = staticmethod(links.throttle)
    session_states = staticmethod(links.session_states)
    send_batch = staticmethod(links.send_batch)
    now = staticmethod(env.now)
    random_bytes = staticmethod(env.random_bytes)

    @staticmethod
    def log(level, event, fields):
        env.log(level, event, [Field(key=k, value=v) for k, v in fields])


# componentize-py makes a new `Policy` for every call into the component,
# so what lasts from call to call lives here, in the module: one per policy
# instance.
SETTINGS = rules.Settings.default()
# The claim size, carried from tick to tick.
CLAIM = rules.ClaimSize()


class Policy(exports.Policy):
    def info(self):
        return PolicyInfo(name="python-default", version="0.1.0")

    def configure(self, settings):
        global SETTINGS, CLAIM
        try:
            SETTINGS = rules.Settings.from_pairs(settings)
        except rules.SettingError as e:
            raise Err(str(e)) from None
        CLAIM = rules.ClaimSize()

    def tick(self, now):
        r = rules.tick(HostWorld, SETTINGS, CLAIM, now)
        return TickReport(
            claimed=r.claimed, done=r.done, dead=r.dead, retried=r.retried,
            held=r.held, reclaimed=r.reclaimed, expired=r.expired,
            more_due=r.more_due, next_due_at=r.next_due_at,
        )
