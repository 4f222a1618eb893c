"""`Dataset`, `sample_batch` and `Normalizer`: boundary-safe SARSA sampling, validation
errors that name the source and key, OGBench layouts, and the normaliser's identities."""

import os

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given

import infom
from infom import Dataset, DatasetError, Normalizer


def _episodes(lengths):
    """Rows `(episode, step, length)` as observations and `(episode, step)` as actions."""
    episode = np.concatenate([np.full(n, e) for e, n in enumerate(lengths)])
    step = np.concatenate([np.arange(n) for n in lengths])
    length = np.concatenate([np.full(n, n) for n in lengths])
    observations = np.stack([episode, step, length], axis=1).astype(np.float32)
    actions = np.stack([episode, step], axis=1).astype(np.float32)
    terminals = step == length - 1
    return observations, actions, terminals


def _episodic_dataset(lengths):
    observations, actions, terminals = _episodes(lengths)
    return Dataset.from_arrays(observations, actions, terminals=terminals)


def _pairs_stay_in_episode(batch) -> np.ndarray:
    """Per sample: `(s', a')` is the next step of the same episode and `s` is not a last step."""
    s, s2 = np.asarray(batch.observations), np.asarray(batch.next_observations)
    a, a2 = np.asarray(batch.actions), np.asarray(batch.next_actions)
    return (
        (s2[..., 0] == s[..., 0])
        & (s2[..., 1] == s[..., 1] + 1)
        & (a2[..., 0] == a[..., 0])
        & (a2[..., 1] == a[..., 1] + 1)
        & (s[..., 1] < s[..., 2] - 1)
    )


_sample = eqx.filter_jit(infom.sample_batch)


# --------------------------------------------------------------------------- sampling


@given(
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=8).filter(lambda ls: max(ls) >= 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_sampled_next_state_is_successor_in_same_episode(lengths, seed):
    dataset = _episodic_dataset(lengths)
    batch = _sample(dataset, jr.key(seed), 64)
    assert _pairs_stay_in_episode(batch).all()


def test_boundary_check_catches_the_reference_sampler():
    # The reference draws any row i < n - 1 and takes (s', a') = row i + 1, crossing episodes.
    dataset = _episodic_dataset([3, 3, 3])
    rows = jr.randint(jr.key(0), (256,), 0, dataset.observations.shape[0] - 1)
    naive = infom.Batch(
        observations=dataset.observations[rows],
        actions=dataset.actions[rows],
        next_observations=dataset.observations[rows + 1],
        next_actions=dataset.actions[rows + 1],
        rewards=dataset.rewards[rows],
        masks=dataset.masks[rows],
    )
    assert not _pairs_stay_in_episode(naive).all()


def test_sampling_is_uniform_over_valid_rows_and_skips_last_steps():
    lengths = [5, 7, 1, 4]
    dataset = _episodic_dataset(lengths)
    valid = np.asarray(dataset.valid_indices)
    assert valid.tolist() == [i for i, t in enumerate(np.asarray(dataset.terminals)) if not t]
    keys = jr.split(jr.key(1), 100)
    batches = jax.vmap(lambda k: infom.sample_batch(dataset, k, 256))(keys)
    assert _pairs_stay_in_episode(batches).all()
    # Recover the row index of every sampled s from (episode, step).
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    s = np.asarray(batches.observations).reshape(-1, 3).astype(int)
    rows = starts[s[:, 0]] + s[:, 1]
    assert not np.asarray(dataset.terminals)[rows].any()
    counts = np.bincount(rows, minlength=sum(lengths))[valid]
    expected = len(rows) / len(valid)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 32.9  # the 0.999 quantile of chi-square with len(valid) - 1 = 12 dof


def test_sample_batch_under_jit_vmap_and_scan():
    dataset = _episodic_dataset([4, 6, 5])
    key = jr.key(2)
    eager = infom.sample_batch(dataset, key, 8)
    jitted = jax.jit(infom.sample_batch, static_argnames="batch_size")(dataset, key, batch_size=8)
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), eager, jitted))
    assert eager.observations.shape == (8, 3) and eager.next_actions.shape == (8, 2)
    assert eager.rewards.shape == eager.masks.shape == (8,)

    keys = jr.split(key, 5)
    vmapped = jax.vmap(lambda k: infom.sample_batch(dataset, k, 8))(keys)

    @jax.jit
    def scanned(dataset, keys):
        def body(total, k):
            batch = infom.sample_batch(dataset, key=k, batch_size=8)
            return total + jnp.sum(batch.observations), batch

        return jax.lax.scan(body, jnp.zeros((), jnp.float32), keys)

    total, stacked = scanned(dataset, keys)
    assert stacked.observations.shape == (5, 8, 3)
    assert jnp.array_equal(stacked.next_observations, vmapped.next_observations)
    assert jnp.allclose(total, jnp.sum(vmapped.observations))


def test_sample_batch_rejects_bad_batch_size():
    dataset = _episodic_dataset([3])
    with pytest.raises(ValueError, match="batch_size"):
        infom.sample_batch(dataset, jr.key(0), 0)


@pytest.mark.parametrize("window", [None, 2])
def test_context_pairs_come_from_the_same_episode_within_the_window(window):
    """`sample_batch_with_context`: the transitions are `sample_batch`'s with the rows key, and
    each context pair is a row of the transition's own episode, at most `window` steps away; over
    many draws every allowed row appears."""
    lengths = [4, 7, 5]
    dataset = _episodic_dataset(lengths)
    key = jr.key(3)
    batch = infom.sample_batch_with_context(dataset, key, 4096, window=window)
    plain = infom.sample_batch(dataset, jr.split(key)[0], 4096)
    assert jnp.array_equal(batch.observations, plain.observations)
    assert jnp.array_equal(batch.next_actions, plain.next_actions)
    episode, step = np.asarray(batch.observations[:, 0]), np.asarray(batch.observations[:, 1])
    context_episode, context_step = np.asarray(batch.context_observations[:, :2]).T
    np.testing.assert_array_equal(context_episode, episode)
    np.testing.assert_array_equal(
        np.asarray(batch.context_actions), np.asarray(batch.context_observations[:, :2])
    )
    reach = np.inf if window is None else window
    assert np.all(np.abs(context_step - step) <= reach)
    for e, n in enumerate(lengths):
        for i in range(n - 1):  # valid rows of episode e
            rows = (episode == e) & (step == i)
            allowed = {j for j in range(n) if abs(j - i) <= reach}
            assert set(context_step[rows].astype(int)) == allowed, (e, i)


def test_context_window_must_be_positive():
    with pytest.raises(ValueError, match="window"):
        infom.sample_batch_with_context(_episodic_dataset([3]), jr.key(0), 4, window=0)


# --------------------------------------------------------------------------- construction


def test_from_arrays_defaults_and_dtypes():
    observations, actions, terminals = _episodes([3, 2])
    dataset = Dataset.from_arrays(
        observations.astype(np.float64), actions, terminals=terminals.astype(np.float32)
    )
    assert dataset.observations.dtype == jnp.float32
    assert dataset.terminals.dtype == jnp.bool_
    assert dataset.valid_indices.dtype == jnp.int32
    assert jnp.array_equal(dataset.rewards, jnp.zeros(5)) and jnp.array_equal(dataset.masks, jnp.ones(5))
    assert dataset.valid_indices.tolist() == [0, 1, 3]


def _good_arrays():
    observations, actions, terminals = _episodes([3, 3])
    return dict(
        observations=observations,
        actions=actions,
        terminals=terminals,
        rewards=np.zeros(6, np.float32),
        masks=np.ones(6, np.float32),
    )


def _nan_at(array, row):
    array = array.copy()
    array[row] = np.nan
    return array


_BAD_INPUTS = {
    "missing observations": ("observations", lambda d: d | {"observations": None}),
    "missing actions": ("actions", lambda d: d | {"actions": None}),
    "missing terminals": ("terminals", lambda d: d | {"terminals": None}),
    "short actions": ("actions", lambda d: d | {"actions": d["actions"][:-1]}),
    "short terminals": ("terminals", lambda d: d | {"terminals": d["terminals"][:-1]}),
    "short rewards": ("rewards", lambda d: d | {"rewards": d["rewards"][:-1]}),
    "short masks": ("masks", lambda d: d | {"masks": d["masks"][:-1]}),
    "nan observation": ("observations", lambda d: d | {"observations": _nan_at(d["observations"], 2)}),
    "inf reward": ("rewards", lambda d: d | {"rewards": d["rewards"] + np.inf}),
    "nan action": ("actions", lambda d: d | {"actions": _nan_at(d["actions"], 0)}),
    "integer observations": ("observations", lambda d: d | {"observations": d["observations"].astype(int)}),
    "integer actions": ("actions", lambda d: d | {"actions": d["actions"].astype(np.int32)}),
    "1-d observations": ("observations", lambda d: d | {"observations": d["observations"][:, 0]}),
    "terminal value 2": ("terminals", lambda d: d | {"terminals": 2 * d["terminals"].astype(int)}),
    "string terminals": ("terminals", lambda d: d | {"terminals": d["terminals"].astype(str)}),
    "last row not terminal": ("terminals", lambda d: d | {"terminals": np.roll(d["terminals"], 1)}),
    "no valid transition": ("terminals", lambda d: d | {"terminals": np.ones(6, bool)}),
}


@pytest.mark.parametrize("case", list(_BAD_INPUTS))
def test_dataset_errors_name_source_and_key(case):
    key, corrupt = _BAD_INPUTS[case]
    arrays = corrupt(_good_arrays())
    observations, actions = arrays.pop("observations"), arrays.pop("actions")
    with pytest.raises(DatasetError) as info:
        Dataset.from_arrays(observations, actions, **arrays, source="play-v0.npz")
    assert "play-v0.npz" in str(info.value) and repr(key) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_default_source_is_named():
    with pytest.raises(DatasetError, match="<arrays>.*'actions'"):
        Dataset.from_arrays(np.zeros((2, 1), np.float32), None, terminals=np.array([False, True]))


# --------------------------------------------------------------------------- OGBench layouts


def _ogbench_load(raw, *, compact):
    """OGBench's `load_dataset` post-processing (ogbench/utils.py), applied to raw file arrays."""
    dataset = {k: raw[k].astype(np.float32) for k in ("observations", "actions", "terminals")}
    if compact:
        dataset["valids"] = 1.0 - dataset["terminals"]
        new_terminals = np.concatenate([dataset["terminals"][1:], [1.0]])
        dataset["terminals"] = np.minimum(dataset["terminals"] + new_terminals, 1.0).astype(np.float32)
        return dataset
    ob_mask = (1.0 - dataset["terminals"]).astype(bool)
    next_ob_mask = np.concatenate([[False], ob_mask[:-1]])
    dataset["next_observations"] = dataset["observations"][next_ob_mask]
    dataset["observations"] = dataset["observations"][ob_mask]
    dataset["actions"] = dataset["actions"][ob_mask]
    new_terminals = np.concatenate([dataset["terminals"][1:], [1.0]])
    dataset["terminals"] = new_terminals[ob_mask].astype(np.float32)
    return dataset


def _raw_file(lengths):
    observations, actions, terminals = _episodes(lengths)
    return {"observations": observations, "actions": actions, "terminals": terminals}


def test_from_ogbench_non_compact_layout():
    lengths = [5, 4, 6]
    dataset_dict = _ogbench_load(_raw_file(lengths), compact=False)
    n = sum(lengths) - len(lengths)  # OGBench drops each episode's final row
    dataset_dict["rewards"] = np.arange(n, dtype=np.float32) - n
    dataset_dict["masks"] = np.ones(n, np.float32)
    dataset_dict["qpos"] = np.zeros((n, 2), np.float32)  # ignored
    dataset = Dataset.from_ogbench(dataset_dict, source="cube.npz")
    assert dataset.observations.shape == (n, 3)
    assert jnp.array_equal(dataset.rewards, dataset_dict["rewards"])
    # Each episode keeps length - 1 rows, of which the last has no next action.
    assert len(dataset.valid_indices) == sum(length - 2 for length in lengths)
    batch = _sample(dataset, jr.key(3), 256)
    s, s2 = np.asarray(batch.observations), np.asarray(batch.next_observations)
    assert ((s2[:, 0] == s[:, 0]) & (s2[:, 1] == s[:, 1] + 1)).all()
    assert (np.asarray(batch.next_actions) == s2[:, :2]).all()


def test_from_ogbench_compact_layout_keeps_every_transition():
    lengths = [5, 4]
    dataset = Dataset.from_ogbench(_ogbench_load(_raw_file(lengths), compact=True), source="c.npz")
    assert dataset.observations.shape == (9, 3)
    assert len(dataset.valid_indices) == sum(length - 1 for length in lengths)


def test_from_ogbench_real_loader(tmp_path):
    utils = pytest.importorskip("ogbench.utils")
    path = tmp_path / "toy-play-v0.npz"
    np.savez(path, **_raw_file([4, 3, 5]))
    loaded = utils.load_dataset(str(path), compact_dataset=False)
    dataset = Dataset.from_ogbench(loaded, source=path.name)
    assert len(dataset.valid_indices) == 2 + 1 + 3
    assert _pairs_stay_in_episode(_sample(dataset, jr.key(4), 128)).all()


def test_from_ogbench_rejects_inconsistent_next_observations():
    dataset_dict = _ogbench_load(_raw_file([4, 4]), compact=False)
    dataset_dict["next_observations"][1, 1] += 1.0
    with pytest.raises(DatasetError, match="x.npz.*'next_observations'"):
        Dataset.from_ogbench(dataset_dict, source="x.npz")


@pytest.mark.parametrize("key", ["observations", "actions", "terminals", "next_observations"])
def test_from_ogbench_missing_key_is_named(key):
    dataset_dict = _ogbench_load(_raw_file([4, 4]), compact=False)
    del dataset_dict[key]
    with pytest.raises(DatasetError, match=f"x.npz.*'{key}'"):
        Dataset.from_ogbench(dataset_dict, source="x.npz")


# --------------------------------------------------------------------------- normaliser


_DATA = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32) * [1.0, 10.0, 0.1, 0.0] + 3.0


@pytest.mark.parametrize("kind", ["zscore", "bounded", "none"])
def test_denormalize_inverts_normalize(kind):
    normalizer = infom.fit_normalizer(_DATA, kind)
    x = jnp.asarray(_DATA).reshape(5, 10, 4)  # any leading axes
    assert jnp.allclose(normalizer.denormalize(normalizer.normalize(x)), x, rtol=1e-5, atol=1e-5)
    y = normalizer.normalize(x)
    assert jnp.allclose(normalizer.normalize(normalizer.denormalize(y)), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["zscore", "bounded", "none"])
def test_lower_upper_are_min_max_of_normalised_data(kind):
    normalizer = infom.fit_normalizer(jnp.asarray(_DATA), kind)
    normalised = normalizer.normalize(jnp.asarray(_DATA))
    assert jnp.array_equal(normalizer.lower, normalised.min(axis=0))
    assert jnp.array_equal(normalizer.upper, normalised.max(axis=0))


def test_zscore_gives_mean_zero_and_unit_std():
    normalised = np.asarray(infom.fit_normalizer(_DATA, "zscore").normalize(jnp.asarray(_DATA)))
    assert np.allclose(normalised.mean(axis=0), 0.0, atol=1e-4)
    assert np.allclose(normalised[:, :3].std(axis=0), 1.0, atol=1e-4)
    assert np.allclose(normalised[:, 3], 0.0)  # the constant dimension


def test_bounded_maps_range_to_unit_box():
    normalizer = infom.fit_normalizer(_DATA, "bounded")
    normalised = np.asarray(normalizer.normalize(jnp.asarray(_DATA)))
    assert np.allclose(normalised[:, :3].min(axis=0), -1.0, atol=1e-6)
    assert np.allclose(normalised[:, :3].max(axis=0), 1.0, atol=1e-6)
    assert np.array_equal(normalised[:, 3], np.zeros(50))  # constant dimension: no division by zero


def test_none_is_identity():
    normalizer = infom.fit_normalizer(_DATA, "none")
    assert jnp.array_equal(normalizer.normalize(jnp.asarray(_DATA)), jnp.asarray(_DATA))


def test_normalize_dataset_changes_only_observations():
    dataset = _episodic_dataset([3, 4])
    normalizer = infom.fit_normalizer(dataset.observations)
    normalised = infom.normalize_dataset(dataset, normalizer)
    assert jnp.allclose(normalised.observations, normalizer.normalize(dataset.observations))
    assert jnp.array_equal(normalised.actions, dataset.actions)
    assert jnp.array_equal(normalised.valid_indices, dataset.valid_indices)


def test_normalizer_rejects_unknown_kind():
    # The annotation rejects it at the call (a `TypeError`); the body also checks (a `ValueError`).
    with pytest.raises((TypeError, ValueError), match="kind"):
        infom.fit_normalizer(_DATA, "minmax")  # pyright: ignore
    with pytest.raises((TypeError, ValueError), match="kind"):
        Normalizer("minmax", jnp.zeros(2), jnp.ones(2), jnp.zeros(2), jnp.ones(2))  # pyright: ignore


@pytest.mark.parametrize("kind", ["zscore", "bounded", "none"])
def test_save_load_round_trip(tmp_path, kind):
    normalizer = infom.fit_normalizer(_DATA, kind)
    path = tmp_path / "normalizer.npz"
    infom.save_normalizer(path, normalizer)
    loaded = infom.load_normalizer(path)
    assert isinstance(loaded, Normalizer) and loaded.kind == kind
    for name in ("shift", "scale", "lower", "upper"):
        assert jnp.array_equal(getattr(loaded, name), getattr(normalizer, name))
    assert os.listdir(tmp_path) == ["normalizer.npz"]  # no temporary file left behind


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "normalizer.npz"
    old = infom.fit_normalizer(_DATA, "zscore")
    infom.save_normalizer(path, old)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        infom.save_normalizer(path, infom.fit_normalizer(_DATA, "bounded"))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["normalizer.npz"]


def test_load_names_file_and_missing_key(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, kind=np.asarray("zscore"), shift=np.zeros(3), scale=np.ones(3), lower=np.zeros(3))
    with pytest.raises(ValueError, match="bad.npz.*upper"):
        infom.load_normalizer(path)
