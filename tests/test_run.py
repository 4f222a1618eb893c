"""The end-to-end run: run directory, evaluation, exact kill-and-resume, non-finite diagnosis, CLI."""

import dataclasses
import json

import equinox as eqx
import jax
import numpy as np
import pytest

import infom
from infom._run import checkpoint_steps


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
    checkpoint_every=1,
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


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    result = infom.train(TASK, run_dir, CONFIG, RUN, data=data, progress=False)
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
        "eval.csv",
        "eval.json",
        "learning_curve.png",
    ):
        assert (run_dir / name).exists(), name
    record = json.loads((run_dir / "config.json").read_text())
    assert record["env"] == TASK and record["infom"]["alpha"] == 30.0 and record["run"]["num_seeds"] == 2
    assert [row["finetune_step"] for row in result.evaluations] == [0, 20]
    assert all(row["num_seeds"] == 2 for row in result.evaluations)
    lines = (run_dir / "pretrain_metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 2  # header + 2 blocks x 2 seeds
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_run_restores_the_trained_states(finished):
    run_dir, _ = finished
    env, infom_config, run, states = infom.load_run(run_dir)
    assert env == TASK and infom_config == CONFIG and run == RUN
    assert int(states.step[0]) == 40 and states.step.shape == (2,)


def _params(states):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(states, eqx.is_array))]


def test_killed_and_resumed_run_ends_with_the_same_parameters(tmp_path, finished, data):
    """Stop after 30 updates (mid fine-tuning, as if killed), resume, and compare bit for bit."""
    run_dir = tmp_path / "killed"
    infom.train(TASK, run_dir, CONFIG, RUN, data=data, progress=False, stop_after=30)
    assert checkpoint_steps(run_dir) == [30, 20]
    # A crash while appending leaves a torn last line and rows past the checkpoint.
    with open(run_dir / "finetune_metrics.csv", "a") as handle:
        handle.write("40,0,1.0,2.0")
    result = infom.train(TASK, run_dir, data=data, progress=False, resume=True)
    *_, resumed = infom.load_run(run_dir)
    *_, uninterrupted = infom.load_run(finished[0])
    for a, b in zip(_params(resumed), _params(uninterrupted), strict=True):
        np.testing.assert_array_equal(a, b)
    assert result.evaluations == finished[1].evaluations
    assert (run_dir / "finetune_metrics.csv").read_text() == (
        finished[0] / "finetune_metrics.csv"
    ).read_text()


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
    from infom._cli import main

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


def test_presets_carry_the_paper_settings():
    assert infom.get_preset("scene").infom.alpha == 300.0
    assert infom.get_preset("scene").infom.expectile == 0.99
    assert infom.get_preset("cube-double").infom.network.latent_dim == 128
    assert infom.get_preset("cube-single").run.pretrain_updates == 1_000_000
    with pytest.raises(ValueError, match="unknown preset"):
        infom.get_preset("nope")
