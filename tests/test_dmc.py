"""ExORL's DeepMind Control tasks, episode format, exploration-data generator and evaluation."""

import zipfile

import numpy as np
import pytest


pytest.importorskip("dm_control")

from infom._errors import DatasetError  # noqa: E402
from infom.envs.dmc import (  # noqa: E402
    DOMAINS,
    EXORL_TASKS,
    TASK_NAMES,
    DMCEvaluationPool,
    OUNoiseExplorer,
    UniformExplorer,
    episode_filename,
    evaluate_dmc,
    generate_exorl,
    load_exorl,
    make_env,
    read_episode,
    task_reward,
    to_dataset,
    write_episode,
)


SUITE_TASKS = ["walker_stand", "walker_walk", "walker_run", "cheetah_run", "quadruped_walk", "quadruped_run"]
CUSTOM_TASKS = [name for name in TASK_NAMES if name not in SUITE_TASKS]


def _actions(num_steps: int, action_dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (num_steps, action_dim)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------


def test_task_names_cover_exorl_and_unknown_names_list_the_valid_ones():
    assert len(TASK_NAMES) == 16
    assert {domain: len(tasks) for domain, tasks in EXORL_TASKS.items()} == {
        "walker": 4,
        "cheetah": 4,
        "quadruped": 4,
        "jaco": 4,
    }
    with pytest.raises(ValueError, match="walker_stand.*cheetah_run_backward.*jaco_reach_top_left"):
        make_env("walker_jump", seed=0)
    with pytest.raises(ValueError, match="Unknown ExORL task"):
        task_reward("hopper_hop", np.zeros((1, 18)))


@pytest.mark.parametrize("name", SUITE_TASKS)
def test_suite_task_matches_dm_control_with_exorls_wrappers(name):
    from dm_control import suite
    from dm_control.suite.wrappers import action_scale

    domain, task = name.split("_", 1)
    seed = 7
    raw = suite.load(
        domain, task, task_kwargs={"random": seed}, environment_kwargs={"flat_observation": True}
    )
    assert raw._step_limit == DOMAINS[domain].episode_length  # dm_control's own time limit
    reference = action_scale.Wrapper(raw, minimum=-1.0, maximum=1.0)
    env = make_env(name, seed=seed)
    time_step = reference.reset()
    np.testing.assert_array_equal(env.reset(), time_step.observation["observations"].astype(np.float32))
    for action in _actions(12, DOMAINS[domain].action_dim):
        time_step = reference.step(action)
        step = env.step(action)
        np.testing.assert_array_equal(
            step.observation, time_step.observation["observations"].astype(np.float32)
        )
        assert step.reward == float(time_step.reward)
        assert not step.done
    np.testing.assert_array_equal(env.physics_state(), raw.physics.get_state())


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_reward_on_recorded_physics_equals_the_stepped_reward(name):
    domain = name.split("_", 1)[0]
    spec = DOMAINS[domain]
    env = make_env(name, seed=3, episode_length=8)
    observation = env.reset()
    assert observation.shape == (spec.obs_dim,) and observation.dtype == np.float32
    states, rewards = [], []
    for action in _actions(8, spec.action_dim, seed=1):
        step = env.step(action)
        states.append(env.physics_state())
        rewards.append(step.reward)
    assert step.done
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(np.zeros(spec.action_dim, np.float32))
    assert states[0].shape == (spec.physics_dim,)
    np.testing.assert_array_equal(task_reward(name, np.stack(states)), np.asarray(rewards))
    # reset(seed=s) starts the episode a fresh environment seeded with s starts.
    np.testing.assert_array_equal(env.reset(seed=3), observation)


def test_custom_tasks_rewards_differ_from_their_suite_siblings():
    # Same physics states, different reward definitions: catches a custom task wired to the wrong reward.
    env = make_env("cheetah_run", seed=0, episode_length=30)
    env.reset()
    states = []
    for action in _actions(30, 6):
        env.step(action)
        states.append(env.physics_state())
    states = np.stack(states)
    forward, backward = task_reward("cheetah_walk", states), task_reward("cheetah_walk_backward", states)
    assert not np.array_equal(forward, backward)
    assert np.all((forward == 0) | (backward == 0))  # a single speed cannot reward both directions


# ---------------------------------------------------------------------------------------
# Format
# ---------------------------------------------------------------------------------------


def _episode_arrays(
    length: int, obs_dim: int = 3, action_dim: int = 2, physics_dim: int = 4, offset: float = 0.0
):
    rows = length + 1
    rng = np.random.default_rng(int(offset))
    return {
        "observation": (offset + np.arange(rows * obs_dim).reshape(rows, obs_dim)).astype(np.float32),
        "action": rng.uniform(-1, 1, (rows, action_dim)).astype(np.float32),
        "reward": rng.uniform(0, 1, rows).astype(np.float32),
        "discount": np.ones(rows, np.float32),
        "physics": rng.normal(size=(rows, physics_dim)),
    }


def test_episode_round_trips_with_exorls_layout(tmp_path):
    arrays = _episode_arrays(4)
    path = write_episode(tmp_path / episode_filename(3, 4), **arrays)
    assert path.name == "episode_000003_4.npz"
    with np.load(path) as raw:  # what ExORL's loaders see
        assert sorted(raw.files) == sorted(arrays)
        assert raw["reward"].shape == (5, 1) and raw["physics"].dtype == np.float64
    episode = read_episode(path)
    for key, value in arrays.items():
        np.testing.assert_array_equal(getattr(episode, key), value)
    # Fixed zip timestamps: equal arrays give equal bytes.
    again = write_episode(tmp_path / "episode_000004_4.npz", **arrays)
    assert again.read_bytes() == path.read_bytes()


def _write_raw(path, arrays):
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


@pytest.mark.parametrize(
    ("case", "key", "message"),
    [
        ("missing", "physics", "missing required key 'physics'"),
        ("rows", "action", "key 'action' has 4 rows but 'observation' has 5"),
        ("nonfinite", "observation", "key 'observation' has 1 non-finite"),
        ("name", "observation", "file name says length 7"),
        ("dtype", "discount", "key 'discount' has dtype int64"),
        ("actions", "action", "key 'action' has values outside"),
    ],
)
def test_malformed_episode_files_are_rejected_naming_file_and_key(tmp_path, case, key, message):
    arrays = _episode_arrays(4)
    name = "episode_000000_4.npz"
    if case == "missing":
        del arrays[key]
    elif case == "rows":
        arrays[key] = arrays[key][:-1]
    elif case == "nonfinite":
        arrays[key][2, 1] = np.nan
    elif case == "name":
        name = "episode_000000_7.npz"
    elif case == "dtype":
        arrays[key] = np.ones(5, np.int64)
    elif case == "actions":
        arrays[key][3, 0] = 1.5
    path = _write_raw(tmp_path / name, arrays)
    with pytest.raises(DatasetError, match=message) as error:
        read_episode(path)
    assert str(path) in str(error.value) and repr(key) in str(error.value)


def test_unreadable_files_and_names_are_rejected_naming_the_file(tmp_path):
    truncated = tmp_path / "episode_000000_4.npz"
    truncated.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=f"{truncated}: not an .npz"):
        read_episode(truncated)
    with pytest.raises(DatasetError, match="not an ExORL episode file name"):
        read_episode(_write_raw(tmp_path / "episode_4.npz", _episode_arrays(4)))
    with pytest.raises(DatasetError, match="file name says length 3.*'observation' has 5 rows"):
        write_episode(tmp_path / "episode_000001_3.npz", **_episode_arrays(4))
    with pytest.raises(DatasetError, match="'physics' has width 4, expected 18 for walker"):
        read_episode(
            write_episode(tmp_path / "episode_000002_4.npz", **_episode_arrays(4, 24, 6)), domain="walker"
        )
    # A damaged member names its key.
    good = write_episode(tmp_path / "episode_000003_4.npz", **_episode_arrays(4))
    damaged = tmp_path / "episode_000005_4.npz"
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("action.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 5 : start + 25] = b"\x00" * 20
    damaged.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="key 'action'"):
        read_episode(damaged)


def test_load_exorl_lays_out_transitions_as_infoms_reference_and_relabels(tmp_path):
    spec = DOMAINS["walker"]
    buffer = tmp_path / "walker" / "rnd" / "buffer"
    buffer.mkdir(parents=True)
    episodes = [
        _episode_arrays(length, spec.obs_dim, spec.action_dim, spec.physics_dim, 100.0 * i)
        for i, length in enumerate((3, 5))
    ]
    # Plausible physics states, so that the relabelled rewards are the walker's.
    env = make_env("walker_run", seed=0)
    for i, arrays in enumerate(episodes):
        env.reset(seed=i)
        states = [env.physics_state()]
        for action in arrays["action"][1:]:
            env.step(action)
            states.append(env.physics_state())
        arrays["physics"] = np.stack(states)
        write_episode(buffer / episode_filename(i, len(arrays["action"]) - 1), **arrays)
    (buffer / ".episode_000002_9.npz.abc.tmp").write_bytes(b"")  # a torn write: ignored

    free = load_exorl(tmp_path, "walker", "rnd")
    assert free.rewards is None and free.num_episodes == 2
    assert free.observations.shape == (8, spec.obs_dim)
    first, second = episodes
    np.testing.assert_array_equal(free.observations[:3], first["observation"][:-1])
    np.testing.assert_array_equal(free.next_observations[3:], second["observation"][1:])
    np.testing.assert_array_equal(free.actions[:3], first["action"][1:])
    np.testing.assert_array_equal(free.terminals, [0, 0, 1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(free.masks, np.ones(8))

    labelled = load_exorl(tmp_path, "walker", "rnd", task="walker_flip", max_episodes=1)
    assert labelled.num_episodes == 1
    np.testing.assert_array_equal(
        labelled.rewards, task_reward("walker_flip", first["physics"][1:]).astype(np.float32)
    )
    dataset = to_dataset(load_exorl(tmp_path, "walker", "rnd", task="walker_run", workers=2))
    assert dataset.observations.shape == (8, spec.obs_dim)
    assert dataset.valid_indices.tolist() == [0, 1, 3, 4, 5, 6]

    with pytest.raises(ValueError, match="not a walker task"):
        load_exorl(tmp_path, "walker", "rnd", task="cheetah_run")
    with pytest.raises(FileNotFoundError, match="no ExORL episode files"):
        load_exorl(tmp_path, "walker", "proto")


# ---------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------


def test_generator_writes_exorl_data_deterministically_and_resumes(tmp_path):
    summary = generate_exorl(
        tmp_path / "a", "cheetah", episodes=2, seed=5, workers=2, progress=False, episode_length=6
    )
    assert (summary.num_collected, summary.num_kept, summary.num_steps) == (2, 0, 12)
    assert summary.steps_per_second > 0
    files = sorted(summary.directory.glob("episode_*.npz"))
    assert [f.name for f in files] == ["episode_000000_6.npz", "episode_000001_6.npz"]
    data = load_exorl(tmp_path / "a", "cheetah", "ou_noise", task="cheetah_run_backward")
    assert data.observations.shape == (12, DOMAINS["cheetah"].obs_dim) and data.terminals.sum() == 2
    episode = read_episode(files[0], domain="cheetah")
    np.testing.assert_array_equal(episode.action[0], 0.0)  # row 0: ExORL's placeholders
    expected = task_reward("cheetah_run", episode.physics[1:]).astype(np.float32)  # stored as float32
    np.testing.assert_array_equal(episode.reward[1:], expected)

    # Resume: existing episodes are kept as they are, the missing ones are collected.
    before = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files}
    files[1].unlink()  # as if killed before its write
    (summary.directory / ".episode_000001_6.npz.x1.tmp").write_bytes(b"torn")
    resumed = generate_exorl(
        tmp_path / "a", "cheetah", episodes=3, seed=5, workers=2, progress=False, episode_length=6
    )
    assert (resumed.num_collected, resumed.num_kept) == (2, 1)
    assert not list(summary.directory.glob(".*.tmp"))
    stat = files[0].stat()
    assert (stat.st_ino, stat.st_mtime_ns) == before[files[0].name]

    # The bytes depend on (seed, index) only, not on the number of workers or on resumption.
    fresh = generate_exorl(
        tmp_path / "b", "cheetah", episodes=3, seed=5, workers=1, progress=False, episode_length=6
    )
    for name in ("episode_000000_6.npz", "episode_000001_6.npz", "episode_000002_6.npz"):
        assert (fresh.directory / name).read_bytes() == (summary.directory / name).read_bytes()

    # Other settings for the same directory are refused instead of mixed in.
    with pytest.raises(DatasetError, match="generation.json.*seed"):
        generate_exorl(
            tmp_path / "a", "cheetah", episodes=3, seed=6, workers=1, progress=False, episode_length=6
        )


def test_explorers_are_seeded_clipped_and_ou_noise_is_correlated():
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    explorer = OUNoiseExplorer(sigma_range=(0.5, 0.5), theta_range=(0.05, 0.05), mean_range=0.0)
    policy_a, policy_b = explorer.start(action_dim=3, rng=rng_a), explorer.start(action_dim=3, rng=rng_b)
    obs = np.zeros(4, np.float32)
    ou = np.stack([policy_a(obs) for _ in range(2000)])
    np.testing.assert_array_equal(ou[:10], np.stack([policy_b(obs) for _ in range(10)]))
    assert ou.dtype == np.float32 and np.abs(ou).max() <= 1.0
    uniform_policy = UniformExplorer().start(action_dim=3, rng=np.random.default_rng(0))
    uniform = np.stack([uniform_policy(obs) for _ in range(2000)])

    def lag_one_correlation(x):
        return np.mean([np.corrcoef(x[:-1, i], x[1:, i])[0, 1] for i in range(x.shape[1])])

    assert lag_one_correlation(ou) > 0.8 and abs(lag_one_correlation(uniform)) < 0.1
    with pytest.raises(ValueError, match="sigma_range"):
        OUNoiseExplorer(sigma_range=(1.0, 0.5))


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


def _sequential_returns(name, action, seed, episodes, length):
    returns = []
    for i in range(episodes):
        env = make_env(name, seed=seed + i, episode_length=length)
        env.reset()
        total, done = 0.0, False
        while not done:
            _, reward, done = env.step(action)
            total += reward
        returns.append(total)
    return np.array(returns)


def test_evaluate_dmc_matches_a_sequential_rollout():
    action = np.linspace(-0.8, 0.8, 6).astype(np.float32)
    calls = []

    def policy(obs):
        calls.append(obs.shape)
        return np.tile(action, (len(obs), 1))

    expected = _sequential_returns("walker_walk", action, 11, 3, 7)
    # 2 workers x 1 env: the third episode queues for a free environment.
    result = evaluate_dmc(
        "walker_walk",
        policy,
        episodes=3,
        seed=11,
        workers=2,
        envs_per_worker=1,
        progress=False,
        episode_length=7,
    )
    np.testing.assert_array_equal(result.returns, expected)
    np.testing.assert_array_equal(result.lengths, [7, 7, 7])
    assert result.mean_return == pytest.approx(expected.mean())
    assert calls[0] == (2, DOMAINS["walker"].obs_dim)  # one batched call for all running episodes

    with DMCEvaluationPool("walker_walk", workers=2, envs_per_worker=2, episode_length=7) as pool:
        for _ in range(2):
            pooled = evaluate_dmc("walker_walk", policy, episodes=3, seed=11, pool=pool, progress=False)
            np.testing.assert_array_equal(pooled.returns, expected)
        with pytest.raises(ValueError, match="`pool` steps walker_walk, not walker_run"):
            evaluate_dmc("walker_run", policy, episodes=1, pool=pool, progress=False)
        with pytest.raises(ValueError, match=r"episode_length=5 differs from the pool's \(7\)"):
            evaluate_dmc("walker_walk", policy, episodes=1, pool=pool, progress=False, episode_length=5)
        with pytest.raises(ValueError, match="shape"):  # a failed evaluation closes the pool it used
            evaluate_dmc(
                "walker_walk", lambda obs: np.zeros((len(obs), 5)), episodes=1, pool=pool, progress=False
            )
        with pytest.raises(ValueError, match="`pool` is closed"):
            evaluate_dmc("walker_walk", policy, episodes=1, pool=pool, progress=False)
    with pytest.raises(TypeError, match="parameter .pool."):  # the run-time type check names it
        evaluate_dmc("walker_walk", policy, episodes=1, pool=object(), progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \(1, 5\)"):
        evaluate_dmc(
            "walker_walk",
            lambda obs: np.zeros((len(obs), 5)),
            episodes=1,
            workers=1,
            progress=False,
            episode_length=2,
        )


def test_several_policies_in_one_pool_see_what_each_would_see_alone():
    """`evaluate_dmc_policies`: two policies (different constant actions, seeds 11 and 40) share one
    pool of 2 x 2 environments; each one's returns equal its own sequential rollouts, and each is
    called only on its own episodes' observations."""
    from infom.envs.dmc import evaluate_dmc_policies

    actions = [np.linspace(-0.8, 0.8, 6).astype(np.float32), np.full(6, 0.3, np.float32)]
    seen = [[], []]

    def policy(k):
        def act(obs):
            seen[k].append(len(obs))
            return np.tile(actions[k], (len(obs), 1))

        return act

    results = evaluate_dmc_policies(
        "walker_walk",
        [policy(0), policy(1)],
        seeds=[11, 40],
        episodes=3,
        workers=2,
        envs_per_worker=2,
        progress=False,
        episode_length=7,
    )
    for k, seed in enumerate((11, 40)):
        np.testing.assert_array_equal(
            results[k].returns, _sequential_returns("walker_walk", actions[k], seed, 3, 7)
        )
        np.testing.assert_array_equal(results[k].lengths, [7, 7, 7])
    assert seen[0][0] == 3 and seen[1][0] == 1  # 4 slots: policy 0's 3 episodes and policy 1's first
    with pytest.raises(ValueError, match="`seeds` has 1 entries for 2 policies"):
        evaluate_dmc_policies("walker_walk", [policy(0), policy(1)], seeds=[0], progress=False)


def test_episode_files_take_exorl_and_urlb_names_in_index_order(tmp_path):
    from infom.envs.dmc._format import episode_files

    for name in (
        "episode_10_5.npz",
        "20220301T101010_2_5.npz",
        "episode_000001_5.npz",
        "notes.txt",
        "x_3_5.npz",
    ):
        (tmp_path / name).write_bytes(b"")
    assert [(i, n, p.name) for i, n, p in episode_files(tmp_path)] == [
        (1, 5, "episode_000001_5.npz"),
        (2, 5, "20220301T101010_2_5.npz"),
        (10, 5, "episode_10_5.npz"),
    ]
