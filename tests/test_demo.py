"""The Pendulum demo: its data convention, a tiny end-to-end run, and (slow) InFOM beating BC."""

import dataclasses

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import infom


TINY = dataclasses.replace(
    infom.PENDULUM_DEMO,
    infom=dataclasses.replace(
        infom.PENDULUM_DEMO.infom,
        network=infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=2),
        batch_size=16,
        num_futures=2,
        num_flow_steps=2,
    ),
    num_seeds=2,
    pretrain_updates=8,
    finetune_updates=8,
    pretrain_episodes=2,
    finetune_episodes=1,
    eval_episodes=2,
)


@pytest.fixture(scope="module")
def tiny_result():
    # The keyword overrides replace the config's fields: the run's config is TINY.
    config = dataclasses.replace(TINY, num_seeds=5, pretrain_updates=99, finetune_updates=99, eval_episodes=9)
    return infom.run_pendulum_demo(
        config=config, seed=3, num_seeds=2, pretrain_updates=8, finetune_updates=8, eval_episodes=2
    )


# The tiny end-to-end run compiles every phase of the demo (about a minute on 2 quiet cores), so it
# is `slow`; the training blocks and the gymnax evaluation it composes are tested by default in
# test_train_steps.py, test_run.py and test_gymnax.py.
@pytest.mark.slow
def test_tiny_demo_runs_end_to_end_with_finite_results(tiny_result):
    result = tiny_result
    assert result.seed == 3 and result.config == TINY
    assert list(result.baseline_returns) == list(TINY.baselines)
    for returns in (result.infom_returns, result.bc_returns, *result.baseline_returns.values()):
        assert returns.shape == (TINY.num_seeds,)
        # Pendulum's reward per step lies in [-16.3, 0].
        assert np.all(np.isfinite(returns)) and np.all(returns <= 0) and np.all(returns >= -16.3 * 200)
    assert list(result.behaviour_returns) == list(infom.pendulum_behaviours())
    assert all(-16.3 * 200 <= r <= 0 for r in result.behaviour_returns.values())
    for name, values in result.diagnostics._asdict().items():
        assert values.shape == (TINY.num_seeds,), name
        assert np.all(np.isfinite(values)), name
    assert set(result.seconds) == {"collect", "pretrain", "finetune", *TINY.baselines, "evaluate", "total"}


@pytest.mark.slow
def test_format_demo_result_lists_every_policy_and_seed(tiny_result):
    table = infom.format_demo_result(tiny_result)
    lines = (
        "InFOM (fine-tuned)",
        "BC (pre-trained actor)",
        "BC (+ fine-tuning data)",
        "IQL",
        "ReBRAC",
        "seed 3",
        "seed 4",
        "hold_left",
        "wall time",
    )
    for line in lines:
        assert line in table


def test_pendulum_data_is_reward_free_then_labelled_with_the_reward_of_the_state_before_the_step():
    pretrain, finetune = infom.collect_pendulum_data(TINY, key=jr.key(0))
    num_behaviours = len(infom.pendulum_behaviours())
    assert pretrain.observations.shape == (num_behaviours * TINY.pretrain_episodes * 200, 3)
    assert finetune.observations.shape == (num_behaviours * TINY.finetune_episodes * 200, 3)
    assert float(jnp.max(jnp.abs(pretrain.rewards))) == 0.0
    # Pendulum's reward is -(theta^2 + 0.1 theta'^2 + 0.001 u^2) for the row's own observation.
    torque = 2.0 * finetune.actions[:, 0]
    expected = infom.pendulum_state_reward(finetune.observations) - 0.001 * jnp.square(torque)
    np.testing.assert_allclose(finetune.rewards, expected, rtol=1e-5, atol=1e-4)
    # Every episode is 200 rows with one terminal at its end.
    terminals = np.asarray(finetune.terminals).reshape(-1, 200)
    assert terminals[:, -1].all() and not terminals[:, :-1].any()


@pytest.mark.parametrize("field, value", [("num_seeds", 0), ("finetune_updates", -1), ("action_noise", -0.1)])
def test_demo_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(TINY, **{field: value})


def test_baseline_overrides_change_only_their_agents_config_and_bad_ones_are_refused_by_name():
    from infom.run._demo import demo_baseline_config

    config = dataclasses.replace(
        TINY,
        baselines=("iql", "rebrac"),
        baseline_overrides=("rebrac.alpha_actor=0", "rebrac.alpha_critic=0.5"),
    )
    rebrac = demo_baseline_config(infom.AGENTS["rebrac"], config)
    assert (rebrac.alpha_actor, rebrac.alpha_critic) == (0.0, 0.5)
    assert rebrac.hidden_dims == TINY.infom.network.hidden_dims  # the demo's sizes are kept
    assert demo_baseline_config(infom.AGENTS["iql"], config) == demo_baseline_config(
        infom.AGENTS["iql"], TINY
    )
    for bad, message in (
        (("bc.alpha=1",), "AGENT.KEY=VALUE with AGENT one of the baselines"),
        (("rebrac_alpha=1",), "AGENT.KEY=VALUE"),
        (("rebrac.no_such_field=1",), "no_such_field"),
        (("rebrac.alpha_actor=-1",), "alpha_actor"),
    ):
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(config, baseline_overrides=bad)


@pytest.mark.slow
def test_default_demo_infom_beats_behaviour_cloning():
    result = infom.run_pendulum_demo()
    print(infom.format_demo_result(result))
    best_bc = np.maximum(result.bc_returns, result.baseline_returns["bc"])
    assert np.all(result.infom_returns > best_bc + 100.0)
    assert np.mean(result.infom_returns) > np.mean(best_bc) + 200.0
