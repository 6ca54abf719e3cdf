"""A learned adversary: a generator of bounded perturbations, trained against the classifier.

The generator maps (x, noise) to delta = eps * tanh(g(x, z)), so |delta|_inf <= eps by
construction, and the attacked input is clip(x + delta, 0, 1). Each round is one train step of both
players (the generator's state rides in the classifier's, a DefendedState): the generator takes an
optax step that increases the classifier's loss, then the classifier takes a step that decreases
its loss on fresh generated perturbations. Each player draws its noise from its own named stream
('adversary' for the generator's step, 'noise' for the classifier's), derived from
fold_in(root, step) like every other stream.
"""

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.adversarial.attacks import clip_to_range
from dl_jax.adversarial.training import batch_eps, eval_logits_fn
from dl_jax.losses import cross_entropy
from dl_jax.models.patch_conv import PatchConv
from dl_jax.train.classification import classification_loss
from dl_jax.train.state import TrainState, init_train_state
from dl_jax.train.step import train_step_fn
from dl_jax.train.rng import stream_key

ADVERSARY_STREAM = "adversary"  # the generator's noise in its own update
NOISE_STREAM = "noise"  # the generator's noise in the classifier's update


class PerturbationGenerator(nn.Module):
  """(images [B, H, W, C], noise [B, noise_dim], eps) -> perturbations [B, H, W, C], |.|_inf <= eps.

  The noise vector is tiled over the image as extra channels, then `channels` 3x3 'SAME' convs with
  ReLU and a last conv back to C channels, squashed by eps * tanh.
  """

  channels: Sequence[int] = (16, 16)

  @nn.compact
  def __call__(self, x: jax.Array, noise: jax.Array, eps, train: bool = False) -> jax.Array:
    del train  # no train-time behaviour; accepted so that `init_train_state` can build its state
    if x.ndim != 4 or noise.ndim != 2 or noise.shape[0] != x.shape[0]:
      raise ValueError(f"the generator takes images [batch, height, width, channels] and noise "
                       f"[batch, noise_dim]; got {x.shape} and {noise.shape}")
    tiled = jnp.broadcast_to(noise[:, None, None, :], (*x.shape[:3], noise.shape[-1]))
    h = jnp.concatenate([x, tiled], axis=-1)
    for features in self.channels:
      h = nn.relu(PatchConv(features, (3, 3), (1, 1))(h))
    return eps * jnp.tanh(PatchConv(x.shape[-1], (3, 3), (1, 1))(h))


def init_adversary_state(generator: PerturbationGenerator, tx, example_x: jax.Array,
                         noise_dim: int, seed: int) -> TrainState:
  """The generator's train state; its root key is the run's root folded with 'adversary', so it
  never shares a key with the classifier's state made from the same seed."""
  root = stream_key(jax.random.PRNGKey(seed), ADVERSARY_STREAM)
  example = (jnp.asarray(example_x), jnp.zeros((example_x.shape[0], noise_dim)), 1.0)
  return init_train_state(generator, tx, example, root)


def _attacked(generator, generator_params, x, key, noise_dim: int, eps) -> jax.Array:
  noise = jax.random.normal(key, (x.shape[0], noise_dim))
  delta = generator.apply({"params": generator_params}, x, noise, eps)
  return clip_to_range(x, delta)


def adversary_loss(classifier: nn.Module, generator: PerturbationGenerator, classifier_params,
                   classifier_state, noise_dim: int):
  """The generator's loss_fn: minus the classifier's mean cross-entropy on generated inputs."""
  logits_fn = eval_logits_fn(classifier, classifier_state)

  def loss_fn(params, model_state, batch, rngs):
    x_adv = _attacked(generator, params, batch["x"], rngs[ADVERSARY_STREAM], noise_dim,
                      batch_eps(batch))
    fooled = jnp.mean(cross_entropy(logits_fn(classifier_params, x_adv), batch["y"]))
    return -fooled, ({"adversary_loss": fooled}, model_state)

  return loss_fn


def defended_loss(classifier: nn.Module, generator: PerturbationGenerator, generator_params,
                  noise_dim: int, clean_weight: float = 0.0):
  """The classifier's loss_fn: its loss on generated inputs, mixed with the clean loss."""
  classification = classification_loss(classifier)

  def loss_fn(params, model_state, batch, rngs):
    x_adv = jax.lax.stop_gradient(_attacked(generator, generator_params, batch["x"],
                                            rngs[NOISE_STREAM], noise_dim, batch_eps(batch)))
    loss, (metrics, new_state) = classification(params, model_state, {**batch, "x": x_adv}, rngs)
    metrics = {"generated_accuracy": metrics["accuracy"], "generated_loss": loss}
    if not clean_weight:
      return loss, (metrics, new_state)
    clean, (clean_metrics, _) = classification(params, model_state, batch, rngs)
    metrics = {**metrics, "clean_accuracy": clean_metrics["accuracy"]}
    return (1 - clean_weight) * loss + clean_weight * clean, (metrics, new_state)

  return loss_fn


class DefendedState(TrainState):
  """The classifier's train state with its adversary's (the generator's) riding along: one train
  step plays a round of both, and `fit` checkpoints, resumes and stacks seeds of the pair as one."""

  adversary: TrainState


def with_adversary(classifier_state: TrainState, adversary_state: TrainState) -> DefendedState:
  fields = {f.name: getattr(classifier_state, f.name) for f in dataclasses.fields(TrainState)}
  return DefendedState(**fields, adversary=adversary_state)


def defended_train_step(classifier: nn.Module, generator: PerturbationGenerator, noise_dim: int,
                        clean_weight: float = 0.0):
  """train_step(state: DefendedState, batch) -> (state, metrics), one round: a generator ascent
  step against the current classifier, then a classifier step against the updated generator.
  Un-jitted, so it can be vmapped over seeds; needs batch['eps']."""

  def train_step(state: DefendedState, batch: dict):
    attack = adversary_loss(classifier, generator, state.params, state.model_state, noise_dim)
    adversary, adversary_metrics = train_step_fn(attack, (ADVERSARY_STREAM,))(state.adversary,
                                                                               batch)
    defend = defended_loss(classifier, generator, adversary.params, noise_dim, clean_weight)
    state, metrics = train_step_fn(defend, (NOISE_STREAM,))(state.replace(adversary=adversary),
                                                            batch)
    return state, {**metrics, "adversary_loss": adversary_metrics["adversary_loss"],
                   "adversary_grad_norm": adversary_metrics["grad_norm"]}

  return train_step
