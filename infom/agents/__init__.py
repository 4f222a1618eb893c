"""Offline RL agents on one training layer: each is an [`Agent`][] value built from pure functions.

The command and the demo pick an agent by name from [`AGENTS`][]; nothing else looks agents up.
"""

from .bc import AGENT as _BC
from .crl_is import AGENT as _CRL_IS
from .dino_rebrac import AGENT as _DINO_REBRAC
from .fb_iql import AGENT as _FB_IQL
from .hilp_iql import AGENT as _HILP_IQL
from .infom import AGENT as _INFOM
from .iql import AGENT as _IQL
from .mbpo_rebrac import AGENT as _MBPO_REBRAC
from .rebrac import AGENT as _REBRAC


AGENTS = {
    agent.name: agent
    for agent in (_INFOM, _BC, _IQL, _REBRAC, _CRL_IS, _FB_IQL, _HILP_IQL, _DINO_REBRAC, _MBPO_REBRAC)
}
"""Every agent by the name `infom train --agent NAME` uses."""
