"""Offline RL agents on one training layer: each is an [`Agent`][] value built from pure functions.

The command and the demo pick an agent by name from [`AGENTS`][]; nothing else looks agents up.
"""

from .bc import AGENT as _BC
from .infom import AGENT as _INFOM
from .iql import AGENT as _IQL
from .rebrac import AGENT as _REBRAC


AGENTS = {agent.name: agent for agent in (_INFOM, _BC, _IQL, _REBRAC)}
"""Every agent by the name `infom train --agent NAME` uses."""
