"""The non-saturating GAN losses (Goodfellow et al. 2014, section 3), per example on logits.

The discriminator minimises -log D(x) - log(1 - D(G(z))); the generator minimises -log D(G(z))
instead of log(1 - D(G(z))), whose gradient vanishes exactly when the generator is losing (D(G(z))
near 0), early in training. With D = sigmoid(logit): -log D = softplus(-logit) and
-log(1 - D) = softplus(logit), which stay finite for any logit.
"""

import jax


def _discriminator_loss_one(real_logit: jax.Array, fake_logit: jax.Array) -> jax.Array:
  return jax.nn.softplus(-real_logit) + jax.nn.softplus(fake_logit)


def _generator_loss_one(fake_logit: jax.Array) -> jax.Array:
  return jax.nn.softplus(-fake_logit)


discriminator_loss = jax.vmap(_discriminator_loss_one)
"""Per-example discriminator loss for (real logits [batch], fake logits [batch])."""

generator_loss = jax.vmap(_generator_loss_one)
"""Per-example non-saturating generator loss for fake logits [batch]."""
