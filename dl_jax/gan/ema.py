"""An exponential moving average (EMA) of the generator's weights, for sampling and evaluation.

GAN parameters circle around an equilibrium instead of settling; their running average sits nearer
its centre and draws better samples than the last iterate (Yazici et al. 2019, "The unusual
effectiveness of averaging in GAN training"). The average is of every generator variable: the
weights and the batch norms' running statistics, so averaged weights are normalised with
statistics of the same age.
"""

import jax
import jax.numpy as jnp


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """The decay used at optimizer step `step`: min(decay, (1 + step) / (10 + step)), as in
  TensorFlow's ExponentialMovingAverage with num_updates, so the average forgets the random
  initial weights within the first few hundred steps instead of carrying decay^steps of them."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(average, new, decay: float | jax.Array):
  """decay * average + (1 - decay) * new, leaf by leaf; decay 0 returns `new` exactly."""
  return jax.tree_util.tree_map(lambda a, n: decay * a + (1 - decay) * n, average, new)
