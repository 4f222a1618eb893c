"""Run schedules and the named presets: the paper's per-domain settings and CPU budgets."""

import collections.abc
import dataclasses
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, get_args

import diffrax

from .._config import HEAD_AGGREGATIONS, InFOMConfig, NetworkConfig
from .._literals import NormalizerKind
from ..envs.dmc._names import DOMAINS as EXORL_DOMAINS
from ..envs.ogbench._names import OGBENCH_DOMAINS


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The schedule of a pre-train / fine-tune / evaluate run.

    **Fields:**

    - `pretrain_updates`, `finetune_updates`: numbers of updates (paper: 1,000,000 and 500,000).
    - `block_size`: updates per compiled `lax.scan` block; Python (progress, metrics,
      checkpoints) is touched once per block. Must divide both update counts and
      `eval_interval`.
    - `eval_interval`: fine-tuning updates between evaluations (paper: 50,000); the policy is
      also evaluated when fine-tuning starts (the pre-trained behaviour-cloning actor).
    - `eval_episodes`: evaluation episodes per seed (paper: 50), deterministic actions.
    - `num_seeds`, `seed`: seeds `seed, seed + 1, ...` are trained together in one compiled
      program.
    - `seed_batch`: how many of those seeds are vmapped together; groups run one after another
      inside the program (`None`: all at once). The numbers are the same either way (see
      [`seeds_block`][]); the CPU presets set 1, which is cheaper per seed on a CPU.
    - `obs_normalization`: "zscore" (paper), "bounded" or "none"; fitted on the pre-training
      data and used everywhere.
    - `pretrain_episodes`, `finetune_episodes`, `episode_length`, `data_seed`: the datasets the
      run asks for (OGBench's published sizes are 1,000 and 500 episodes of 1,001 steps; the
      validation files hold 10% more). Missing files are generated with these; existing files
      that hold anything else are refused. On ExORL tasks one exploration buffer serves both: its
      first `pretrain_episodes` episodes for pre-training, the next `finetune_episodes` for
      fine-tuning, of `episode_length` steps (ExORL's 1,000, jaco 250).
    - `exorl_algorithm`: the exploration data of ExORL tasks, the buffer
      `<dataset_dir>/<domain>/<algorithm>/buffer`: `"rnd"` (ExORL's own, which cannot be generated
      here) or a local scheme of `infom.envs.dmc.generate_exorl` (`"ou_noise"`, `"uniform"`),
      generated when missing. Ignored on OGBench tasks.
    - `eval_workers`, `eval_envs_per_worker`: environment worker processes for evaluation, and
      the environments each steps at once (episodes queue for free ones). The workers start at a
      run's first evaluation and are kept for the others, so each environment is made once.
    - `eval_episode_steps`: the evaluation episodes' time limit; `None` (the default and every
      preset) keeps OGBench's (cube-single 200 steps, ...). A shorter one makes quick checks
      quicker, but its success rates are not comparable with published ones.
    - `checkpoint_every`: blocks between checkpoints (always also at each evaluation and at
      the end).
    - `diagnose_every`: blocks between the agent's diagnostics (`diagnostics.csv`; for InFOM how
      much the model uses its intention); 0 never takes them.
    """

    pretrain_updates: int = 1_000_000
    finetune_updates: int = 500_000
    block_size: int = 1000
    eval_interval: int = 50_000
    eval_episodes: int = 50
    num_seeds: int = 1
    seed: int = 0
    seed_batch: int | None = None
    obs_normalization: NormalizerKind = "zscore"
    pretrain_episodes: int = 1000
    finetune_episodes: int = 500
    episode_length: int = 1001
    data_seed: int = 0
    exorl_algorithm: str = "ou_noise"
    eval_workers: int = 2
    eval_envs_per_worker: int = 8
    eval_episode_steps: int | None = None
    checkpoint_every: int = 5
    diagnose_every: int = 1

    def __post_init__(self):
        owner = "RunConfig"
        for name in (
            "block_size",
            "eval_interval",
            "eval_episodes",
            "num_seeds",
            "pretrain_episodes",
            "finetune_episodes",
            "eval_workers",
            "eval_envs_per_worker",
            "checkpoint_every",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")
        for name in ("eval_episode_steps", "seed_batch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{owner}.{name} must be a positive integer or None, got {value!r}")
        if not isinstance(self.episode_length, int) or self.episode_length < 2:
            raise ValueError(f"{owner}.episode_length must be an integer >= 2, got {self.episode_length!r}")
        for name in ("pretrain_updates", "finetune_updates", "seed", "data_seed", "diagnose_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{owner}.{name} must be a non-negative integer, got {value!r}")
        for name in ("pretrain_updates", "finetune_updates", "eval_interval"):
            if getattr(self, name) % self.block_size:
                raise ValueError(
                    f"{owner}.{name} ({getattr(self, name)}) must be a multiple of "
                    f"{owner}.block_size ({self.block_size})"
                )
        if not isinstance(self.exorl_algorithm, str) or not re.fullmatch(
            r"[A-Za-z0-9_.-]+", self.exorl_algorithm
        ):
            raise ValueError(
                f"{owner}.exorl_algorithm must be a directory name (letters, digits, '_', '.', '-'), "
                f"got {self.exorl_algorithm!r}"
            )
        if self.obs_normalization not in get_args(NormalizerKind):
            raise ValueError(
                f"{owner}.obs_normalization must be one of {get_args(NormalizerKind)}, "
                f"got {self.obs_normalization!r}"
            )


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named pair of method hyper-parameters and run schedule, for the tasks of one `domain`."""

    name: str
    description: str
    infom: InFOMConfig
    run: RunConfig
    domain: str

    @property
    def benchmark(self) -> str:
        """`"ogbench"` or `"exorl"`: the benchmark the preset's domain belongs to."""
        return "ogbench" if self.domain in OGBENCH_DOMAINS else "exorl"


# The paper's per-domain settings (ALGORITHM.md): latent dim, lambda_KL, expectile, alpha.
_DOMAIN_SETTINGS: dict[str, tuple[int, float, float, float]] = {
    "cheetah": (128, 0.05, 0.9, 0.3),
    "walker": (512, 0.1, 0.9, 0.3),
    "quadruped": (512, 0.005, 0.9, 0.3),
    "jaco": (512, 0.2, 0.9, 0.1),
    "cube-single": (512, 0.05, 0.95, 30.0),
    "cube-double": (128, 0.025, 0.9, 30.0),
    "scene": (128, 0.2, 0.99, 300.0),
    "puzzle-4x4": (128, 0.1, 0.95, 300.0),
}


def _paper(domain: str) -> Preset:
    latent, kl, expectile, alpha = _DOMAIN_SETTINGS[domain]
    infom = InFOMConfig(
        network=NetworkConfig(latent_dim=latent), kl_weight=kl, expectile=expectile, alpha=alpha
    )
    run = RunConfig()
    if domain in EXORL_DOMAINS:
        # The paper's code: the first 5M transitions of ExORL's RND buffer, then the next 500k.
        length = EXORL_DOMAINS[domain].episode_length
        run = RunConfig(
            pretrain_episodes=5_000_000 // length,
            finetune_episodes=500_000 // length,
            episode_length=length,
            exorl_algorithm="rnd",
        )
    return Preset(
        name=domain,
        description=f"the paper's {domain} setting: 4x512 MLPs, latent {latent}, lambda_KL {kl}, "
        f"expectile {expectile}, alpha {alpha}; 1M + 500k updates, evaluation every 50k over 50 episodes",
        infom=infom,
        run=run,
        domain=domain,
    )


def _exorl_data(domain: str, pretrain_steps: int, finetune_steps: int) -> dict[str, Any]:
    """RunConfig fields of locally generated ExORL data of about these many transitions."""
    length = EXORL_DOMAINS[domain].episode_length
    return dict(
        pretrain_episodes=pretrain_steps // length,
        finetune_episodes=finetune_steps // length,
        episode_length=length,
        exorl_algorithm="ou_noise",
    )


def _cpu(domain: str) -> Preset:
    _, kl, expectile, alpha = _DOMAIN_SETTINGS[domain]
    infom = InFOMConfig(
        network=NetworkConfig(hidden_dims=(256, 256, 256), latent_dim=128),
        kl_weight=kl,
        expectile=expectile,
        alpha=alpha,
        num_futures=8,
        # 40,000 pre-training updates at the paper's tau 0.005 are 200 target refreshes, which leave
        # about 0.99^200 = 13% of the random initial model in the occupancy; tau 0.02 makes them 800
        # (benchmarks/RESULTS.md, "A bootstrapped occupancy forgets its initialisation").
        tau=0.02,
    )
    run = RunConfig(
        pretrain_updates=40_000,
        finetune_updates=20_000,
        block_size=500,
        eval_interval=5_000,
        checkpoint_every=4,
        # OGBench: 300 + 150 play episodes. ExORL: 300k + 30k locally generated exploration
        # transitions, the paper's 10:1 split, with 10 evaluation episodes per seed.
        **(
            dict(_exorl_data(domain, 300_000, 30_000), eval_episodes=10)
            if domain in EXORL_DOMAINS
            else dict(pretrain_episodes=300, finetune_episodes=150, eval_episodes=50)
        ),
        # One seed after another: on 2 cores a vmapped seed's fine-tuning update costs 1.14x a lone
        # seed's, one at a time 0.99x (benchmarks/RESULTS.md, "Side by side with the authors' code").
        seed_batch=1,
    )
    return Preset(
        name=f"{domain}-cpu",
        description=f"a 2-core CPU budget for {domain}: the paper's {domain} loss weights with 3x256 MLPs, "
        "latent 128, 8 futures, target EMA tau 0.02; "
        + (
            "300k + 30k locally generated exploration transitions (OU noise; not ExORL's RND data), "
            "evaluation every 5k over 10 episodes"
            if domain in EXORL_DOMAINS
            else "300 + 150 play episodes, evaluation every 5k"
        )
        + "; 40k + 20k updates; seeds one after another",
        infom=infom,
        run=run,
        domain=domain,
    )


def _smoke(domain: str) -> Preset:
    _, kl, expectile, alpha = _DOMAIN_SETTINGS[domain]
    infom = InFOMConfig(
        network=NetworkConfig(hidden_dims=(64, 64), latent_dim=16),
        kl_weight=kl,
        expectile=expectile,
        alpha=alpha,
        num_futures=4,
        batch_size=64,
    )
    run = RunConfig(
        pretrain_updates=200,
        finetune_updates=200,
        block_size=50,
        eval_interval=100,
        eval_episodes=4,
        pretrain_episodes=4,
        finetune_episodes=2,
        checkpoint_every=1,
        # ExORL: short local exploration episodes and evaluation episodes.
        **(
            dict(episode_length=100, exorl_algorithm="ou_noise", eval_episode_steps=100)
            if domain in EXORL_DOMAINS
            else {}
        ),
    )
    return Preset(
        name=f"{domain}-smoke",
        description=f"a minutes-long smoke test of the whole pipeline on {domain} (not a meaningful result)",
        infom=infom,
        run=run,
        domain=domain,
    )


PRESETS: dict[str, Preset] = {}
for _domain in _DOMAIN_SETTINGS:
    PRESETS[_domain] = _paper(_domain)
for _domain in (*OGBENCH_DOMAINS, *EXORL_DOMAINS):
    PRESETS[f"{_domain}-cpu"] = _cpu(_domain)
    PRESETS[f"{_domain}-smoke"] = _smoke(_domain)


def get_preset(name: str) -> Preset:
    """The preset called `name` (see `PRESETS`), or a `ValueError` listing the names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}") from None


def default_preset_name(env_name: str) -> str:
    """The CPU-budget preset of the domain an OGBench or ExORL task name belongs to."""
    from ..envs.dmc._names import TASK_NAMES

    if env_name in TASK_NAMES:
        return f"{env_name.split('_', 1)[0]}-cpu"
    for domain in sorted(OGBENCH_DOMAINS, key=len, reverse=True):
        if env_name.startswith(domain + "-"):
            return f"{domain}-cpu"
    raise ValueError(
        f"no preset for {env_name!r}: expected an OGBench task of {', '.join(OGBENCH_DOMAINS)} or an ExORL "
        f"task ({', '.join(TASK_NAMES)})"
    )


# --------------------------------------------------------------------------- overrides


def _solver_classes() -> dict[str, type]:
    """diffrax's fixed-step explicit ODE solvers by lower-case class name ("euler", "midpoint", ...)."""
    return {
        name.lower(): cls
        for name, cls in vars(diffrax).items()
        if isinstance(cls, type)
        and issubclass(cls, diffrax.AbstractSolver)
        and not getattr(cls, "__abstractmethods__", None)
        and name.lower() in _SOLVER_NAMES
    }


# The solvers the command line and `config.json` can name: explicit Runge-Kutta methods, which
# `solve_flow` runs with a constant step size.
_SOLVER_NAMES = ("euler", "midpoint", "heun", "ralston", "bosh3", "tsit5", "dopri5", "dopri8")


def _parse_value(text: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is diffrax.AbstractSolver:
        solvers = _solver_classes()
        if text.lower() not in solvers:
            raise ValueError(f"{key} must be one of {tuple(solvers)} (a diffrax solver), got {text!r}")
        return solvers[text.lower()]()
    if annotation is Callable or origin is collections.abc.Callable:
        if text not in HEAD_AGGREGATIONS:
            raise ValueError(f"{key} must be one of {tuple(HEAD_AGGREGATIONS)}, got {text!r}")
        return HEAD_AGGREGATIONS[text]
    if origin is Literal:
        choices = get_args(annotation)
        if text not in choices:
            raise ValueError(f"{key} must be one of {choices}, got {text!r}")
        return text
    if origin in (typing.Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(get_args(annotation)) == 2:  # `X | None`
            return None if text.lower() in ("none", "null") else _parse_value(text, members[0], key)
        raise ValueError(f"{key} cannot be set from the command line")
    if annotation is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} must be true or false, got {text!r}")
    if annotation is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"{key} must be an integer, got {text!r}") from None
    if annotation is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {text!r}") from None
    if origin is tuple:
        try:
            return tuple(int(part) for part in text.replace("x", ",").split(",") if part)
        except ValueError:
            raise ValueError(f"{key} must be comma-separated integers, got {text!r}") from None
    raise ValueError(f"{key} cannot be set from the command line")


def _is_config(hint: Any) -> bool:
    """A nested config (a dataclass of settings), not an object a field holds (a diffrax solver is a
    dataclass too)."""
    return dataclasses.is_dataclass(hint) and not (
        isinstance(hint, type) and issubclass(hint, diffrax.AbstractSolver)
    )


def _fields(cls: type) -> dict[str, Any]:
    # The fields' own annotations (`typing.get_type_hints` returns nothing for classes marked
    # `typing.no_type_check`, as the agents' configs are).
    return {f.name: f.type for f in dataclasses.fields(cls)}


def _config_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, hint in _fields(cls).items():
        if _is_config(hint):
            keys += _config_keys(hint, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def override_keys(config_type: type = InFOMConfig) -> list[str]:
    """Every `key` accepted by [`apply_overrides`][] for a config of `config_type` (nested
    dataclass fields as `network.hidden_dims`) and a [`RunConfig`][]."""
    return _config_keys(config_type) + list(_fields(RunConfig))


def _replace(config: Any, changes: dict[str, str], owner_keys: list[str]) -> Any:
    """`config` with `changes` (`dotted.key -> text`) parsed and applied, nested dataclasses too."""
    fields = _fields(type(config))
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, str]] = {}
    for key, text in changes.items():
        head, dot, rest = key.partition(".")
        if dot and head in fields and _is_config(fields[head]):
            nested.setdefault(head, {})[rest] = text
        elif not dot and head in fields and not _is_config(fields[head]):
            direct[head] = _parse_value(text, fields[head], key)
        else:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(owner_keys)}")
    for head, sub in nested.items():
        direct[head] = _replace(getattr(config, head), sub, owner_keys)
    return dataclasses.replace(config, **direct)


def apply_overrides(config: Any, run: RunConfig, overrides: list[str]) -> tuple[Any, RunConfig]:
    """Applies `key=value` overrides (e.g. `alpha=30`, `network.hidden_dims=256,256`,
    `pretrain_updates=1000`) to an agent's config (any frozen dataclass, e.g. [`InFOMConfig`][])
    and a run schedule; the new configs validate themselves."""
    known = override_keys(type(config))
    run_fields = _fields(RunConfig)
    config_changes: dict[str, str] = {}
    run_changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"override {item!r} must have the form key=value")
        if key in run_fields and key not in known[: len(known) - len(run_fields)]:
            run_changes[key] = _parse_value(text.strip(), run_fields[key], key)
        else:
            config_changes[key] = text.strip()
    return _replace(config, config_changes, known), dataclasses.replace(run, **run_changes)


def _from_dict(cls: type, record: dict[str, Any]) -> Any:
    values = {}
    for name, hint in _fields(cls).items():
        if name not in record:
            continue  # a field added since the record was written keeps its default
        value = record[name]
        if hint is diffrax.AbstractSolver or hint is Callable:
            value = _parse_value(value, hint, f"{cls.__name__}.{name}")
        elif _is_config(hint):
            value = _from_dict(hint, value)
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def _to_record(config: Any) -> dict[str, Any]:
    """A config's fields as JSON values: solvers and head aggregations by their names."""
    record = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, diffrax.AbstractSolver):
            name = type(value).__name__.lower()
            if name not in _solver_classes() or value != _solver_classes()[name]():
                raise ValueError(
                    f"{type(config).__name__}.{field.name}={value!r} cannot be recorded in config.json: "
                    f"the run directory names its solver as one of {tuple(_solver_classes())}"
                )
            value = name
        elif field.type is Callable:
            names = [name for name, function in HEAD_AGGREGATIONS.items() if function is value]
            if not names:
                raise ValueError(
                    f"{type(config).__name__}.{field.name}={value!r} cannot be recorded in config.json: "
                    f"the run directory names it as one of {tuple(HEAD_AGGREGATIONS)}"
                )
            value = names[0]
        elif dataclasses.is_dataclass(value):
            value = _to_record(value)
        elif isinstance(value, tuple):
            value = list(value)
        record[field.name] = value
    return record


def config_to_dict(agent_name: str, config: Any, run: RunConfig) -> dict[str, Any]:
    """A JSON-serialisable record of an agent's name, its config and the run schedule."""
    return {"agent": agent_name, "config": _to_record(config), "run": dataclasses.asdict(run)}


def config_from_dict(record: dict[str, Any], config_type: type) -> tuple[Any, RunConfig]:
    """The inverse of `config_to_dict` for a config of `config_type`."""
    return _from_dict(config_type, record["config"]), _from_dict(RunConfig, record["run"])
