"""The state of a GAN run: two train states (generator, discriminator) and one root key."""

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
  keeps its own parameters, optimizer state and batch statistics in a TrainState."""

  step: jax.Array
  key: jax.Array
  generator: TrainState
  discriminator: TrainState

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
  return GANState(step=jnp.zeros((), jnp.int32), key=root, generator=g, discriminator=d)


def generate(generator: nn.Module, state: GANState, z: jax.Array) -> jax.Array:
  """Samples for latent codes `z`, with the batch norms' running averages (eval mode)."""
  variables = {"params": state.generator.params, **state.generator.model_state}
  return generator.apply(variables, z, train=False)


def latent_noise(key: jax.Array, batch_size: int, latent_dim: int) -> jax.Array:
  """Latent codes z ~ N(0, I), [batch_size, latent_dim]."""
  return jax.random.normal(key, (batch_size, latent_dim))
