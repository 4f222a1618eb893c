"""ExORL's DeepMind Control benchmark: the 16 tasks, ExORL's episode format, a local exploration-data
generator and batched parallel evaluation.

ExORL (Yarats et al., 2022) is the state-based half of InFOM's benchmark: walker (stand, walk, run,
flip), cheetah (run, run_backward, walk, walk_backward), quadruped (jump, run, stand, walk) and jaco
(reach_top_left, reach_top_right, reach_bottom_left, reach_bottom_right).

- [`make_env`][] builds a task (dm_control's suite, URLB's custom tasks reimplemented on
  dm_control's classes, jaco on dm_control's manipulation library); [`task_reward`][] recomputes
  its reward from saved physics states, as ExORL relabels its data.
- [`write_episode`][], [`read_episode`][] and [`load_exorl`][] handle ExORL's per-episode `.npz`
  files; [`to_dataset`][] turns them into an `infom.Dataset`.
- [`generate_exorl`][] collects local reward-free data in that format (a cheap substitute for
  ExORL's RND data: results are not comparable with the paper's).
- [`evaluate_dmc`][] rolls a batched policy out in worker processes.

dm-control (`>=1.0.52` with `mujoco>=4.0.1`) and tqdm are optional dependencies
(`pip install infom[envs]`), imported only when needed.
"""

from ._evaluation import (
    DMCEvalResult as DMCEvalResult,
    DMCEvaluationPool as DMCEvaluationPool,
    evaluate_dmc as evaluate_dmc,
)
from ._format import (
    EPISODE_KEYS as EPISODE_KEYS,
    ExorlData as ExorlData,
    ExorlEpisode as ExorlEpisode,
    buffer_dir as buffer_dir,
    episode_filename as episode_filename,
    load_exorl as load_exorl,
    read_episode as read_episode,
    to_dataset as to_dataset,
    write_episode as write_episode,
)
from ._generate import (
    COLLECTION_TASKS as COLLECTION_TASKS,
    AbstractExplorer as AbstractExplorer,
    GenerationSummary as GenerationSummary,
    OUNoiseExplorer as OUNoiseExplorer,
    UniformExplorer as UniformExplorer,
    generate_exorl as generate_exorl,
)
from ._tasks import (
    DOMAINS as DOMAINS,
    EXORL_TASKS as EXORL_TASKS,
    TASK_NAMES as TASK_NAMES,
    DMCEnv as DMCEnv,
    DMCStep as DMCStep,
    DomainSpec as DomainSpec,
    make_env as make_env,
    task_reward as task_reward,
)
