"""Accuracy under attack, with restarts: an example counts as robust only if every restart fails.

Each restart attacks only the examples that are still classified correctly (the others are already
broken), in fixed-size batches so the attack compiles once. Example i's key in restart r is
fold_in(fold_in(key, r), i): its attack does not depend on which batch it lands in.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.adversarial.attacks import cross_entropy_loss, fgsm, pgd, uniform_noise

BatchAttack = Callable[[object, jax.Array, jax.Array, jax.Array], jax.Array]
"""attack(params, x, y, keys) -> adversarial x, with one key per example (jitted by the caller)."""


def per_example_keys(key: jax.Array, indices: np.ndarray) -> jax.Array:
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices))


def make_predict(logits_fn: Callable) -> Callable:
  """predict(params, x) -> predicted labels, jitted."""
  return jax.jit(lambda params, x: jnp.argmax(logits_fn(params, x), axis=-1))


def correct_under(attack: BatchAttack, predict: Callable, params, x: np.ndarray, y: np.ndarray,
                  indices: np.ndarray, key: jax.Array, batch_size: int) -> np.ndarray:
  """For the examples at `indices`: is the attacked input still classified correctly?"""
  keep = np.zeros(len(indices), bool)
  for start in range(0, len(indices), batch_size):
    chunk = indices[start:start + batch_size]
    padded = np.concatenate([chunk, np.full(batch_size - len(chunk), chunk[0])])  # one shape
    x_adv = attack(params, x[padded], y[padded], per_example_keys(key, padded))
    keep[start:start + len(chunk)] = np.asarray(predict(params, x_adv) == y[padded])[:len(chunk)]
  return keep


def accuracy_under_attack(attack: BatchAttack, predict: Callable, params, x: np.ndarray,
                          y: np.ndarray, key: jax.Array, restarts: int = 1,
                          batch_size: int = 500) -> list[float]:
  """Accuracy after 1, 2, ..., `restarts` restarts (non-increasing by construction). Every call
  attacks batches of exactly `batch_size` (padded), so one compilation serves every split."""
  if restarts < 1:
    raise ValueError(f"restarts must be >= 1, got {restarts}")
  robust, curve = np.arange(len(y)), []
  for restart in range(restarts):
    if len(robust):
      keep = correct_under(attack, predict, params, x, y, robust, jax.random.fold_in(key, restart),
                           batch_size)
      robust = robust[keep]
    curve.append(len(robust) / len(y))
  return curve


def attack_suite(logits_fn: Callable, relative_step: float, pgd_steps) -> dict[str, Callable]:
  """Jitted attack(params, x, y, keys, eps) by name: 'noise' (uniform in the L-inf ball), 'fgsm',
  and 'pgd<k>' for each k in `pgd_steps` (step relative_step * eps / k, random start). eps is
  traced, so every radius reuses one compilation."""
  loss_fn = cross_entropy_loss(logits_fn)

  def pgd_k(steps):
    return jax.jit(lambda params, x, y, keys, eps: pgd(
        loss_fn, params, x, y, keys, eps=eps, step_size=relative_step * eps / steps, steps=steps))

  return {
      "noise": jax.jit(lambda params, x, y, keys, eps: jax.vmap(
          lambda xi, ki: uniform_noise(xi, ki, eps=eps))(x, keys)),
      "fgsm": jax.jit(lambda params, x, y, keys, eps: fgsm(loss_fn, params, x, y, keys, eps=eps)),
      **{f"pgd{k}": pgd_k(k) for k in pgd_steps},
  }
