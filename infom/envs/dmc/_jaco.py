"""ExORL's Jaco reaching tasks, built with dm_control's manipulation library (composer).

A reimplementation of URLB's `custom_dmc_tasks/jaco.py` (`make(task_id, "states", seed)`, which
builds `_reach(task_id, obs_settings=PERFECT_FEATURES, use_site=True)`): the Jaco arm and hand of
`dm_control.manipulation.shared.robots` on the standard arena, the tool centre point started
uniformly in the box `[-0.2, 0.2] x [-0.2, 0.2] x [0.02, 0.4]` pointing down, the fingers at a
uniform grasp, and a fixed target site of radius 0.05 at one of four table corners.

This module imports dm_control and is imported only when a Jaco task is made.
"""

from typing import Any

import numpy as np
from dm_control import composer
from dm_control.composer import initializers
from dm_control.composer.variation import distributions
from dm_control.manipulation.shared import arenas, cameras, constants, observations, robots, workspaces
from dm_control.utils import rewards


# URLB custom_dmc_tasks/jaco.py
_PROP_Z_OFFSET = 0.001
_TARGET_RADIUS = 0.05
_TCP_LOWER = (-0.2, -0.2, 0.02)
_TCP_UPPER = (0.2, 0.2, 0.4)
_TARGET_BOX_LOWER = (-0.2, -0.2, 0.02)  # only drawn (an invisible site), as in URLB
_TARGET_BOX_UPPER = (0.2, 0.2, 0.4)
TARGETS = {
    "reach_top_left": (-0.09, 0.09, _PROP_Z_OFFSET),
    "reach_top_right": (0.09, 0.09, _PROP_Z_OFFSET),
    "reach_bottom_left": (-0.09, -0.09, _PROP_Z_OFFSET),
    "reach_bottom_right": (0.09, -0.09, _PROP_Z_OFFSET),
}
CONTROL_TIMESTEP = constants.CONTROL_TIMESTEP  # 0.04 s: 250 steps in URLB's 10 s time limit


class JacoReach(composer.Task):
    """Bring the Jaco hand's tool centre point to a fixed target site.

    Reward (URLB `custom_dmc_tasks/jaco.py`, class `MultiTaskReach` with one target):
    `tolerance(|tcp - target|, bounds=(0, 0.05), margin=0.05)` (dm_control's default Gaussian
    sigmoid, value 0.1 at the margin), as float32, where `tcp` is the world position of the hand's
    tool centre point and `target` is `(+-0.09, +-0.09, 0.001)`.
    """

    def __init__(self, task: str):
        obs_settings = observations.PERFECT_FEATURES
        self._arena = arenas.Standard()
        self._arm = robots.make_arm(obs_settings=obs_settings)
        self._hand = robots.make_hand(obs_settings=obs_settings)
        self._arm.attach(self._hand)
        self._arena.attach_offset(self._arm, offset=robots.ARM_OFFSET)
        self.control_timestep = CONTROL_TIMESTEP
        self._tcp_initializer = initializers.ToolCenterPointInitializer(
            self._hand,
            self._arm,
            position=distributions.Uniform(_TCP_LOWER, _TCP_UPPER),
            quaternion=workspaces.DOWN_QUATERNION,
        )
        # The camera observable is disabled under PERFECT_FEATURES; it is added so that the model
        # (and its camera list) is URLB's.
        self._task_observables = cameras.add_camera_observables(
            self._arena, obs_settings, cameras.FRONT_CLOSE
        )
        self._target_position = np.array(TARGETS[task])
        self._target = workspaces.add_target_site(
            body=self._arena.mjcf_model.worldbody,
            radius=_TARGET_RADIUS,
            visible=True,
            rgba=constants.RED,
            name="target_site",
        )
        workspaces.add_bbox_site(
            body=self._arena.mjcf_model.worldbody,
            lower=_TCP_LOWER,
            upper=_TCP_UPPER,
            rgba=constants.GREEN,
            name="tcp_spawn_area",
        )
        workspaces.add_bbox_site(
            body=self._arena.mjcf_model.worldbody,
            lower=_TARGET_BOX_LOWER,
            upper=_TARGET_BOX_UPPER,
            rgba=constants.BLUE,
            name="target_spawn_area",
        )

    @property
    def root_entity(self) -> Any:
        return self._arena

    @property
    def task_observables(self) -> Any:
        return self._task_observables

    def get_reward(self, physics: Any) -> np.float32:
        hand_position = physics.bind(self._hand.tool_center_point).xpos
        distance = np.linalg.norm(hand_position - self._target_position)
        return np.float32(rewards.tolerance(distance, bounds=(0, _TARGET_RADIUS), margin=_TARGET_RADIUS))

    def initialize_episode(self, physics: Any, random_state: np.random.RandomState) -> None:
        self._hand.set_grasp(physics, close_factors=random_state.uniform())
        self._tcp_initializer(physics, random_state)
        physics.bind(self._target).pos = self._target_position


def make_jaco_environment(task: str, random: np.random.RandomState) -> Any:
    """The composer `Environment` of a Jaco reaching task, with no time limit (the caller counts
    steps). Its observation is a dict of feature arrays, flattened by the caller."""
    return composer.Environment(JacoReach(task), time_limit=float("inf"), random_state=random)
