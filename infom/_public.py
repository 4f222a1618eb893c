"""The public API of `infom`, imported on first use by `infom/__init__.py`.

Every name here is re-exported as `infom.NAME`; nothing else is public. This module is only
ever imported after `infom/__init__.py` has installed the jaxtyping import hook, so every
function below is shape- and dtype-checked (jaxtyping + beartype, at trace time).
"""

from ._config import InFOMConfig as InFOMConfig, NetworkConfig as NetworkConfig
from ._diagnostics import IntentionUsage as IntentionUsage, intention_usage as intention_usage
from ._heads import mean_heads as mean_heads, min_heads as min_heads
from ._losses import (
    ActorAux as ActorAux,
    FlowLossAux as FlowLossAux,
    Intention as Intention,
    RegressionAux as RegressionAux,
    SamplerDistillAux as SamplerDistillAux,
    actor_loss as actor_loss,
    bc_loss as bc_loss,
    critic_values as critic_values,
    ema_update as ema_update,
    encode as encode,
    expectile_distill as expectile_distill,
    expectile_loss as expectile_loss,
    frozen as frozen,
    gaussian_log_prob as gaussian_log_prob,
    kl_to_prior as kl_to_prior,
    min_q as min_q,
    reset_target as reset_target,
    reward_loss as reward_loss,
    sampler_distill_loss as sampler_distill_loss,
    sarsa_flow_loss as sarsa_flow_loss,
)
from ._networks import (
    MLP as MLP,
    AbstractVectorField as AbstractVectorField,
    Actor as Actor,
    Critic as Critic,
    IntentionEncoder as IntentionEncoder,
    Models as Models,
    RewardModel as RewardModel,
    VectorField as VectorField,
    init_models as init_models,
)
from ._sampling import (
    AbstractNoise as AbstractNoise,
    AntitheticNoise as AntitheticNoise,
    ClipToBox as ClipToBox,
    GaussianNoise as GaussianNoise,
    LatinHypercubeNoise as LatinHypercubeNoise,
    field_conditioning as field_conditioning,
    mc_q as mc_q,
    sample_future as sample_future,
    solve_flow as solve_flow,
    standard_gpi as standard_gpi,
)
from ._types import Batch as Batch
from .agents import AGENTS as AGENTS
from .agents._base import Agent as Agent
from .agents.bc import BCConfig as BCConfig
from .agents.infom import (
    FinetuneMetrics as FinetuneMetrics,
    IntentionDiagnostics as IntentionDiagnostics,
    PretrainMetrics as PretrainMetrics,
    finetune_block as finetune_block,
    finetune_loss as finetune_loss,
    finetune_step as finetune_step,
    init_train_state as init_train_state,
    mc_q_targets as mc_q_targets,
    policy_actions as policy_actions,
    pretrain_block as pretrain_block,
    pretrain_loss as pretrain_loss,
    pretrain_step as pretrain_step,
    start_finetuning as start_finetuning,
    student_loss as student_loss,
)
from .agents.iql import IQLConfig as IQLConfig
from .agents.rebrac import ReBRACConfig as ReBRACConfig
from .data._dataset import (
    Dataset as Dataset,
    DatasetError as DatasetError,
    Normalizer as Normalizer,
    episode_bounds as episode_bounds,
    fit_normalizer as fit_normalizer,
    load_normalizer as load_normalizer,
    normalize_dataset as normalize_dataset,
    sample_batch as sample_batch,
    sample_batch_with_context as sample_batch_with_context,
    save_normalizer as save_normalizer,
)
from .data._probes import (
    LinearGaussianProbe as LinearGaussianProbe,
    LinearSystemProbe as LinearSystemProbe,
    TwoIntentionProbe as TwoIntentionProbe,
    sliced_wasserstein as sliced_wasserstein,
    wasserstein_1d as wasserstein_1d,
)
from .envs.gymnax._adapter import (
    collect_gymnax_dataset as collect_gymnax_dataset,
    evaluate_gymnax as evaluate_gymnax,
)
from .envs.ogbench._datasets import (
    DatasetIdentity as DatasetIdentity,
    DatasetMismatchError as DatasetMismatchError,
    DatasetNotFoundError as DatasetNotFoundError,
    DatasetSummary as DatasetSummary,
    GenerationInterrupted as GenerationInterrupted,
    GenerationSummary as GenerationSummary,
    OGBenchDatasets as OGBenchDatasets,
    dataset_paths as dataset_paths,
    generate_dataset as generate_dataset,
    load_ogbench as load_ogbench,
    validate_ogbench_file as validate_ogbench_file,
)
from .envs.ogbench._evaluation import (
    CubeOraclePolicy as CubeOraclePolicy,
    EnvPolicy as EnvPolicy,
    EvalResult as EvalResult,
    EvaluationPool as EvaluationPool,
    eval_env_name as eval_env_name,
    evaluate_ogbench as evaluate_ogbench,
    evaluate_ogbench_policies as evaluate_ogbench_policies,
)
from .run._demo import (
    PENDULUM_DEMO as PENDULUM_DEMO,
    PENDULUM_DEMO_QUICK as PENDULUM_DEMO_QUICK,
    DemoDiagnostics as DemoDiagnostics,
    DemoResult as DemoResult,
    PendulumDemoConfig as PendulumDemoConfig,
    collect_pendulum_data as collect_pendulum_data,
    format_demo_result as format_demo_result,
    pendulum_behaviours as pendulum_behaviours,
    pendulum_state_reward as pendulum_state_reward,
    run_pendulum_demo as run_pendulum_demo,
)
from .run._presets import (
    PRESETS as PRESETS,
    Preset as Preset,
    RunConfig as RunConfig,
    apply_overrides as apply_overrides,
    get_preset as get_preset,
)
from .run._run import (
    NonFiniteLossError as NonFiniteLossError,
    RunData as RunData,
    RunInterrupted as RunInterrupted,
    RunResult as RunResult,
    evaluate_run as evaluate_run,
    load_run as load_run,
    load_task_data as load_task_data,
    make_policy as make_policy,
    train as train,
)
from .training._checkpoints import CheckpointError as CheckpointError
from .training._sharding import (
    dataset_bytes as dataset_bytes,
    initialize_distributed as initialize_distributed,
    make_mesh as make_mesh,
    place_replicated as place_replicated,
    place_states as place_states,
    to_host as to_host,
)
from .training._train import (
    TrainState as TrainState,
    actor_schedule as actor_schedule,
    agent_actions as agent_actions,
    begin_finetuning as begin_finetuning,
    init_state as init_state,
    make_optimizer as make_optimizer,
    seeds_block as seeds_block,
    train_block as train_block,
    train_step as train_step,
)
