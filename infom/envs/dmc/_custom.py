"""The locomotion tasks that ExORL adds to the DeepMind Control suite, on dm_control's own classes.

URLB (and with it ExORL) defines walker flip, cheetah run_backward / walk / walk_backward and
quadruped stand / jump in its `custom_dmc_tasks/` package. They are reimplemented here from those
published definitions: each task subclasses the dm_control suite task of its domain, so the physics
model, the episode initialisation and the observation are dm_control's own, and only the reward
(computed with dm_control's `rewards.tolerance` from the same physics quantities) is ExORL's.

This module imports dm_control and is imported only when such a task is made.
"""

from typing import Any

import numpy as np
from dm_control.rl import control
from dm_control.suite import cheetah, common, quadruped, walker
from dm_control.utils import rewards


_INF = float("inf")

# URLB custom_dmc_tasks/walker.py
_WALKER_CONTROL_TIMESTEP = 0.025
_WALKER_STAND_HEIGHT = 1.2
_WALKER_RUN_SPEED = 8
_WALKER_SPIN_SPEED = 5

# URLB custom_dmc_tasks/cheetah.py (no control timestep: one physics step of 0.01 s per action)
_CHEETAH_RUN_SPEED = 10.0
_CHEETAH_WALK_SPEED = 2.0
_CHEETAH_GROUND = (b'size="100 .8 .5"', b'size="200 .8 .5"')  # URLB's cheetah.xml widens the ground
_CHEETAH_TASKS = {  # task -> (target speed, forward)
    "run_backward": (_CHEETAH_RUN_SPEED, False),
    "walk": (_CHEETAH_WALK_SPEED, True),
    "walk_backward": (_CHEETAH_WALK_SPEED, False),
}

# URLB custom_dmc_tasks/quadruped.py
_QUADRUPED_CONTROL_TIMESTEP = 0.02
_QUADRUPED_FLOOR_SIZE = 20 * 0.5  # _DEFAULT_TIME_LIMIT * _WALK_SPEED, as for the suite's walk
_QUADRUPED_JUMP_HEIGHT = 1.0


class WalkerFlip(walker.PlanarWalker):
    """ExORL's `walker_flip`: stand up and spin forwards.

    Reward (URLB `custom_dmc_tasks/walker.py`, task `flip`):
    `stand * (5 * spin + 1) / 6` with `stand = (3 * tolerance(torso_height, (1.2, inf), margin=0.6)
    + (1 + torso_upright) / 2) / 4` and `spin = tolerance(L_y, (5, inf), margin=5,
    value_at_margin=0, sigmoid="linear")`, where `L_y` is the torso subtree's angular momentum about
    the y axis (`subtree_angmom["torso"][1]`). Initialisation and observation are the suite walker's.
    """

    def __init__(self, random: Any = None):
        super().__init__(move_speed=_WALKER_RUN_SPEED, random=random)

    def get_reward(self, physics: Any) -> Any:
        standing = rewards.tolerance(
            physics.torso_height(), bounds=(_WALKER_STAND_HEIGHT, _INF), margin=_WALKER_STAND_HEIGHT / 2
        )
        upright = (1 + physics.torso_upright()) / 2
        stand_reward = (3 * standing + upright) / 4
        spin = rewards.tolerance(
            physics.named.data.subtree_angmom["torso"][1],
            bounds=(_WALKER_SPIN_SPEED, _INF),
            margin=_WALKER_SPIN_SPEED,
            value_at_margin=0,
            sigmoid="linear",
        )
        return stand_reward * (5 * spin + 1) / 6


class CheetahMove(cheetah.Cheetah):
    """ExORL's cheetah `run_backward`, `walk` and `walk_backward`.

    Reward (URLB `custom_dmc_tasks/cheetah.py`, class `Cheetah` with `flip=False`):
    `tolerance(direction * speed, (target, inf), margin=target, value_at_margin=0,
    sigmoid="linear")`, where `speed` is the torso subtree's forward velocity (the
    `torso_subtreelinvel` sensor), `direction` is +1 forwards and -1 backwards, and `target` is 10
    (run) or 2 (walk). Initialisation and observation are the suite cheetah's.
    """

    def __init__(self, target_speed: float, forward: bool, random: Any = None):
        self._target_speed = target_speed
        self._direction = 1.0 if forward else -1.0
        super().__init__(random=random)

    def get_reward(self, physics: Any) -> Any:
        return rewards.tolerance(
            self._direction * physics.speed(),
            bounds=(self._target_speed, _INF),
            margin=self._target_speed,
            value_at_margin=0,
            sigmoid="linear",
        )


def _quadruped_upright(physics: Any) -> Any:
    # URLB's `_upright_reward(physics)` with deviation_angle=0: 1 when upright, 0 upside down.
    return rewards.tolerance(
        physics.torso_upright(), bounds=(1.0, _INF), sigmoid="linear", margin=2.0, value_at_margin=0
    )


class QuadrupedStand(quadruped.Move):
    """ExORL's `quadruped_stand`: keep the torso upright.

    Reward (URLB `custom_dmc_tasks/quadruped.py`, class `Stand`): `tolerance(torso_upright,
    (1, inf), margin=2, value_at_margin=0, sigmoid="linear")`, i.e. `(1 + torso_upright) / 2`.
    Initialisation (a random orientation dropped from the lowest contact-free height) and
    observation are the suite quadruped's.
    """

    def __init__(self, random: Any = None):
        super().__init__(desired_speed=0.0, random=random)

    def get_reward(self, physics: Any) -> Any:
        return _quadruped_upright(physics)


class QuadrupedJump(quadruped.Move):
    """ExORL's `quadruped_jump`: raise the centre of mass while upright.

    Reward (URLB `custom_dmc_tasks/quadruped.py`, class `Jump`, desired height 1.0):
    `upright * tolerance(com_z, (1, inf), margin=1, value_at_margin=0.5, sigmoid="linear")`, where
    `com_z` is the height of the torso subtree's centre of mass (the `center_of_mass` sensor) and
    `upright` is `quadruped_stand`'s reward. Initialisation and observation are the suite's.
    """

    def __init__(self, random: Any = None):
        super().__init__(desired_speed=0.0, random=random)

    def get_reward(self, physics: Any) -> Any:
        jump_up = rewards.tolerance(
            physics.named.data.sensordata["center_of_mass"][2],
            bounds=(_QUADRUPED_JUMP_HEIGHT, _INF),
            margin=_QUADRUPED_JUMP_HEIGHT,
            value_at_margin=0.5,
            sigmoid="linear",
        )
        return _quadruped_upright(physics) * jump_up


def _cheetah_physics() -> Any:
    xml, assets = cheetah.get_model_and_assets()
    old, new = _CHEETAH_GROUND
    if xml.count(old) != 1:  # pragma: no cover - a dm_control release that changed cheetah.xml
        raise RuntimeError("dm_control's cheetah.xml no longer has the ground geometry URLB widens")
    return cheetah.Physics.from_xml_string(xml.replace(old, new), assets)


def make_custom_environment(domain: str, task: str, random: np.random.RandomState) -> Any:
    """The dm_control `control.Environment` of an ExORL task that the suite lacks, with no time
    limit (the caller counts steps) and a flat observation (`observations`)."""
    if (domain, task) == ("walker", "flip"):
        physics = walker.Physics.from_xml_string(*walker.get_model_and_assets())
        return control.Environment(
            physics,
            WalkerFlip(random=random),
            time_limit=_INF,
            control_timestep=_WALKER_CONTROL_TIMESTEP,
            flat_observation=True,
        )
    if domain == "cheetah" and task in _CHEETAH_TASKS:
        target, forward = _CHEETAH_TASKS[task]
        return control.Environment(
            _cheetah_physics(),
            CheetahMove(target, forward, random=random),
            time_limit=_INF,
            flat_observation=True,
        )
    if domain == "quadruped" and task in ("stand", "jump"):
        xml = quadruped.make_model(floor_size=_QUADRUPED_FLOOR_SIZE)
        physics = quadruped.Physics.from_xml_string(xml, common.ASSETS)
        task_object = QuadrupedStand(random=random) if task == "stand" else QuadrupedJump(random=random)
        return control.Environment(
            physics,
            task_object,
            time_limit=_INF,
            control_timestep=_QUADRUPED_CONTROL_TIMESTEP,
            flat_observation=True,
        )
    raise ValueError(f"no custom task {domain}_{task}")  # pragma: no cover - guarded by the caller
