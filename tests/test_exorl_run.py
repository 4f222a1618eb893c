"""`infom train` on ExORL tasks: local exploration data made on demand, the pre-training / fine-tuning
split of one buffer, rewards relabelled from physics, evaluation by return, and the errors that name
the command making the data."""

import csv
import dataclasses
import json
import math

import numpy as np
import pytest

import infom
from infom._errors import DatasetError
from infom.envs.dmc import exorl_episodes_present, generate_exorl, load_exorl, task_reward


pytest.importorskip("dm_control")

TASK = "walker_run"
CONFIG = infom.InFOMConfig(
    network=infom.NetworkConfig(hidden_dims=(32, 32), latent_dim=4),
    batch_size=32,
    num_futures=2,
    num_flow_steps=3,
)
RUN = infom.RunConfig(
    pretrain_updates=200,
    finetune_updates=200,
    block_size=100,
    eval_interval=200,
    eval_episodes=2,
    pretrain_episodes=3,
    finetune_episodes=1,
    episode_length=40,
    exorl_algorithm="ou_noise",
    eval_workers=1,
    eval_envs_per_worker=2,
    eval_episode_steps=30,
    checkpoint_every=1,
    diagnose_every=0,
)


def test_a_run_generates_its_data_splits_one_buffer_relabels_and_evaluates_by_return(tmp_path):
    """The run collects the 4 episodes it needs, pre-trains (200 updates) on episodes 0-2
    (reward-free) and fine-tunes (200 updates) on episode 3 relabelled with walker run's reward from
    its physics; a run stopped after pre-training resumes to the end; each evaluation reports a
    finite mean return and no success rate (NaN)."""
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    infom.train(TASK, run_dir, CONFIG, RUN, dataset_dir=data_dir, progress=False, stop_after=200)
    assert exorl_episodes_present(data_dir, "walker", "ou_noise", episodes=4, seed=0, episode_length=40)
    result = infom.train(None, run_dir, resume=True, progress=False)

    assert [row["finetune_step"] for row in result.evaluations] == [0, 200]
    for row in result.evaluations:
        assert math.isnan(row["success_mean"]) and np.isfinite(row["return_mean"])
    with open(run_dir / "eval.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(int(row["episodes"]) == 2 for row in rows)
    assert (run_dir / "learning_curve.png").stat().st_size > 0
    record = json.loads((run_dir / "config.json").read_text())
    assert record["data_request"]["finetune"]["first_episode"] == 3
    assert record["data_request"]["finetune"]["task"] == TASK

    # The run's fine-tuning rewards are walker run's, recomputed from the 4th episode's physics.
    data = infom.load_task_data(TASK, RUN, dataset_dir=data_dir, generate_missing=False)
    fine = load_exorl(data_dir, "walker", "ou_noise", task=TASK, first_episode=3, max_episodes=1)
    assert data.finetune.observations.shape[0] == 40 and data.pretrain.observations.shape[0] == 120
    np.testing.assert_allclose(np.asarray(data.finetune.rewards), fine.rewards)
    assert np.any(fine.rewards != 0)
    assert not np.any(np.asarray(data.pretrain.rewards))  # reward-free


def test_missing_or_other_exorl_data_is_refused_naming_the_command(tmp_path):
    with pytest.raises(infom.DatasetNotFoundError) as error:
        infom.train(TASK, tmp_path / "run", CONFIG, RUN, dataset_dir=tmp_path, generate_missing=False)
    assert "infom data generate walker --episodes 4 --explorer ou_noise --seed 0 --episode-length 40" in str(
        error.value
    )
    assert not (tmp_path / "run").exists()

    # ExORL's own RND data cannot be made here: the error says so.
    rnd = dataclasses.replace(RUN, exorl_algorithm="rnd")
    with pytest.raises(
        infom.DatasetNotFoundError, match="'rnd' data come from ExORL's own exploration runs"
    ) as error:
        infom.train(TASK, tmp_path / "run", CONFIG, rnd, dataset_dir=tmp_path)
    # ... and the command it offers makes local data, which the CLI accepts.
    assert "--set exorl_algorithm=ou_noise" in str(error.value)
    assert "--explorer ou_noise" in str(error.value) and "--explorer rnd" not in str(error.value)

    # A local buffer made with another seed is not silently used.
    generate_exorl(tmp_path, "walker", episodes=1, seed=1, workers=1, progress=False, episode_length=40)
    with pytest.raises(
        DatasetError, match="generation.json: the episodes here were generated with other settings"
    ):
        infom.train(TASK, tmp_path / "run", CONFIG, RUN, dataset_dir=tmp_path)
    assert not (tmp_path / "run").exists()


def test_exorl_presets_and_names():
    assert infom.get_preset("walker-cpu").run.exorl_algorithm == "ou_noise"
    assert infom.get_preset("walker").run.exorl_algorithm == "rnd"
    assert infom.get_preset("walker").run.pretrain_episodes == 5000  # the paper's 5M transitions
    assert infom.get_preset("jaco-cpu").run.episode_length == 250
    from infom.run._presets import default_preset_name

    assert default_preset_name("cheetah_run_backward") == "cheetah-cpu"
    with pytest.raises(ValueError, match="exorl_algorithm must be a directory name"):
        infom.RunConfig(exorl_algorithm="../rnd")
    # Task rewards from physics, the relabelling the loader uses, are defined for every task.
    assert task_reward("walker_flip", np.zeros((1, 18))).shape == (1,)


def test_cli_generates_exorl_data_and_extends_it(tmp_path, capsys):
    """`infom data generate walker` writes ExORL's layout; a second call with more episodes keeps the
    first ones and collects only the new ones."""
    from infom.run._cli import main

    common = ["--episode-length", "20", "--dataset-dir", str(tmp_path), "--workers", "1", "--quiet"]
    assert main(["data", "generate", "walker", "--episodes", "1", *common]) == 0
    assert main(["data", "generate", "walker", "--episodes", "2", *common]) == 0
    out = capsys.readouterr().out
    assert "1 episodes collected (1 kept)" in out
    files = sorted((tmp_path / "walker" / "ou_noise" / "buffer").glob("episode_*_20.npz"))
    assert [f.name for f in files] == ["episode_000000_20.npz", "episode_000001_20.npz"]


def test_the_ogbench_and_exorl_task_sources_offer_the_same_functions_with_the_same_arguments():
    """The run layer chooses between benchmarks in one place (`task_source`); everything else calls
    the chosen adapter's functions, so both adapters must offer the same ones, alike in signature."""
    import inspect

    from infom.run import _exorl, _ogbench
    from infom.run._run import task_source

    assert task_source("walker_run") is _exorl
    assert task_source("cube-single-play-singletask-task1-v0") is _ogbench

    def interface(module):
        return {
            name: list(inspect.signature(function).parameters)
            for name, function in vars(module).items()
            if inspect.isfunction(function)
            and function.__module__ == module.__name__
            and not name.startswith("_")
        }

    ogbench, exorl = interface(_ogbench), interface(_exorl)
    exorl.pop("is_exorl_task"), exorl.pop("generate_command")  # ExORL's own helpers
    assert ogbench == exorl
    assert len(ogbench) >= 14, sorted(ogbench)


@pytest.mark.parametrize(
    "task, steps",
    [
        ("walker_run", 1000),
        ("cheetah_run", 1000),
        ("quadruped_walk", 1000),
        ("jaco_reach_top_left", 250),
        ("cube-single-play-singletask-task1-v0", 200),
    ],
)
def test_every_cpu_preset_plans_its_job_with_its_benchmark_s_episode_length(task, steps):
    """The presets leave `eval_episode_steps` unset: the run plans its evaluations with the benchmark's own
    episode length (what the small test runs above, which set it, never ask for)."""
    from infom.run._run import _job_phases, task_source

    assert task_source(task).eval_episode_length(task) == steps
    preset = infom.get_preset(infom.run._presets.default_preset_name(task))
    assert preset.run.eval_episode_steps is None
    phases = _job_phases(task, preset.run, missing=[])
    assert [phase.name for phase in phases][-3:] == ["pre-training", "fine-tuning", "evaluation"]
