"""The state of a GAN run: two train states (generator, discriminator), the generator's weight
average (dl_jax.gan.ema), and one root key."""

from typing import Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dl_jax.train.rng import stream_key
from dl_jax.train.state import TrainState, init_train_state


@flax.struct.dataclass
class GANState:
  """`key` is the run's root key: step `s` draws its randomness from fold_in(key, s). Each player
  keeps its own parameters, optimizer state and batch statistics in a TrainState;
  `generator_ema` holds the exponential moving average of the generator's variables
  ({'params', 'batch_stats'}), which draws the samples that are evaluated."""

  step: jax.Array
  key: jax.Array
  generator: TrainState
  discriminator: TrainState
  generator_ema: dict

  # Both players' parameters and model state as one tree each, so dl_jax.train's loop (`fit`),
  # evaluation and checkpoints handle a GAN state like any train state.
  @property
  def params(self) -> dict:
    return {"generator": self.generator.params, "discriminator": self.discriminator.params}

  @property
  def model_state(self) -> dict:
    return {"generator": self.generator.model_state,
            "discriminator": self.discriminator.model_state}


def init_gan_state(generator: nn.Module, discriminator: nn.Module,
                   generator_tx: optax.GradientTransformation,
                   discriminator_tx: optax.GradientTransformation, latent_dim: int,
                   image_shape: Sequence[int], root: jax.Array) -> GANState:
  """Both players initialised from the root key (through distinct streams): pure, so it can be
  jitted and vmapped over the roots of many seeds."""
  g = init_train_state(generator, generator_tx, jnp.zeros((1, latent_dim)),
                       stream_key(root, "generator"))
  d = init_train_state(discriminator, discriminator_tx, jnp.zeros((1, *image_shape)),
                       stream_key(root, "discriminator"))
  return GANState(step=jnp.zeros((), jnp.int32), key=root, generator=g, discriminator=d,
                  generator_ema=generator_variables(g))


def generator_variables(generator_state: TrainState) -> dict:
  """The generator's current {'params', 'batch_stats'}: what `generator_ema` averages."""
  return {"params": generator_state.params, **generator_state.model_state}


def generate(generator: nn.Module, state: GANState, z: jax.Array,
             averaged: bool = True) -> jax.Array:
  """Samples for latent codes `z` in eval mode (running batch statistics, so one sample never
  depends on the others): from the weight average by default, from the last weights otherwise."""
  variables = state.generator_ema if averaged else generator_variables(state.generator)
  return generator.apply(variables, z, train=False)


def latent_noise(key: jax.Array, batch_size: int, latent_dim: int) -> jax.Array:
  """Latent codes z ~ N(0, I), [batch_size, latent_dim]."""
  return jax.random.normal(key, (batch_size, latent_dim))
