"""The component's exports: `rules.py` wired to the host's imports.

componentize-py finds the exports in the class `Policy`.
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
# so what lasts from call to call (here, the configuration) lives in the
# module: one per policy instance.
SETTINGS = rules.settings_from([])


class Policy(exports.Policy):
    def info(self):
        return PolicyInfo(name="{{name}}", version="0.1.0")

    def configure(self, settings):
        global SETTINGS
        try:
            SETTINGS = rules.settings_from(settings)
        except ValueError as e:
            raise Err(str(e)) from None

    def tick(self, now):
        return TickReport(**rules.tick(HostWorld, SETTINGS, now))
