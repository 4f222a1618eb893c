"""The OGBench evaluation harness: environments, batched policy calls, seeding, worker shutdown."""

import multiprocessing

import gymnasium
import numpy as np
import ogbench.manipspace  # noqa: F401  (registers the environments)
import pytest

import infom


TASK = "cube-single-play-singletask-task1-v0"


def test_eval_env_name_maps_dataset_names_to_single_task_envs():
    assert infom.eval_env_name("cube-single-play-singletask-task1-v0") == "cube-single-singletask-task1-v0"
    assert infom.eval_env_name("scene-play-ft-singletask-task3-v0") == "scene-singletask-task3-v0"
    assert infom.eval_env_name("puzzle-4x4-singletask-v0") == "puzzle-4x4-singletask-v0"
    with pytest.raises(ValueError, match="single task"):
        infom.eval_env_name("cube-double-play-v0")


@pytest.mark.parametrize(
    "domain, limit", [("cube-single", 200), ("cube-double", 500), ("scene", 750), ("puzzle-4x4", 500)]
)
def test_evaluation_time_limits_are_ogbench_defaults(domain, limit):
    """What infom plans evaluations with (progress estimates, the docs) is OGBench's registered limit;
    the episodes themselves stop at it (the zero-policy test below runs them to 200 steps)."""
    from infom.envs.ogbench._datasets import eval_episode_length

    assert eval_episode_length(domain) == limit
    for task in range(1, 6):
        assert (
            gymnasium.spec(infom.eval_env_name(f"{domain}-singletask-task{task}-v0")).max_episode_steps
            == limit
        )


def test_oracle_succeeds_and_results_do_not_depend_on_worker_count():
    kwargs = dict(env_policy=infom.CubeOraclePolicy, num_episodes=2, seed=5, progress=False)
    result = infom.evaluate_ogbench(TASK, None, num_workers=2, **kwargs)
    assert result.success_rate == 1.0 and result.successes.tolist() == [True, True]
    assert (result.lengths < 200).all()  # terminated at the goal, before the time limit
    assert (result.returns < 0).all() and result.mean_return == result.returns.mean()
    # One worker with one environment: the second episode waits for the first to finish.
    single = infom.evaluate_ogbench(TASK, None, num_workers=1, envs_per_worker=1, **kwargs)
    np.testing.assert_array_equal(single.returns, result.returns)
    np.testing.assert_array_equal(single.lengths, result.lengths)


def test_zero_policy_fails_and_gets_batched_float32_observations():
    seen = []

    def zero_policy(observations):
        seen.append((observations.dtype, observations.shape))
        return np.zeros((len(observations), 5), dtype=np.float32)

    result = infom.evaluate_ogbench(TASK, zero_policy, num_episodes=3, num_workers=2, progress=False)
    assert result.success_rate == 0.0 and not result.successes.any()
    assert result.lengths.tolist() == [200, 200, 200]
    assert result.returns.tolist() == [-200.0] * 3  # cube-single reward: -1 until the cube is at its goal
    assert len(seen) == 200 and seen[0] == (np.float32, (3, 28))
    short = infom.evaluate_ogbench(TASK, zero_policy, num_episodes=2, max_episode_steps=7, progress=False)
    assert short.lengths.tolist() == [7, 7] and short.returns.tolist() == [-7.0, -7.0]
    with pytest.raises(ValueError, match="max_episode_steps must be a positive integer, got 0"):
        infom.evaluate_ogbench(TASK, zero_policy, max_episode_steps=0)


def test_bad_policy_output_raises_and_workers_shut_down():
    with pytest.raises(ValueError, match="shape"):
        infom.evaluate_ogbench(TASK, lambda obs: np.zeros((len(obs), 4)), num_episodes=2, progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        infom.evaluate_ogbench(TASK, None, num_episodes=2, progress=False)
    assert multiprocessing.active_children() == []


def _assert_same_episodes(got, want):
    for field in ("successes", "returns", "lengths"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    assert got.success_rate == want.success_rate


def _rows(batches: list[np.ndarray]) -> list[bytes]:
    return sorted(row.tobytes() for batch in batches for row in batch)


def test_several_policies_in_one_pool_and_in_a_reused_pool_see_what_each_would_see_alone():
    """`evaluate_ogbench_policies` equals one `evaluate_ogbench` call per policy: every observation
    batch each policy is given, and every result, are the same as when it runs alone; so are those
    of evaluations through an `EvaluationPool` whose environments earlier episodes have used."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(28, 5)).astype(np.float32) for _ in range(2)]

    def recording(k, log):
        def policy(observations):
            log.append(observations.copy())
            return np.tanh(observations @ weights[k])

        return policy

    alone_logs, alone = [[], []], []
    for k in range(2):
        alone.append(
            infom.evaluate_ogbench(
                TASK,
                recording(k, alone_logs[k]),
                num_episodes=2,
                seed=100 * (k + 1),
                num_workers=1,
                progress=False,
            )
        )
    pooled_logs = [[], []]
    pooled = infom.evaluate_ogbench_policies(
        TASK,
        [recording(k, pooled_logs[k]) for k in range(2)],
        seeds=[100, 200],
        num_episodes=2,
        num_workers=2,
        progress=False,
    )
    for k in range(2):
        assert len(pooled_logs[k]) == len(alone_logs[k]) == 200
        for got, want in zip(pooled_logs[k], alone_logs[k], strict=True):
            np.testing.assert_array_equal(got, want)
        _assert_same_episodes(pooled[k], alone[k])
    assert not np.array_equal(pooled_logs[0][-1], pooled_logs[1][-1])  # the two policies differ

    # One environment per worker: episodes queue for it, and the second call finds used environments.
    with infom.EvaluationPool(TASK, num_workers=2, envs_per_worker=1) as pool:
        for _ in range(2):
            reused_logs = [[], []]
            reused = infom.evaluate_ogbench_policies(
                TASK,
                [recording(k, reused_logs[k]) for k in range(2)],
                seeds=[100, 200],
                num_episodes=2,
                progress=False,
                pool=pool,
            )
            for k in range(2):  # the same observations, batched differently (one environment per worker)
                assert _rows(reused_logs[k]) == _rows(alone_logs[k])
                _assert_same_episodes(reused[k], alone[k])
        one = infom.evaluate_ogbench(
            TASK, recording(1, []), num_episodes=2, seed=200, progress=False, pool=pool
        )
        _assert_same_episodes(one, alone[1])
        with pytest.raises(ValueError, match="steps cube-single-singletask-task1-v0, not"):
            infom.evaluate_ogbench("cube-single-play-singletask-task2-v0", np.zeros_like, pool=pool)
        with pytest.raises(ValueError, match="shape"):  # a failed evaluation closes the pool it used
            infom.evaluate_ogbench(TASK, lambda obs: np.zeros((len(obs), 4)), progress=False, pool=pool)
        with pytest.raises(ValueError, match="`pool` is closed"):
            infom.evaluate_ogbench(TASK, np.zeros_like, progress=False, pool=pool)
    with pytest.raises(ValueError, match="`seeds` has 1 entries for 2 policies"):
        infom.evaluate_ogbench_policies(TASK, [np.zeros_like] * 2, seeds=[0], progress=False)
    with pytest.raises(ValueError, match="envs_per_worker must be a positive integer, got 0"):
        infom.EvaluationPool(TASK, envs_per_worker=0)
    assert multiprocessing.active_children() == []
