"""White-box attacks: FGSM and PGD (L-inf or L2, random start, restarts), pure and jittable.

Every attack is written for ONE example and vmapped over the batch, with one key per example, so
attacking a batch is exactly attacking each example alone (a test checks it). The model enters as
a per-example loss `loss_fn(params, x, y) -> scalar` (see `cross_entropy_loss`), so nothing here
knows the class count or the architecture. PGD's steps are a `lax.fori_loop` and its restarts a
`lax.scan`: the whole attack traces once and runs inside a jitted training step.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from dl_jax.losses import cross_entropy

ExampleLoss = Callable[[object, jax.Array, jax.Array], jax.Array]
"""loss_fn(params, x, y) -> scalar loss of one example x (no batch axis) with label y."""

NORMS = ("linf", "l2")
PIXEL_RANGE = (0.0, 1.0)


def cross_entropy_loss(logits_fn: Callable) -> ExampleLoss:
  """The per-example cross-entropy of `logits_fn(params, x_batch) -> logits [batch, classes]`."""

  def loss_fn(params, x, y):
    return cross_entropy(logits_fn(params, x[None]), y[None])[0]

  return loss_fn


def input_gradients(loss_fn: ExampleLoss, params, x: jax.Array, y: jax.Array) -> jax.Array:
  """d loss / d x for every example of the batch: vmap(grad) of the per-example loss."""
  return jax.vmap(jax.grad(loss_fn, argnums=1), in_axes=(None, 0, 0))(params, x, y)


def check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ValueError(f"unknown attack norm {norm!r}; choose one of {list(NORMS)}")


def _l2(v: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(v ** 2) + 1e-12)


def ascent_direction(grad: jax.Array, norm: str) -> jax.Array:
  """The steepest-ascent step of unit size under `norm`: sign(g) for L-inf, g/|g| for L2."""
  return jnp.sign(grad) if norm == "linf" else grad / _l2(grad)


def project(delta: jax.Array, eps, norm: str) -> jax.Array:
  """The nearest perturbation to `delta` inside the eps-ball of `norm`."""
  if norm == "linf":
    return jnp.clip(delta, -eps, eps)
  return delta * jnp.minimum(1.0, eps / _l2(delta))


def clip_to_range(x_clean: jax.Array, delta: jax.Array, pixel_range=PIXEL_RANGE) -> jax.Array:
  """The perturbed input x + delta, clipped to the valid pixel range."""
  return jnp.clip(x_clean + delta, *pixel_range)


def random_perturbation(key: jax.Array, shape, eps, norm: str) -> jax.Array:
  """Uniform in the L-inf box; for L2, a uniform direction with radius eps * U^(1/d) (uniform in
  the ball)."""
  if norm == "linf":
    return jax.random.uniform(key, shape, minval=-eps, maxval=eps)
  direction_key, radius_key = jax.random.split(key)
  direction = jax.random.normal(direction_key, shape)
  radius = eps * jax.random.uniform(radius_key) ** (1.0 / direction.size)
  return radius * direction / _l2(direction)


def fgsm_example(loss_fn: ExampleLoss, params, x, y, key, *, eps, step_size=None,
                 random_start: bool = False, norm: str = "linf", pixel_range=PIXEL_RANGE):
  """One signed-gradient step (Goodfellow et al. 2015) of size `step_size` (default eps), from x
  or from a random point of the eps-ball (Wong et al. 2020), projected back into the ball."""
  check_norm(norm)
  step_size = eps if step_size is None else step_size
  delta = random_perturbation(key, x.shape, eps, norm) if random_start else jnp.zeros_like(x)
  start = clip_to_range(x, delta, pixel_range)
  step = step_size * ascent_direction(jax.grad(loss_fn, argnums=1)(params, start, y), norm)
  return clip_to_range(x, project(start - x + step, eps, norm), pixel_range)


def pgd_example(loss_fn: ExampleLoss, params, x, y, key, *, eps, step_size, steps: int,
                random_start: bool = True, norm: str = "linf", pixel_range=PIXEL_RANGE):
  """Projected gradient ascent (Madry et al. 2018): `steps` ascent steps of `step_size` from a
  random point of the eps-ball (or from x), each projected onto the ball and the pixel range."""
  check_norm(norm)
  delta = random_perturbation(key, x.shape, eps, norm) if random_start else jnp.zeros_like(x)
  x_start = clip_to_range(x, delta, pixel_range)
  grad_fn = jax.grad(loss_fn, argnums=1)

  def step(_, x_adv):
    ascent = step_size * ascent_direction(grad_fn(params, x_adv, y), norm)
    return clip_to_range(x, project(x_adv + ascent - x, eps, norm), pixel_range)

  return jax.lax.fori_loop(0, steps, step, x_start)


def pgd_restarts_example(loss_fn: ExampleLoss, params, x, y, key, *, restarts: int, **pgd_options):
  """PGD from `restarts` random starts; keeps the perturbed input with the highest loss."""
  if restarts < 1:
    raise ValueError(f"restarts must be >= 1, got {restarts}")

  def attempt(best, restart_key):
    x_adv = pgd_example(loss_fn, params, x, y, restart_key, **pgd_options)
    loss = loss_fn(params, x_adv, y)
    better = loss > best[1]
    return (jnp.where(better, x_adv, best[0]), jnp.where(better, loss, best[1])), None

  (x_adv, _), _ = jax.lax.scan(attempt, (x, -jnp.inf), jax.random.split(key, restarts))
  return x_adv


def example_keys(key: jax.Array, batch: int) -> jax.Array:
  """One key per example: split(key, batch), or `key` itself when it already holds one per
  example (shape [batch, 2]), so a caller can make an example's attack independent of its batch."""
  if key.ndim == 2:
    if key.shape[0] != batch:
      raise ValueError(f"got {key.shape[0]} per-example keys for a batch of {batch}; pass one "
                       "key, or one per example.")
    return key
  return jax.random.split(key, batch)


def batched(attack_example: Callable) -> Callable:
  """attack(loss_fn, params, x, y, key, **options) on a batch: `attack_example` vmapped, with
  example i attacked under `example_keys(key, batch)[i]`. Options are shared by the batch."""

  def attack(loss_fn, params, x, y, key, **options):
    if x.shape[0] != y.shape[0]:
      raise ValueError(f"an attack got {x.shape[0]} inputs but {y.shape[0]} labels; pass one "
                       "label per example.")
    one = lambda xi, yi, ki: attack_example(loss_fn, params, xi, yi, ki, **options)
    return jax.vmap(one)(x, y, example_keys(key, x.shape[0]))

  attack.__doc__ = f"Batched: {attack_example.__doc__}"
  return attack


fgsm = batched(fgsm_example)
pgd = batched(pgd_example)
pgd_restarts = batched(pgd_restarts_example)


def uniform_noise(x: jax.Array, key: jax.Array, *, eps, pixel_range=PIXEL_RANGE) -> jax.Array:
  """Random uniform noise in the L-inf eps-box, clipped to the pixel range: the baseline that
  shows an attack's damage comes from its direction, not its size."""
  return clip_to_range(x, jax.random.uniform(key, x.shape, minval=-eps, maxval=eps), pixel_range)
