"""Locally generated OGBench datasets: format, OGBench's loader, determinism, atomic writes, errors."""

import os
import re
import shutil
import socket
import urllib.request
import zipfile

import numpy as np
import pytest

import infom
from infom.envs.ogbench import _datasets as _ogbench_datasets
from infom.envs.ogbench._datasets import _scene_is_healthy
from infom.run._cli import main


LENGTH = 40  # rows per episode in these tests (OGBench's datasets have 1001)
TASK = "cube-single-play-singletask-task1-v0"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or download fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """cube-single play (2 + 1 episodes) and play-ft (1 + 1 episodes), in this process."""
    root = tmp_path_factory.mktemp("ogbench")
    play, _, play_ft, _ = infom.dataset_paths(TASK, root)
    common = dict(seed=0, num_workers=1, episode_length=LENGTH, progress=False)
    infom.generate_dataset("cube-single", play, num_episodes=2, num_val_episodes=1, kind="play", **common)
    infom.generate_dataset(
        "cube-single", play_ft, num_episodes=1, num_val_episodes=1, kind="play-ft", **common
    )
    return root


def _arrays(path):
    with np.load(path) as file:
        return {key: file[key] for key in file.files}


def test_dataset_paths_map_every_name_of_a_domain_to_its_four_files(tmp_path):
    expected = (
        tmp_path / "scene-play-v0.npz",
        tmp_path / "scene-play-v0-val.npz",
        tmp_path / "scene-play-ft-v0.npz",
        tmp_path / "scene-play-ft-v0-val.npz",
    )
    for name in (
        "scene-play-singletask-task2-v0",
        "scene-play-v0",
        "scene-play-ft-singletask-v0",
        "scene-singletask-task5-v0",
    ):
        assert infom.dataset_paths(name, tmp_path) == expected
    default = infom.dataset_paths("puzzle-4x4-play-v0")[0]
    assert default == default.expanduser() and default.parts[-3:] == (
        ".ogbench",
        "data",
        "puzzle-4x4-play-v0.npz",
    )
    with pytest.raises(ValueError, match="cube-triple"):
        infom.dataset_paths("cube-triple-play-v0", tmp_path)


def test_generated_files_have_ogbench_layout(data_dir):
    train, val, ft_train, ft_val = infom.dataset_paths(TASK, data_dir)
    for path, episodes in [(train, 2), (val, 1), (ft_train, 1), (ft_val, 1)]:
        summary = infom.validate_ogbench_file(path, episode_length=LENGTH)
        assert (summary.num_episodes, summary.num_rows, summary.obs_dim, summary.action_dim) == (
            episodes,
            episodes * LENGTH,
            28,
            5,
        )
        assert summary.keys == ("observations", "actions", "terminals", "qpos", "qvel")
    arrays = _arrays(train)
    assert {k: v.dtype for k, v in arrays.items()} == {
        "observations": np.float32,
        "actions": np.float32,
        "terminals": np.bool_,
        "qpos": np.float32,
        "qvel": np.float32,
    }
    assert np.flatnonzero(arrays["terminals"]).tolist() == [LENGTH - 1, 2 * LENGTH - 1]
    assert np.abs(arrays["actions"]).max() <= 1.0
    # `qpos` is the state of its row, before the action: the arm joints are the first six observations.
    np.testing.assert_array_equal(arrays["observations"][:, :6], arrays["qpos"][:, :6])


def test_ogbench_loader_reads_the_files_and_relabels_rewards(data_dir, no_network):
    import ogbench

    env, train, val = ogbench.make_env_and_datasets(TASK, dataset_dir=str(data_dir))
    raw = _arrays(data_dir / "cube-single-play-v0.npz")
    assert env.spec.id == "cube-single-singletask-task1-v0"
    assert train["observations"].shape == (2 * (LENGTH - 1), 28)  # OGBench drops each episode's last row
    np.testing.assert_array_equal(train["observations"][: LENGTH - 1], raw["observations"][: LENGTH - 1])
    np.testing.assert_array_equal(train["next_observations"][: LENGTH - 1], raw["observations"][1:LENGTH])
    for dataset in (train, val):
        assert set(np.unique(dataset["rewards"])) <= {-1.0, 0.0}
        np.testing.assert_array_equal(dataset["masks"], -dataset["rewards"])

    loaded = infom.load_ogbench(TASK, dataset_dir=data_dir)
    for key in train:
        np.testing.assert_array_equal(loaded.train[key], train[key])
    fine_tuning = infom.load_ogbench("cube-single-play-ft-singletask-task1-v0", dataset_dir=data_dir)
    assert fine_tuning.train["observations"].shape == (LENGTH - 1, 28)
    assert set(np.unique(fine_tuning.train["rewards"])) <= {-1.0, 0.0}
    assert infom.load_ogbench(TASK, dataset_dir=data_dir, kind="play-ft").train["observations"].shape == (
        LENGTH - 1,
        28,
    )


def test_same_seed_gives_identical_files_whatever_the_worker_count(data_dir, tmp_path):
    reference = _arrays(data_dir / "cube-single-play-v0.npz")
    reference_val = _arrays(data_dir / "cube-single-play-v0-val.npz")
    path = tmp_path / "cube-single-play-v0.npz"
    summary = infom.generate_dataset(
        "cube-single",
        path,
        num_episodes=2,
        num_val_episodes=1,
        seed=0,
        num_workers=2,
        episode_length=LENGTH,
        progress=False,
    )
    assert summary.num_rows == 3 * LENGTH and summary.num_retries == 0
    for ours, theirs in [(_arrays(path), reference), (_arrays(summary.val_path), reference_val)]:
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_seeds_and_kinds_give_different_episodes_and_smaller_datasets_are_prefixes(data_dir, tmp_path):
    play = _arrays(data_dir / "cube-single-play-v0.npz")["qpos"]
    play_val = _arrays(data_dir / "cube-single-play-v0-val.npz")["qpos"]
    play_ft = _arrays(data_dir / "cube-single-play-ft-v0.npz")["qpos"]
    assert not np.array_equal(play[:LENGTH], play[LENGTH:])
    assert not np.array_equal(play[:LENGTH], play_val)
    assert not np.array_equal(play[:LENGTH], play_ft)
    common = dict(num_episodes=1, num_val_episodes=1, num_workers=1, episode_length=LENGTH, progress=False)
    infom.generate_dataset("cube-single", tmp_path / "a-play-v0.npz", seed=0, **common)
    infom.generate_dataset("cube-single", tmp_path / "b-play-v0.npz", seed=1, **common)
    np.testing.assert_array_equal(_arrays(tmp_path / "a-play-v0.npz")["qpos"], play[:LENGTH])
    np.testing.assert_array_equal(_arrays(tmp_path / "a-play-v0-val.npz")["qpos"], play_val)
    assert not np.array_equal(_arrays(tmp_path / "b-play-v0.npz")["qpos"], play[:LENGTH])


def test_generation_leaves_numpy_global_rng_alone(tmp_path):
    np.random.seed(123)
    expected = np.random.get_state()[1].copy()
    infom.generate_dataset(
        "cube-single",
        tmp_path / "x-play-v0.npz",
        num_episodes=1,
        num_workers=1,
        episode_length=5,
        progress=False,
    )
    np.testing.assert_array_equal(np.random.get_state()[1], expected)


def test_a_crash_while_writing_leaves_no_file_under_the_final_names(tmp_path, monkeypatch):
    from infom.envs.ogbench import _datasets as _ogbench

    real_write = _ogbench._write_npz
    calls = []

    def crash_on_second_file(file, arrays, *, compress=True):
        if compress:  # the final files (chunks are stored uncompressed)
            calls.append(file)
            if len(calls) == 2:  # the validation file is complete, the training file is half written
                file.write(b"PK\x03\x04 half a file")
                raise KeyboardInterrupt
        real_write(file, arrays, compress=compress)

    monkeypatch.setattr(_ogbench, "_write_npz", crash_on_second_file)
    path = tmp_path / "cube-single-play-v0.npz"
    with pytest.raises(KeyboardInterrupt):
        infom.generate_dataset(
            "cube-single", path, num_episodes=1, num_workers=1, episode_length=5, progress=False
        )
    assert len(calls) == 2
    # Neither final file nor a temporary file; only the kept chunks of the interrupted call.
    assert os.listdir(tmp_path) == [".cube-single-play-v0.partial"]
    monkeypatch.setattr(_ogbench, "_write_npz", real_write)
    summary = infom.generate_dataset(
        "cube-single", path, num_episodes=1, num_workers=1, episode_length=5, progress=False
    )
    assert summary.num_resumed_episodes == 2  # one training and one validation episode
    assert sorted(os.listdir(tmp_path)) == [
        "cube-single-play-v0-val.npz",
        "cube-single-play-v0.identity.json",
        "cube-single-play-v0.npz",
    ]


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    path = tmp_path / "cube-single-play-v0.npz"
    (tmp_path / "cube-single-play-v0-val.npz").write_bytes(b"keep me")
    common = dict(num_episodes=1, num_workers=1, episode_length=5, progress=False)
    with pytest.raises(FileExistsError, match="cube-single-play-v0-val.npz.*overwrite"):
        infom.generate_dataset("cube-single", path, **common)
    assert (tmp_path / "cube-single-play-v0-val.npz").read_bytes() == b"keep me"
    infom.generate_dataset("cube-single", path, overwrite=True, **common)
    assert infom.validate_ogbench_file(tmp_path / "cube-single-play-v0-val.npz").num_episodes == 1


def _corrupt(arrays, case):
    arrays = dict(arrays)
    if case == "missing key":
        del arrays["qvel"]
        return arrays, "'qvel'"
    if case == "wrong dtype":
        arrays["actions"] = arrays["actions"].astype(np.float64)
        return arrays, "'actions'.*float64"
    if case == "mismatched lengths":
        arrays["qpos"] = arrays["qpos"][:-1]
        return arrays, "'qpos'.*rows"
    if case == "nan":
        arrays["observations"] = arrays["observations"].copy()
        arrays["observations"][7, 3] = np.nan
        return arrays, "'observations'.*non-finite.*row 7"
    if case == "terminals":
        arrays["terminals"] = arrays["terminals"].copy()
        arrays["terminals"][10] = True
        return arrays, "'terminals'"
    if case == "action range":
        arrays["actions"] = arrays["actions"] * 3
        return arrays, "'actions'.*\\[-1, 1\\]"
    if case == "wrong width":
        arrays["observations"] = arrays["observations"][:, :27]
        return arrays, "'observations'.*width 27.*28"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["missing key", "wrong dtype", "mismatched lengths", "nan", "terminals", "action range", "wrong width"],
)
def test_invalid_files_raise_errors_naming_file_and_key(data_dir, tmp_path, case):
    arrays, message = _corrupt(_arrays(data_dir / "cube-single-play-v0.npz"), case)
    path = tmp_path / "cube-single-play-v0.npz"
    np.savez(path, **arrays)
    with pytest.raises(infom.DatasetError, match=f"{re.escape(str(path))}: .*{message}"):
        infom.validate_ogbench_file(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "bad member"])
def test_unreadable_files_raise_errors_naming_the_file(data_dir, tmp_path, damage):
    path = tmp_path / "cube-single-play-v0.npz"
    data = (data_dir / "cube-single-play-v0.npz").read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid archive whose member is not an array
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("observations.npy", b"\x93NUMPY broken")
    with pytest.raises(infom.DatasetError, match=re.escape(str(path))):
        infom.validate_ogbench_file(path)


def test_missing_files_name_the_generate_command_and_never_download(data_dir, tmp_path, no_network):
    with pytest.raises(infom.DatasetNotFoundError) as error:
        infom.load_ogbench(TASK, dataset_dir=tmp_path)
    assert f"infom data generate cube-single --kind play --dataset-dir {tmp_path}" in str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    # Only the validation file missing: still an error, never a download of the missing half.
    shutil.copy(data_dir / "cube-single-play-ft-v0.npz", tmp_path)
    with pytest.raises(infom.DatasetNotFoundError, match="(?s)play-ft-v0-val.npz.*--kind play-ft"):
        infom.load_ogbench("cube-single-play-ft-singletask-task1-v0", dataset_dir=tmp_path)


@pytest.mark.parametrize(
    "domain, widths, min_reward",
    [
        ("cube-double", {"observations": 37, "qpos": 28, "qvel": 26}, -2),
        ("scene", {"observations": 40, "qpos": 25, "qvel": 24, "button_states": 2}, -5),
        ("puzzle-4x4", {"observations": 83, "qpos": 30, "qvel": 30, "button_states": 16}, -16),
    ],
)
def test_other_domains_have_their_widths_and_load_through_ogbench(
    tmp_path, no_network, domain, widths, min_reward
):
    path = tmp_path / f"{domain}-play-v0.npz"
    infom.generate_dataset(domain, path, num_episodes=1, num_workers=1, episode_length=8, progress=False)
    arrays = _arrays(path)
    assert {key: arrays[key].shape[1] for key in widths} == widths
    if "button_states" in widths:
        assert arrays["button_states"].dtype == np.int64
    infom.validate_ogbench_file(path, episode_length=8)
    train = infom.load_ogbench(f"{domain}-play-singletask-task1-v0", dataset_dir=tmp_path).train
    assert train["rewards"].min() >= min_reward and train["rewards"].max() <= 0


def test_unhealthy_scene_episodes_are_collected_again(tmp_path, monkeypatch):
    verdicts = iter([False, True, True])
    monkeypatch.setattr(_ogbench_datasets, "_scene_is_healthy", lambda qpos: next(verdicts))
    summary = infom.generate_dataset(
        "scene",
        tmp_path / "scene-play-v0.npz",
        num_episodes=1,
        num_workers=1,
        episode_length=6,
        progress=False,
    )
    assert summary.num_retries == 1
    assert infom.validate_ogbench_file(summary.train_path).num_episodes == 1


def test_scene_health_check_matches_ogbench():
    qpos = np.zeros((3, 25))
    qpos[:, 14:17] = [0.4, 0.0, 0.02]
    assert _scene_is_healthy(qpos)
    too_right = qpos.copy()
    too_right[1, 15] = 0.29
    assert not _scene_is_healthy(too_right)
    left_on_table = qpos.copy()
    left_on_table[2, 15:17] = [-0.31, 0.02]
    assert not _scene_is_healthy(left_on_table)
    in_drawer = qpos.copy()
    in_drawer[2, 15:17] = [-0.31, 0.07]
    assert _scene_is_healthy(in_drawer)


def test_cli_generate_and_check(tmp_path, capsys):
    argv = [
        "data",
        "generate",
        "cube-single",
        "--kind",
        "play-ft",
        "--episodes",
        "1",
        "--episode-length",
        "6",
    ]
    argv += ["--dataset-dir", str(tmp_path), "--workers", "1", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "cube-single play-ft: 1 + 1 validation episodes x 6 steps" in out
    assert sorted(os.listdir(tmp_path)) == [
        "cube-single-play-ft-v0-val.npz",
        "cube-single-play-ft-v0.identity.json",
        "cube-single-play-ft-v0.npz",
    ]

    assert main(argv) == 1  # refuses to overwrite
    assert "already exists; pass --overwrite" in capsys.readouterr().err

    assert main(["data", "check", str(tmp_path / "cube-single-play-ft-v0.npz")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ") and "1 episodes x 6 steps" in out
    (tmp_path / "broken-play-v0.npz").write_bytes(b"PK\x03\x04")
    assert main(["data", "check", str(tmp_path / "broken-play-v0.npz")]) == 1
    assert "broken-play-v0.npz" in capsys.readouterr().err
