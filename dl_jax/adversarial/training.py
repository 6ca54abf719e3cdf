"""Adversarial training: the classification loss on inputs an attack made inside the train step.

`adversarial_loss(model, attack)` is a loss_fn for `dl_jax.train.make_train_step` (or the seeds
machinery) with the 'attack' stream. The attack runs on the current parameters, in evaluation mode,
and its result is a constant for the update (Madry et al. 2018's inner maximisation). The radius
eps rides in the batch (`batch['eps']`); `with_eps_ramp` sets it from the step inside the step.
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.adversarial.attacks import (ExampleLoss, check_norm, cross_entropy_loss, fgsm, pgd,
                                        pgd_restarts)
from dl_jax.train.classification import classification_loss

Attack = Callable[[ExampleLoss, object, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]
"""attack(loss_fn, params, x, y, key, eps) -> adversarial inputs."""

ATTACK_STREAM = "attack"


def pgd_attack(steps: int, relative_step: float = 2.5, restarts: int = 1,
               norm: str = "linf") -> Attack:
  """PGD with `steps` steps of relative_step * eps / steps (Madry et al.'s 2.5 eps / k) and a
  random start; with `restarts` > 1 the worst case of that many starts per example."""
  check_norm(norm)
  if steps < 1:
    raise ValueError(f"PGD needs at least one step, got steps={steps}")

  def attack(loss_fn, params, x, y, key, eps):
    options = dict(eps=eps, step_size=relative_step * eps / steps, steps=steps, norm=norm)
    if restarts == 1:
      return pgd(loss_fn, params, x, y, key, **options)
    return pgd_restarts(loss_fn, params, x, y, key, restarts=restarts, **options)

  return attack


def fgsm_attack(relative_step: float = 1.0, random_start: bool = False) -> Attack:
  """FGSM with a step of relative_step * eps; Wong et al. 2020's fast training uses a random
  start and relative_step 1.25."""

  def attack(loss_fn, params, x, y, key, eps):
    return fgsm(loss_fn, params, x, y, key, eps=eps, step_size=relative_step * eps,
                random_start=random_start)

  return attack


def eval_logits_fn(model: nn.Module, model_state) -> Callable:
  """logits_fn(params, x): the model in evaluation mode (running statistics, no dropout)."""
  return lambda params, x: model.apply({"params": params, **model_state}, x, train=False)


def batch_eps(batch: dict) -> jax.Array:
  if "eps" not in batch:
    raise ValueError("adversarial training needs the attack radius in the batch: add "
                     "batch['eps'] (a scalar, e.g. from an eps ramp-up schedule).")
  return batch["eps"]


def adversarial_loss(model: nn.Module, attack: Attack, clean_weight: float = 0.0):
  """loss_fn(params, model_state, batch, rngs): (1 - w) * loss on attacked inputs + w * clean loss.

  w = clean_weight: 0 is pure adversarial training (Madry et al.; Wong et al. with an FGSM attack),
  0.5 is Goodfellow et al. 2015's clean + adversarial mix. Needs rngs['attack'] and batch['eps'].
  """
  if not 0.0 <= clean_weight <= 1.0:
    raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
  classification = classification_loss(model)

  def loss_fn(params, model_state, batch, rngs):
    example_loss = cross_entropy_loss(eval_logits_fn(model, model_state))
    x_adv = jax.lax.stop_gradient(attack(example_loss, params, batch["x"], batch["y"],
                                         rngs[ATTACK_STREAM], batch_eps(batch)))
    loss, (metrics, new_state) = classification(params, model_state, {**batch, "x": x_adv}, rngs)
    metrics = {"adversarial_loss": loss, "adversarial_accuracy": metrics["accuracy"]}
    if clean_weight == 0.0:
      return loss, (metrics, new_state)
    clean, (clean_metrics, _) = classification(params, model_state, batch, rngs)
    metrics = {**metrics, "clean_loss": clean, "clean_accuracy": clean_metrics["accuracy"]}
    return (1.0 - clean_weight) * loss + clean_weight * clean, (metrics, new_state)

  return loss_fn


def with_eps_ramp(train_step, eps: float, ramp_steps: int):
  """`train_step(state, batch)` with batch['eps'] set from the state's own step: eps * (step + 1)
  / ramp_steps over the first `ramp_steps` steps, then eps (0: eps from the start). Starting
  small lets a fresh network learn the task before the full-size attack (Madry's MNIST models
  otherwise can sit at chance for a long time). The radius is computed inside the step, so many
  steps per compiled call, a checkpoint and a resumed run all see the radius of their step."""

  def step(state, batch):
    scale = jnp.minimum(1.0, (state.step + 1) / ramp_steps) if ramp_steps else 1.0
    return train_step(state, {**batch, "eps": jnp.float32(eps) * scale})

  return step
