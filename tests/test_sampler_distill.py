"""A distilled student sampler: `sampler_distill_loss` and `InFOMConfig.student_steps`."""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from conftest import tree_allclose
from jaxtyping import Array, Float

import infom


OBS, ACT, LATENT = 3, 2, 2


class _StraightField(infom.AbstractVectorField):
    """`v(t, x, s, a, z) = W [s, a, z]`: constant along every trajectory (straight lines)."""

    weight: Float[Array, "obs cond"]

    def condition(self, observation, action, intention):
        return self.weight @ jnp.concatenate([observation, action, intention])

    def velocity(self, t, x, conditioning):
        return conditioning


class _AffineField(infom.AbstractVectorField):
    """`v(t, x, s, a, z) = A x + b + t c + W [s, a, z]`: its Euler maps are affine in `x_0`."""

    a: Float[Array, "obs obs"]
    b: Float[Array, " obs"]
    c: Float[Array, " obs"]
    weight: Float[Array, "obs cond"]

    def condition(self, observation, action, intention):
        return self.weight @ jnp.concatenate([observation, action, intention])

    def velocity(self, t, x, conditioning):
        return self.a @ x + self.b + jnp.asarray(t, x.dtype) * self.c + conditioning


def _conditioning(key, n):
    s_key, a_key, z_key = jr.split(key, 3)
    return jr.normal(s_key, (n, OBS)), jr.normal(a_key, (n, ACT)), jr.normal(z_key, (n, LATENT))


def test_distill_loss_is_zero_with_zero_gradient_for_a_student_equal_to_its_teacher():
    field = infom.VectorField(OBS, ACT, LATENT, (16, 16), key=jr.key(0))
    s, a, z = _conditioning(jr.key(1), 32)
    noise = jr.normal(jr.key(2), (4, 32, OBS))
    loss_fn = eqx.filter_value_and_grad(
        lambda student: infom.sampler_distill_loss(
            student, field, noise, s, a, z, student_steps=3, teacher_steps=3
        )[0]
    )
    loss, grads = loss_fn(field)
    assert float(loss) == 0.0
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(eqx.filter(grads, eqx.is_array)))
    # A student with fewer steps than its teacher is not exact for a curved field.
    loss, _ = infom.sampler_distill_loss(field, field, noise, s, a, z, student_steps=1, teacher_steps=3)
    assert float(loss) > 0.0


def test_a_straight_flow_is_its_own_exact_one_step_student():
    field = _StraightField(jr.normal(jr.key(0), (OBS, OBS + ACT + LATENT)))
    s, a, z = _conditioning(jr.key(1), 64)
    noise = jr.normal(jr.key(2), (64, OBS))
    loss, aux = infom.sampler_distill_loss(field, field, noise, s, a, z, student_steps=1, teacher_steps=10)
    assert float(loss) < 1e-10 and float(aux.distance) < 1e-5


def test_distillation_recovers_the_ten_step_map_of_an_affine_field_and_never_moves_the_teacher():
    """The teacher's 10-step Euler map of an affine field is `M x_0 + m(s, a, z)`; an affine student's
    one-step map `(I + A') x_0 + b' + W' [s, a, z]` can equal it, and Adam on the loss finds it."""
    keys = jr.split(jr.key(0), 4)
    cond = OBS + ACT + LATENT
    teacher = _AffineField(
        0.5 * jr.normal(keys[0], (OBS, OBS)),
        jr.normal(keys[1], (OBS,)),
        jr.normal(keys[2], (OBS,)),
        0.5 * jr.normal(keys[3], (OBS, cond)),
    )
    student = _AffineField(jnp.zeros((OBS, OBS)), jnp.zeros(OBS), jnp.zeros(OBS), jnp.zeros((OBS, cond)))
    optim = optax.adam(3e-2)

    def loss(student, teacher, key):
        noise_key, cond_key = jr.split(key)
        s, a, z = _conditioning(cond_key, 128)
        noise = jr.normal(noise_key, (128, OBS))
        return infom.sampler_distill_loss(
            student, teacher, noise, s, a, z, student_steps=1, teacher_steps=10
        )[0]

    teacher_grads = eqx.filter_grad(lambda t: loss(student, t, jr.key(9)))(teacher)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(teacher_grads))

    @eqx.filter_jit
    def step(student, opt_state, key):
        grads = eqx.filter_grad(loss)(student, teacher, key)
        with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
            updates, opt_state = optim.update(grads, opt_state)
        return eqx.apply_updates(student, updates), opt_state

    opt_state = optim.init(student)
    for key in jr.split(jr.key(1), 1500):
        student, opt_state = step(student, opt_state, key)
    s, a, z = _conditioning(jr.key(2), 256)
    noise = jr.normal(jr.key(3), (256, OBS))
    want = infom.solve_flow(teacher, noise, s, a, z, num_steps=10)
    got = infom.solve_flow(student, noise, s, a, z, num_steps=1)
    scale = float(jnp.std(want))
    np.testing.assert_allclose(got, want, atol=2e-3 * scale)


@pytest.mark.parametrize(("field", "value"), [("student_steps", 0), ("student_futures", 0)])
def test_student_options_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        infom.InFOMConfig(**{field: value})


# --------------------------------------------------------------------------- in the agent

CONFIG = infom.InFOMConfig(
    network=infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=LATENT),
    batch_size=8,
    num_futures=4,
    num_flow_steps=3,
)
STUDENT = dataclasses.replace(CONFIG, student_steps=3)


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(0)
    n = 200
    obs = np.cumsum(rng.normal(size=(n, OBS)), axis=0).astype(np.float32) * 0.1
    actions = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    terminals = np.zeros(n, bool)
    terminals[99::100] = True
    raw = infom.Dataset.from_arrays(obs, actions, terminals=terminals, rewards=-np.abs(obs[:, 0]))
    normalizer = infom.fit_normalizer(raw.observations)
    return infom.normalize_dataset(raw, normalizer), normalizer


def _states(dataset):
    optim = infom.make_optimizer(CONFIG)
    reference = infom.init_train_state(OBS, ACT, dataset[1], CONFIG, optim, key=jr.key(0))
    student = infom.init_train_state(OBS, ACT, dataset[1], STUDENT, optim, key=jr.key(0))
    return optim, reference, student


def test_the_paper_config_has_no_student_and_the_student_is_otherwise_the_same_networks(dataset):
    _, reference, student = _states(dataset)
    assert reference.models.student is None
    assert tree_allclose(student.models.student, student.models.field, rtol=0, atol=0)
    without = eqx.tree_at(lambda m: m.student, student.models, None)
    assert tree_allclose(without, reference.models, rtol=0, atol=0)


def test_the_student_changes_nothing_but_itself_and_learns_only_while_fine_tuning(dataset):
    """Pre-training leaves the student as it was; fine-tuning starts it as a copy of the field, and
    then, with as many steps as the critic's sampler, it draws the same futures: one fine-tuning
    update gives every other network exactly the reference's update (the same state without a
    student), and leaves the student, whose loss is 0, where it was."""
    optim, _, student = _states(dataset)
    batch = infom.sample_batch(dataset[0], jr.key(1), CONFIG.batch_size)
    pretrained, _ = eqx.filter_jit(infom.pretrain_step)(
        student, batch, key=jr.key(2), config=STUDENT, optim=optim
    )
    assert tree_allclose(pretrained.models.student, student.models.student, rtol=0, atol=0)
    assert not tree_allclose(pretrained.models.field, student.models.field, rtol=0, atol=0)

    student = infom.start_finetuning(pretrained)
    assert tree_allclose(student.models.student, student.models.field, rtol=0, atol=0)
    # The same state without the student (and without its optimiser moments, all zero so far).
    reference = eqx.tree_at(
        lambda s: (s.models.student, s.opt_state[0].mu.student, s.opt_state[0].nu.student),
        student,
        (None, None, None),
    )
    finetune = eqx.filter_jit(infom.finetune_step)
    new_reference, reference_metrics = finetune(
        reference, batch, key=jr.key(3), config=CONFIG, optim=optim, update_actor=True
    )
    new_student, metrics = finetune(
        student, batch, key=jr.key(3), config=STUDENT, optim=optim, update_actor=True
    )
    others = eqx.tree_at(lambda m: m.student, new_student.models, None)
    assert tree_allclose(others, new_reference.models, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics.q_target_mean, reference_metrics.q_target_mean, rtol=1e-6)
    assert float(metrics.student_loss) == 0.0 and float(reference_metrics.student_loss) == 0.0
    assert tree_allclose(new_student.models.student, student.models.student, rtol=0, atol=0)

    # With fewer steps than its teacher, the student has something to learn.
    one_step = dataclasses.replace(STUDENT, student_steps=1)
    loss, distance = infom.student_loss(student.models, batch, key=jr.key(4), config=one_step)
    assert float(loss) > 0.0 and float(distance) > 0.0


def test_the_critic_samples_from_the_student_with_its_own_steps(dataset):
    """`mc_q_targets` with a student equals `mc_q` of `sample_future` from the student field with
    `student_steps` Euler steps, whatever `critic_solver` the teacher uses."""
    _, _, student = _states(dataset)
    changed = eqx.tree_at(
        lambda m: m.student, student.models, jax.tree.map(lambda x: 1.1 * x, student.models.field)
    )
    config = dataclasses.replace(STUDENT, student_steps=2, critic_solver=diffrax.Midpoint())
    batch = infom.sample_batch(dataset[0], jr.key(1), CONFIG.batch_size)
    got = infom.mc_q_targets(changed, batch, key=jr.key(4), config=config)
    z_key, future_key = jr.split(jr.key(4))
    z = jr.normal(z_key, (CONFIG.batch_size, LATENT))
    futures = infom.sample_future(
        changed.student,
        batch.observations,
        batch.actions,
        z,
        key=future_key,
        shape=(CONFIG.num_futures, CONFIG.batch_size),
        num_steps=2,
    )
    np.testing.assert_allclose(got, infom.mc_q(changed.reward, futures, gamma=config.gamma), rtol=1e-5)


def test_student_steps_are_set_and_recorded_from_the_command_line():
    from infom.run._presets import apply_overrides, config_from_dict, config_to_dict

    config, run = apply_overrides(CONFIG, infom.RunConfig(), ["student_steps=1", "student_futures=2"])
    assert config.student_steps == 1 and config.student_futures == 2
    restored, _ = config_from_dict(config_to_dict("infom", config, run), infom.InFOMConfig)
    assert restored == config
    config, _ = apply_overrides(config, run, ["student_steps=none"])
    assert config.student_steps is None
