"""The end-to-end run: run directory, evaluation, exact kill-and-resume, non-finite diagnosis, CLI."""

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

import infom
from infom.training._checkpoints import checkpoint_steps


TASK = "cube-single-play-singletask-task1-v0"
CONFIG = infom.InFOMConfig(
    network=infom.NetworkConfig(hidden_dims=(32, 32), latent_dim=4),
    batch_size=32,
    num_futures=2,
    num_flow_steps=3,
    alpha=30.0,
)
RUN = infom.RunConfig(
    pretrain_updates=20,
    finetune_updates=20,
    block_size=10,
    eval_interval=20,
    eval_episodes=2,
    num_seeds=2,
    pretrain_episodes=3,
    finetune_episodes=2,
    episode_length=60,
    eval_workers=1,
    eval_envs_per_worker=1,  # one environment made per run; its episodes take turns
    eval_episode_steps=20,  # not OGBench's 200: these runs test the pipeline, not the policy
    checkpoint_every=1,
    diagnose_every=0,
)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ogbench")
    play, _, play_ft, _ = infom.dataset_paths(TASK, root)
    for kind, path, episodes in (("play", play, 3), ("play-ft", play_ft, 2)):
        infom.generate_dataset(
            "cube-single",
            path,
            num_episodes=episodes,
            num_val_episodes=1,
            kind=kind,
            episode_length=60,
            num_workers=1,
            progress=False,
        )
    return root


@pytest.fixture(scope="module")
def data(dataset_dir):
    return infom.load_task_data(TASK, RUN, dataset_dir=dataset_dir, generate_missing=False)


# The diagnostics (`diagnostics.csv`) are taken in the runs that test them; the others skip their compile.
DIAGNOSED = dataclasses.replace(RUN, diagnose_every=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    result = infom.train(TASK, run_dir, CONFIG, DIAGNOSED, data=data, progress=False)
    return run_dir, result


def test_run_directory_holds_config_metrics_evaluations_curve_and_checkpoint(finished):
    run_dir, result = finished
    for name in (
        "config.json",
        "data.json",
        "normalizer.npz",
        "checkpoint-000000040.eqx",
        "checkpoint-000000040.json",
        "checkpoint-000000030.eqx",  # the previous one is kept
        "pretrain_metrics.csv",
        "finetune_metrics.csv",
        "diagnostics.csv",
        "eval.csv",
        "eval.json",
        "learning_curve.png",
    ):
        assert (run_dir / name).exists(), name
    record = json.loads((run_dir / "config.json").read_text())
    assert record["env"] == TASK and record["agent"] == "infom" and record["config"]["alpha"] == 30.0
    assert record["run"]["num_seeds"] == 2
    assert [row["finetune_step"] for row in result.evaluations] == [0, 20]
    assert all(row["num_seeds"] == 2 for row in result.evaluations)
    # eval.json: mean and std over seeds, and each seed's numbers as in eval.csv.
    assert json.loads((run_dir / "eval.json").read_text()) == result.evaluations
    rows = list(csv.DictReader((run_dir / "eval.csv").read_text().splitlines()))
    for row in result.evaluations:
        own = [r for r in rows if int(r["finetune_step"]) == row["finetune_step"]]
        assert row["per_seed_return"] == [float(r["mean_return"]) for r in own]
        assert row["per_seed_success"] == [float(r["success_rate"]) for r in own]
        assert row["return_mean"] == pytest.approx(np.mean(row["per_seed_return"]))
    lines = (run_dir / "pretrain_metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 2  # header + 2 blocks x 2 seeds
    lines = (run_dir / "diagnostics.csv").read_text().splitlines()
    assert lines[0] == "step,phase,seed,intention_kl,active_dims,future_shift,q_shift"
    assert [line.split(",")[:3] for line in lines[1:]] == [
        [str(step), phase, str(seed)]
        for step, phase in ((10, "pretrain"), (20, "pretrain"), (30, "finetune"), (40, "finetune"))
        for seed in (0, 1)
    ]
    assert all(np.isfinite(float(x)) for line in lines[1:] for x in line.split(",")[3:])
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_run_restores_the_trained_states(finished):
    run_dir, _ = finished
    env, infom_config, run, states = infom.load_run(run_dir)
    assert env == TASK and infom_config == CONFIG and run == DIAGNOSED
    assert int(states.step[0]) == 40 and states.step.shape == (2,)


def _params(states):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(states, eqx.is_array))]


def test_killed_and_resumed_run_ends_with_the_same_parameters(tmp_path, finished, data):
    """Stop after 30 updates (mid fine-tuning, as if killed), resume, and compare bit for bit."""
    run_dir = tmp_path / "killed"
    infom.train(TASK, run_dir, CONFIG, DIAGNOSED, data=data, progress=False, stop_after=30)
    assert checkpoint_steps(run_dir) == [30, 20]
    # A crash while appending leaves a torn last line and rows past the checkpoint.
    with open(run_dir / "finetune_metrics.csv", "a") as handle:
        handle.write("40,0,1.0,2.0")
    # Settings given to a resume must be the run's own; a changed one is refused by name, nothing touched.
    longer = dataclasses.replace(DIAGNOSED, finetune_updates=40)
    with pytest.raises(ValueError, match=r"run\.finetune_updates: the run has 20, asked 40"):
        infom.train(TASK, run_dir, CONFIG, longer, data=data, progress=False, resume=True)
    with pytest.raises(ValueError, match=r"config\.alpha: the run has 30\.0, asked 1\.0"):
        infom.train(
            TASK, run_dir, dataclasses.replace(CONFIG, alpha=1.0), data=data, progress=False, resume=True
        )
    with pytest.raises(ValueError, match="started from preset None, not 'cube-single-cpu'"):
        infom.train(TASK, run_dir, preset="cube-single-cpu", data=data, progress=False, resume=True)
    with pytest.raises(ValueError, match="a run of agent 'infom', not 'iql'"):
        infom.train(TASK, run_dir, agent=infom.AGENTS["iql"], data=data, progress=False, resume=True)
    assert checkpoint_steps(run_dir) == [30, 20]
    result = infom.train(TASK, run_dir, CONFIG, DIAGNOSED, data=data, progress=False, resume=True)
    *_, resumed = infom.load_run(run_dir)
    *_, uninterrupted = infom.load_run(finished[0])
    for a, b in zip(_params(resumed), _params(uninterrupted), strict=True):
        np.testing.assert_array_equal(a, b)
    assert result.evaluations == finished[1].evaluations
    for name in ("finetune_metrics.csv", "diagnostics.csv"):
        assert (run_dir / name).read_text() == (finished[0] / name).read_text(), name


def test_non_finite_loss_stops_with_a_diagnosis_and_keeps_the_checkpoint(tmp_path, data):
    # Observations far outside the normaliser's range overflow the losses (same compiled program).
    huge = eqx.tree_at(lambda d: d.observations, data.pretrain, data.pretrain.observations * 1e30)
    run = dataclasses.replace(RUN, finetune_updates=0)
    with pytest.raises(
        infom.NonFiniteLossError, match=r"pretrain loss '\w+' became .* at update 1 \(seed index 0\)"
    ):
        infom.train(TASK, tmp_path / "nan", CONFIG, run, data=data._replace(pretrain=huge), progress=False)
    assert checkpoint_steps(tmp_path / "nan") == [0]
    *_, states = infom.load_run(tmp_path / "nan")
    assert int(states.step[0]) == 0
    assert all(np.isfinite(x).all() for x in _params(states))


def test_train_refuses_a_non_empty_run_directory(finished, data):
    with pytest.raises(FileExistsError, match="resume"):
        infom.train(TASK, finished[0], CONFIG, RUN, data=data, progress=False)


def test_missing_data_names_the_generate_command(tmp_path):
    with pytest.raises(infom.DatasetNotFoundError, match="infom data generate cube-single"):
        infom.load_task_data(TASK, RUN, dataset_dir=tmp_path, generate_missing=False)


def test_evaluate_run_writes_final_evaluation(finished):
    rows = infom.evaluate_run(finished[0], num_episodes=2, progress=False)
    assert [row["seed"] for row in rows] == [0, 1]
    record = json.loads((finished[0] / "eval_final.json").read_text())
    assert record["finetune_step"] == 20 and len(record["seeds"]) == 2


def test_cli_train_and_eval(tmp_path, dataset_dir, capsys):
    from infom.run._cli import main

    settings = {  # the module's CONFIG and RUN, so the compiled blocks are reused
        "network.hidden_dims": "32,32",
        "network.latent_dim": 4,
        "batch_size": 32,
        "num_futures": 2,
        "num_flow_steps": 3,
        "alpha": 30,
        "kl_weight": 0.01,
        "expectile": 0.9,
        "pretrain_updates": 20,
        "finetune_updates": 20,
        "block_size": 10,
        "eval_interval": 20,
        "eval_episodes": 1,
        "eval_workers": 1,
        "pretrain_episodes": 3,
        "finetune_episodes": 2,
        "episode_length": 60,
    }
    overrides = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    status = main(
        [
            "train",
            "--env",
            TASK,
            "--preset",
            "cube-single-smoke",
            "--dataset-dir",
            str(dataset_dir),
            "--run-dir",
            str(tmp_path / "cli"),
            "--seeds",
            "2",
            "--no-generate",
            "--quiet",
            *overrides,
        ]
    )
    assert status == 0
    assert "fine-tuning update      20" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "cli"), "--episodes", "1", "--quiet"]) == 0
    assert (
        main(["train", "--resume", str(tmp_path / "cli"), "--dataset-dir", str(dataset_dir), "--quiet"]) == 0
    )
    assert main(["train", "--env", "nope-v0"]) == 1


def test_overrides_parse_types_and_reject_unknown_keys():
    config, run = infom.apply_overrides(
        CONFIG,
        RUN,
        [
            "alpha=3",
            "network.hidden_dims=8,8",
            "clip_futures=false",
            "target_form=td2",
            "finetune_updates=1_000",
        ],
    )
    assert config.alpha == 3.0 and config.network.hidden_dims == (8, 8) and not config.clip_futures
    assert config.target_form == "td2" and run.finetune_updates == 1000
    with pytest.raises(ValueError, match="unknown setting 'alhpa'"):
        infom.apply_overrides(CONFIG, RUN, ["alhpa=3"])
    with pytest.raises(ValueError, match="target_form"):
        infom.apply_overrides(CONFIG, RUN, ["target_form=q"])
    with pytest.raises(ValueError, match="block_size"):
        infom.apply_overrides(CONFIG, RUN, ["block_size=7"])


def test_solver_and_head_aggregation_objects_are_set_and_recorded_by_name():
    """`critic_solver` and `q_aggregation` hold objects (a diffrax solver, a function of the heads);
    the command line and `config.json` name them, and the record reads back to equal objects."""
    import diffrax

    from infom.run._presets import config_from_dict, config_to_dict

    config, run = infom.apply_overrides(CONFIG, RUN, ["critic_solver=Midpoint", "q_aggregation=mean"])
    assert config.critic_solver == diffrax.Midpoint() and config.q_aggregation is infom.mean_heads
    record = json.loads(json.dumps(config_to_dict("infom", config, run)))
    assert record["config"]["critic_solver"] == "midpoint" and record["config"]["q_aggregation"] == "mean"
    assert config_from_dict(record, infom.InFOMConfig) == (config, run)
    with pytest.raises(ValueError, match="critic_solver must be one of .*'heun'.*got 'rk4'"):
        infom.apply_overrides(CONFIG, RUN, ["critic_solver=rk4"])
    with pytest.raises(ValueError, match="q_aggregation must be one of"):
        infom.apply_overrides(CONFIG, RUN, ["q_aggregation=max"])
    # An object the run directory could not name is refused before anything is written.
    custom = dataclasses.replace(config, q_aggregation=lambda q: q.max(axis=-1))
    with pytest.raises(ValueError, match="q_aggregation=.*cannot be recorded in config.json"):
        config_to_dict("infom", custom, run)


def test_presets_carry_the_paper_settings():
    assert infom.get_preset("scene").infom.alpha == 300.0
    assert infom.get_preset("scene").infom.expectile == 0.99
    assert infom.get_preset("cube-double").infom.network.latent_dim == 128
    assert infom.get_preset("cube-single").run.pretrain_updates == 1_000_000
    # Seeds: vmapped together at the paper's settings, one after another on a CPU budget.
    assert infom.get_preset("cube-single").run.seed_batch is None
    assert infom.get_preset("cube-single-cpu").run.seed_batch == 1
    with pytest.raises(ValueError, match="unknown preset"):
        infom.get_preset("nope")
    for bad in (0, -2, True, 1.0):
        with pytest.raises(ValueError, match=r"RunConfig.seed_batch must be a positive integer or None"):
            infom.RunConfig(seed_batch=bad)


# --------------------------------------------------------------------------- the wrong data is refused


def test_datasets_of_another_size_or_seed_are_refused_before_a_run_directory_is_made(dataset_dir, tmp_path):
    for change, found, asked in (
        (dict(pretrain_episodes=5), "3 + 1 episodes x 60 steps", "5 + 1 episodes x 60 steps"),
        (dict(data_seed=1), "seed 0", "seed 1"),
    ):
        run = dataclasses.replace(RUN, **change)
        with pytest.raises(infom.DatasetMismatchError) as error:
            infom.train(TASK, tmp_path / "run", CONFIG, run, dataset_dir=dataset_dir, progress=False)
        message = str(error.value)
        assert "cube-single-play-v0.npz" in message and found in message and asked in message
        # The command that makes the requested data, in the run's own data directory.
        assert "infom data generate cube-single --kind play" in message
        assert f"--dataset-dir {dataset_dir}" in message and "--overwrite" in message
        assert not (tmp_path / "run").exists()


def test_files_without_an_identity_are_used_only_when_their_size_matches(dataset_dir, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(dataset_dir, bare, ignore=shutil.ignore_patterns("*.identity.json"))
    loaded = infom.load_task_data(TASK, RUN, dataset_dir=bare, generate_missing=False)
    assert loaded.pretrain.observations.shape[0] == 3 * 59  # OGBench's loader drops each episode's last row
    with pytest.raises(infom.DatasetMismatchError, match="origin unrecorded"):
        infom.load_task_data(
            TASK, dataclasses.replace(RUN, finetune_episodes=4), dataset_dir=bare, generate_missing=False
        )


def test_a_resumed_run_reads_its_own_data_directory_and_the_same_files(
    dataset_dir, finished, tmp_path, monkeypatch
):
    import shutil

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default data directory lives here
    own = tmp_path / "data"
    shutil.copytree(dataset_dir, own)
    run_dir = tmp_path / "run"
    infom.train(TASK, run_dir, CONFIG, RUN, dataset_dir=own, progress=False, stop_after=10)
    assert json.loads((run_dir / "config.json").read_text())["dataset_dir"] == str(own)
    infom.train(None, run_dir, resume=True, progress=False, generate_missing=False)
    assert not (tmp_path / "home").exists()  # nothing was generated or read elsewhere
    *_, resumed = infom.load_run(run_dir)
    *_, uninterrupted = infom.load_run(finished[0])
    for a, b in zip(_params(resumed), _params(uninterrupted), strict=True):
        np.testing.assert_array_equal(a, b)

    # Other bytes under the same name: a resumed run refuses them, naming the file.
    other = tmp_path / "run2"
    infom.train(TASK, other, CONFIG, RUN, dataset_dir=own, progress=False, stop_after=10)
    _, _, play_ft, _ = infom.dataset_paths(TASK, own)
    infom.generate_dataset(
        "cube-single",
        play_ft,
        num_episodes=2,
        kind="play-ft",
        seed=1,
        episode_length=60,
        num_workers=1,
        progress=False,
        overwrite=True,
    )
    changed = r"cube-single-play-ft-v0(-val)?\.npz: not the file this run started"
    with pytest.raises(infom.DatasetError, match=changed):
        infom.train(None, other, resume=True, progress=False)


# --------------------------------------------------------------------------- interruptions


def test_generation_interrupted_and_continued_writes_the_bytes_of_an_uninterrupted_one(tmp_path, monkeypatch):
    from infom.envs.ogbench import _datasets as _ogbench

    common = dict(
        num_episodes=5, num_val_episodes=2, num_workers=1, episode_length=20, progress=False, chunk_episodes=2
    )
    reference = tmp_path / "reference" / "cube-single-play-v0.npz"
    infom.generate_dataset("cube-single", reference, **common)

    real = _ogbench._Collector.healthy_episode
    calls = []

    def killed_at_the_fourth_episode(self, *args):
        calls.append(args)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(_ogbench._Collector, "healthy_episode", killed_at_the_fourth_episode)
    path = tmp_path / "interrupted" / "cube-single-play-v0.npz"
    with pytest.raises(infom.GenerationInterrupted, match="2 of 7 episodes are kept"):
        infom.generate_dataset("cube-single", path, **common)
    monkeypatch.undo()
    summary = infom.generate_dataset("cube-single", path, **common)
    assert summary.num_resumed_episodes == 2
    for name in (
        "cube-single-play-v0.npz",
        "cube-single-play-v0-val.npz",
        "cube-single-play-v0.identity.json",
    ):
        assert (path.parent / name).read_bytes() == (reference.parent / name).read_bytes(), name
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(p.name for p in reference.parent.iterdir())


def test_an_interrupted_run_checkpoints_its_last_block_and_resumes_bit_identically(
    tmp_path, finished, data, monkeypatch
):
    from infom.run import _run

    real = _run.seeds_block
    calls = []

    def interrupted_in_the_second_block(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(_run, "seeds_block", interrupted_in_the_second_block)
    run_dir = tmp_path / "run"
    run = dataclasses.replace(RUN, checkpoint_every=10)  # only the interruption saves update 10
    with pytest.raises(infom.RunInterrupted, match=rf"after update 10 .*infom train --resume {run_dir}"):
        infom.train(TASK, run_dir, CONFIG, run, data=data, progress=False)
    monkeypatch.undo()
    assert checkpoint_steps(run_dir) == [10, 0]

    # A resumed run must be given the data it started with.
    other = data._replace(finetune=eqx.tree_at(lambda d: d.rewards, data.finetune, data.finetune.rewards + 1))
    with pytest.raises(infom.DatasetError, match="differ from those it started with"):
        infom.train(None, run_dir, resume=True, data=other, progress=False)
    infom.train(None, run_dir, resume=True, data=data, progress=False)
    *_, resumed = infom.load_run(run_dir)
    *_, uninterrupted = infom.load_run(finished[0])
    for a, b in zip(_params(resumed), _params(uninterrupted), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sigterm_during_generation_stops_in_one_line_and_the_run_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    settings = {
        "pretrain_episodes": 30,
        "finetune_episodes": 2,
        "episode_length": 100,
        "pretrain_updates": 0,
        "finetune_updates": 0,
        "eval_episodes": 1,
        "eval_workers": 1,
        "num_seeds": 1,
    }
    command = [
        sys.executable,
        "-m",
        "infom.run._cli",
        "train",
        "--env",
        TASK,
        "--preset",
        "cube-single-smoke",
        "--dataset-dir",
        str(data_dir),
        "--run-dir",
        str(run_dir),
        "--quiet",
        *(arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")),
    ]
    env = {**os.environ, "MUJOCO_GL": "disable"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    first_chunk = data_dir / ".cube-single-play-v0.partial" / "train-00000.npz"
    deadline = time.monotonic() + 240
    while not first_chunk.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first_chunk.exists(), process.communicate()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "leaked" not in stderr, stderr
    last = stderr.strip().splitlines()
    assert any("stopped by SIGTERM" in line and "episodes are kept" in line for line in last), stderr
    assert f"infom train --resume {run_dir}" in stderr
    assert (run_dir / "config.json").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "infom.run._cli", "train", "--resume", str(run_dir), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "fine-tuning update       0" in resumed.stdout
    identity = json.loads((data_dir / "cube-single-play-v0.identity.json").read_text())
    assert identity["num_episodes"] == 30 and identity["episode_length"] == 100
    assert not (data_dir / ".cube-single-play-v0.partial").exists()


# --------------------------------------------------------------------------- corrupt state


def _damaged_copy(finished, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished[0], run_dir)
    return run_dir


def test_a_damaged_checkpoint_is_refused_by_name_and_the_previous_one_survives(finished, data, tmp_path):
    from infom.run._cli import main

    run_dir = _damaged_copy(finished, tmp_path)
    newest = run_dir / "checkpoint-000000040.eqx"
    payload = bytearray(newest.read_bytes())
    middle = len(payload) // 2
    payload[middle : middle + 256] = bytes(b ^ 0xFF for b in payload[middle : middle + 256])
    newest.write_bytes(bytes(payload))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}

    expected = r"checkpoint-000000040.eqx: damaged.*checkpoint-000000030.eqx \(update 30\) is intact"
    with pytest.raises(infom.CheckpointError, match=expected):
        infom.load_run(run_dir)
    with pytest.raises(infom.CheckpointError, match=expected):
        infom.train(None, run_dir, resume=True, data=data, progress=False)
    assert main(["eval", str(run_dir), "--quiet"]) == 1
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # nothing written or lost

    # Deleting the damaged pair resumes from the previous checkpoint, to the same parameters.
    newest.unlink()
    (run_dir / "checkpoint-000000040.json").unlink()
    assert int(infom.load_run(run_dir)[3].step[0]) == 30
    infom.train(None, run_dir, resume=True, data=data, progress=False)
    *_, resumed = infom.load_run(run_dir)
    *_, uninterrupted = infom.load_run(finished[0])
    for a, b in zip(_params(resumed), _params(uninterrupted), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_torn_checkpoint_record_is_named_as_such(finished, tmp_path):
    run_dir = _damaged_copy(finished, tmp_path)
    record = run_dir / "checkpoint-000000040.json"
    record.write_text(record.read_text()[:20])
    with pytest.raises(
        infom.CheckpointError, match=r"checkpoint-000000040.json: not a readable checkpoint record"
    ):
        infom.load_run(run_dir)


# --------------------------------------------------------------------------- the command's smaller errors


def test_the_command_refuses_early_and_leaves_no_directory(tmp_path, capsys):
    from infom.run._cli import main

    run_dir = tmp_path / "run"
    assert main(["train", "--env", TASK, "--preset", "scene", "--run-dir", str(run_dir)]) == 1
    assert "preset 'scene' is for scene" in capsys.readouterr().err and not run_dir.exists()

    empty = tmp_path / "empty"
    argv = ["train", "--env", TASK, "--dataset-dir", str(empty), "--run-dir", str(run_dir), "--no-generate"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"infom data generate cube-single --kind play --episodes 300 --dataset-dir {empty}" in err
    assert f"infom data generate cube-single --kind play-ft --episodes 150 --dataset-dir {empty}" in err
    assert not run_dir.exists()

    for argv in (["train", "--resume", str(tmp_path / "nope")], ["eval", str(tmp_path / "nope")]):
        assert main(argv) == 1
        assert "is not a run directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- every agent, the same run


@pytest.mark.parametrize(
    "name", ["bc", "iql", "rebrac", "crl_is", "fb_iql", "hilp_iql", "dino_rebrac", "mbpo_rebrac"]
)
def test_every_agent_trains_resumes_bit_identically_and_stops_on_a_non_finite_loss(name, tmp_path, data):
    agent = infom.AGENTS[name]
    fields = {f.name for f in dataclasses.fields(agent.config_type)}
    config = agent.config_type(
        **{
            k: v
            for k, v in dict(
                hidden_dims=(32, 32),
                encoder_dims=(32, 32),
                batch_size=32,
                latent_dim=8,
                num_task_samples=64,
                num_model_rollouts=16,
            ).items()
            if k in fields
        }
    )
    run = dataclasses.replace(RUN, num_seeds=1)
    full = infom.train(TASK, tmp_path / "full", config, run, agent=agent, data=data, progress=False)
    assert [row["finetune_step"] for row in full.evaluations] == [0, 20]
    record = json.loads((tmp_path / "full" / "config.json").read_text())
    assert record["agent"] == name and record["config"]["hidden_dims"] == [32, 32]

    infom.train(TASK, tmp_path / "killed", config, run, agent=agent, data=data, progress=False, stop_after=30)
    resumed = infom.train(None, tmp_path / "killed", resume=True, data=data, progress=False)
    assert resumed.evaluations == full.evaluations
    for a, b in zip(
        _params(infom.load_run(tmp_path / "killed")[3]),
        _params(infom.load_run(tmp_path / "full")[3]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)

    huge = eqx.tree_at(lambda d: d.observations, data.pretrain, data.pretrain.observations * 1e30)
    with pytest.raises(infom.NonFiniteLossError, match="pretrain loss"):
        infom.train(
            TASK,
            tmp_path / "nan",
            config,
            run,
            agent=agent,
            data=data._replace(pretrain=huge),
            progress=False,
        )


def test_the_commands_agent_names_are_the_agents():
    from infom.run._cli import AGENT_NAMES

    assert AGENT_NAMES == tuple(infom.AGENTS)


@pytest.mark.parametrize("preset", sorted(infom.PRESETS))
def test_every_agent_has_a_config_for_every_preset(preset):
    for agent in infom.AGENTS.values():
        config = agent.preset_config(infom.get_preset(preset))
        assert isinstance(config, agent.config_type)
        assert config.hidden_dims if hasattr(config, "hidden_dims") else config.network.hidden_dims


@pytest.mark.parametrize(
    "name", ["bc", "iql", "rebrac", "crl_is", "fb_iql", "hilp_iql", "dino_rebrac", "mbpo_rebrac"]
)
def test_every_baseline_config_rejects_empty_or_bad_hidden_dims_naming_the_field(name):
    config_type = infom.AGENTS[name].config_type
    for bad in ((), (32, 0), [32]):
        with pytest.raises(ValueError, match="hidden_dims"):
            config_type(hidden_dims=bad)


def test_the_command_starts_without_importing_jax():
    """`infom --help` (and `import infom`) stay instant: no JAX, diffrax or configs are imported."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from infom.run._cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('jax', 'diffrax', 'equinox', 'infom._config') if m in sys.modules]\n"
        "print('heavy:', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip().endswith("heavy: []"), out


# --------------------------------------------------------------------------- on a mesh of devices


def test_a_mesh_the_machine_or_the_run_cannot_split_over_is_refused_before_anything_is_written(
    tmp_path, data
):
    from infom.run._cli import _mesh_shape

    assert _mesh_shape("2x4") == (2, 4) and _mesh_shape("1X1") == (1, 1)
    for bad in ("2", "2x0", "axb", "1x2x3"):
        with pytest.raises(argparse.ArgumentTypeError, match="SEEDSxDATA"):
            _mesh_shape(bad)
    with pytest.raises(ValueError, match="a 2 x 1 mesh needs 2 devices, but 1 are available"):
        infom.train(TASK, tmp_path / "run", CONFIG, RUN, data=data, progress=False, mesh_shape=(2, 1))
    assert not (tmp_path / "run").exists()


_MOVES = {
    # 10 pre-training updates on a 1 x 2 mesh (each batch over 2 devices), then one device to the end.
    "2-then-1": ["stop_after=10, mesh_shape=(1, 2)", ""],
    # ... and one device only until update 30 (into fine-tuning), then the seeds over 2 devices (2 x 1).
    "2-then-1-then-2": ["stop_after=10, mesh_shape=(1, 2)", "stop_after=30", "mesh_shape=(2, 1)"],
}


@pytest.mark.parametrize("moves", ["2-then-1", pytest.param("2-then-1-then-2", marks=pytest.mark.slow)])
def test_a_run_moves_between_one_and_two_devices_and_ends_with_one_devices_parameters(
    tmp_path, finished, dataset_dir, moves
):
    """One run, killed and resumed on another number of devices: 10 pre-training updates on a 1 x 2
    mesh, resumed on one device to the end (the slow run: one device until update 30, then the seeds
    over 2 devices, 2 x 1, to the end). So checkpoints move from 2 devices to 1 (and from 1 to 2),
    and the run ends with the parameters of the uninterrupted one-device run, to float32
    reduction-order error."""
    first, *later = _MOVES[moves]
    resumes = "\n".join(
        f"infom.train(None, run_dir, resume=True, data=data, progress=False, {args})" for args in later
    )
    code = f"""
import sys
import jax
sys.path.insert(0, {str(Path(__file__).parent)!r})
import infom
from test_run import CONFIG, RUN, TASK
assert len(jax.devices()) == 2
data = infom.load_task_data(TASK, RUN, dataset_dir={str(dataset_dir)!r}, generate_missing=False)
run_dir = {str(tmp_path / "run")!r}
infom.train(TASK, run_dir, CONFIG, RUN, data=data, progress=False, {first})
{resumes}
print("ok")
"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [row["finetune_step"] for row in json.loads((tmp_path / "run" / "eval.json").read_text())] == [
        0,
        20,
    ]
    want = _params(infom.load_run(finished[0])[3])
    got = _params(infom.load_run(tmp_path / "run")[3])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_distributed_needs_a_run_directory_every_process_names_alike(capsys):
    from infom.run._cli import main

    assert main(["train", "--env", TASK, "--distributed"]) == 1
    assert "--distributed needs --run-dir" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_run_one_training_and_process_0_writes_the_run_directory(
    tmp_path, finished, dataset_dir
):
    """Two local processes (`jax.distributed`, gloo) train one run, each batch split over both: process 0
    writes the run directory and evaluates, and the run ends with one process's parameters."""
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from infom.training._sharding import initialize_distributed
initialize_distributed(f"localhost:{{sys.argv[1]}}", 2, int(sys.argv[2]), heartbeat_timeout_seconds=30)
import infom
from test_run import CONFIG, RUN, TASK
infom.train(TASK, {str(tmp_path / "run")!r}, CONFIG, RUN, dataset_dir={str(dataset_dir)!r}, progress=False)
print("ok")
"""
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(port), str(pid)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in (0, 1)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=1200)
        assert worker.returncode == 0, stderr[-3000:]
    run_dir = tmp_path / "run"
    assert (run_dir / "eval.json").exists() and (run_dir / "finetune_metrics.csv").exists()
    assert json.loads((run_dir / "eval.json").read_text())[-1]["finetune_step"] == 20
    want = _params(infom.load_run(finished[0])[3])
    got = _params(infom.load_run(run_dir)[3])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


# --------------------------------------------------------------------------- loggers


def _wandb_history(run_dir: Path) -> dict[int, dict[str, float]]:
    """Every history row of the W&B offline runs under `run_dir/wandb`, read from their `.wandb` files (a
    LevelDB-style log of `wandb_internal_pb2.Record` protobufs in 32 KiB blocks after a 7-byte header)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    history: dict[int, dict[str, float]] = {}
    files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert files, sorted(p.name for p in (run_dir / "wandb").iterdir())
    for path in files:
        data, pos, pending, chunks = path.read_bytes(), 7, b"", []
        assert data[:4] == b":W&B"
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
                pos += 32768 - pos % 32768
                continue
            _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
            if kind == 1:
                chunks.append(chunk)
            elif kind in (2, 3):
                pending = chunk if kind == 2 else pending + chunk
            elif kind == 4:
                chunks.append(pending + chunk)
        for raw in chunks:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            if record.WhichOneof("record_type") == "history":
                row = history.setdefault(record.history.step.num, {})
                for item in record.history.item:  # a key with "/" comes as a one-part nested key
                    row[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return history


def test_tensorboard_and_wandb_receive_the_metrics_and_evaluations_of_a_resumed_run(tmp_path, data):
    """A run killed after 30 updates and resumed, with both loggers: TensorBoard's event files and the W&B
    offline run hold every block's per-seed metrics and every evaluation, at the run-wide update count, with
    the values of the run directory's CSV files."""
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    both = ("tensorboard", "wandb")
    infom.train(TASK, run_dir, CONFIG, RUN, data=data, progress=False, stop_after=30, loggers=both)
    infom.train(None, run_dir, resume=True, data=data, progress=False, loggers=both)

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    history = _wandb_history(run_dir)
    expected = []
    for phase in ("pretrain", "finetune"):
        with open(run_dir / f"{phase}_metrics.csv") as file:
            for row in csv.DictReader(file):
                for field in ("loss", "kl" if phase == "pretrain" else "critic_loss"):
                    expected.append(
                        (f"{phase}/{field}/seed{row['seed']}", int(row["step"]), float(row[field]))
                    )
    with open(run_dir / "eval.csv") as file:
        for row in csv.DictReader(file):
            expected.append(
                (f"eval/success_rate/seed{row['seed']}", int(row["step"]), float(row["success_rate"]))
            )
    for row in json.loads((run_dir / "eval.json").read_text()):
        expected.append(("eval/success_rate", 20 + row["finetune_step"], row["success_mean"]))
    assert {step for _, step, _ in expected} == {10, 20, 30, 40}
    for tag, step, value in expected:
        logged = {event.step: event.value for event in events.Scalars(tag)}
        assert set(logged) == {s for t, s, _ in expected if t == tag}, tag  # once each, across the resume
        np.testing.assert_allclose(logged[step], value, rtol=1e-6, err_msg=tag)
        np.testing.assert_allclose(history[step][tag], value, rtol=1e-12, err_msg=tag)


def test_an_unknown_logger_is_refused_before_anything_is_written(tmp_path, data):
    with pytest.raises(ValueError, match="unknown logger 'mlflow'; choose from tensorboard, wandb"):
        infom.train(TASK, tmp_path / "run", CONFIG, RUN, data=data, progress=False, loggers=("mlflow",))
    assert not (tmp_path / "run").exists()
