"""Dense kernel initializers by name: the scale a deep net starts at decides whether it trains.

'naive'  N(0, 0.01^2) whatever the layer's size: the signal shrinks ~10x per 100-wide layer.
'glorot' Glorot & Bengio (2010), uniform on +-sqrt(6 / (fan_in + fan_out)): variance 2/(in+out),
         the paper's "normalized initialization" (also called Xavier).
'he'     He et al. (2015), variance 2/fan_in (Kaiming normal, fan_in), drawn from a truncated
         normal rescaled to that variance: keeps the signal's size through ReLU layers.
'lecun'  variance 1/fan_in (truncated normal): Flax's own Dense default, so choosing it changes
         nothing.
"""

import flax.linen as nn
from jax.nn.initializers import Initializer

INITIALIZERS: dict[str, Initializer] = {
    "naive": nn.initializers.normal(stddev=0.01),
    "glorot": nn.initializers.glorot_uniform(),
    "he": nn.initializers.he_normal(),
    "lecun": nn.linear.default_kernel_init,
}


def get_initializer(name: str) -> Initializer:
  """The kernel initializer called `name`; an unknown name raises ValueError listing valid ones."""
  try:
    return INITIALIZERS[name]
  except KeyError:
    raise ValueError(
        f"unknown initializer {name!r}; choose one of {sorted(INITIALIZERS)}") from None
