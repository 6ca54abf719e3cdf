"""A convolutional classifier for 1-D signals and 2-D images: conv blocks, then an MLP head."""

from typing import Sequence

import flax.linen as nn
import jax

from dl_jax.activations import get_activation
from dl_jax.models.mlp import MLP
from dl_jax.models.patch_conv import PatchConv

LAYOUTS = {1: "signals [batch, length] or [batch, length, channels]",
           2: "images [batch, height, width, channels]"}
POOLS = {"max": nn.max_pool, "avg": nn.avg_pool}
CONVS = {"patches": PatchConv, "xla": nn.Conv}  # same parameters; patches is faster on CPU


class CNN(nn.Module):
  """[Conv -> (BatchNorm) -> act -> (pool)] per entry of `channels`, flatten, MLP head.

  `ndim` picks 1-D (signals, channels last) or 2-D (NHWC images) convolutions; `conv` picks
  how they are computed ('patches' + matmul or XLA's 'xla' convolution: identical parameters). `strides` is one
  int for every layer or one per layer; `padding` is 'SAME', 'VALID', an int or (low, high) pairs,
  as in PyTorch's explicit padding. Batch norm keeps running statistics in the `batch_stats`
  collection (apply with `mutable=['batch_stats']` in training); its conv layers drop their bias,
  which the norm's shift replaces. Dropout acts on the flattened features and in the head.
  """

  num_outputs: int
  ndim: int = 2
  channels: Sequence[int] = (32, 64)
  kernel_sizes: Sequence[int] = (3, 3)
  strides: int | Sequence[int] = 1
  padding: str | int | Sequence = "SAME"
  activation: str = "relu"
  pool: str | None = None
  pool_window: int = 2
  pool_stride: int = 2
  batch_norm: bool = False
  widths: Sequence[int] = ()
  dropout_rate: float = 0.0
  conv: str = "patches"

  def __post_init__(self):
    super().__post_init__()
    if self.ndim not in LAYOUTS:
      raise ValueError(f"CNN ndim must be 1 (signals) or 2 (images), got {self.ndim}")
    if not len(self.channels) == len(self.kernel_sizes) == len(self._strides()):
      raise ValueError(f"CNN needs one kernel size and stride per conv layer; got channels "
                       f"{self.channels}, kernel_sizes {self.kernel_sizes}, strides {self.strides}")
    if self.conv not in CONVS:
      raise ValueError(f"unknown conv {self.conv!r}; choose one of {sorted(CONVS)}")
    if self.pool not in (None, *POOLS):
      raise ValueError(f"unknown pool {self.pool!r}; choose None or one of {sorted(POOLS)}")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = self._feature_maps(x)
    act = get_activation(self.activation)
    layers = zip(self.channels, self.kernel_sizes, self._strides())
    for i, (features, kernel, stride) in enumerate(layers):
      h = CONVS[self.conv](features, (kernel,) * self.ndim, (stride,) * self.ndim, self.padding,
                           use_bias=not self.batch_norm, name=f"Conv_{i}")(h)
      if self.batch_norm:
        # momentum 0.9: the running averages settle within the first few dozen steps of short runs.
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
      h = act(h)
      if self.pool is not None:
        h = POOLS[self.pool](h, (self.pool_window,) * self.ndim, (self.pool_stride,) * self.ndim)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h.reshape(h.shape[0], -1))
    head = MLP(widths=self.widths, num_outputs=self.num_outputs, activation=self.activation,
               dropout_rate=self.dropout_rate)
    return head(h, train)

  def _strides(self) -> Sequence[int]:
    return (self.strides,) * len(self.channels) if isinstance(self.strides, int) else self.strides

  def _feature_maps(self, x: jax.Array) -> jax.Array:
    """`x` as [batch, *spatial, channels]: a channel axis is added to [batch, length] signals."""
    if self.ndim == 1 and x.ndim == 2:
      return x[..., None]
    if x.ndim != self.ndim + 2:
      raise ValueError(f"a CNN with ndim={self.ndim} expects {LAYOUTS[self.ndim]}; "
                       f"got an array of shape {x.shape}")
    return x


def mnist1d_cnn(num_outputs: int = 10) -> CNN:
  """The MNIST-1D paper's CNN (greydanus/mnist1d ConvBase): 5,210 parameters on length-40 inputs.

  Three stride-2 convs with 25 channels and padding 1 take the length 40 -> 19 -> 10 -> 5, so the
  linear layer reads 5 * 25 = 125 features, as the reference's default `linear_in=125`. We flatten
  [length, channels] where PyTorch flattens [channels, length]: the same model up to a fixed
  permutation of the linear layer's inputs.
  """
  return CNN(num_outputs=num_outputs, ndim=1, channels=(25, 25, 25), kernel_sizes=(5, 3, 3),
             strides=2, padding=1)


def flax_mnist_cnn(num_outputs: int = 10) -> CNN:
  """The CNN of Flax's MNIST example: conv 32, avg-pool, conv 64, avg-pool, Dense 256, head."""
  return CNN(num_outputs=num_outputs, ndim=2, channels=(32, 64), kernel_sizes=(3, 3),
             pool="avg", widths=(256,))


def mnist1d_bn_cnn(num_outputs: int = 10) -> CNN:
  """A 5,986-parameter CNN that beats human accuracy (95.8%) on MNIST-1D.

  Four stride-1 convs of 24 channels (kernels 5, 3, 3, 3), each with batch norm, ReLU and a
  max-pool of 2 (length 40 -> 20 -> 10 -> 5 -> 2), then a linear head on 48 features. Recipe:
  AdamW, lr 1e-2 with 300 warmup steps and cosine decay, weight decay 0.1, batch 100, 6000 steps.
  Chosen on validation among 9 configurations (batch norm was worth ~2.5 points); 98.4 ± 0.4%
  test accuracy over 5 seeds when trained on 3,600 of the 4,000 training signals.
  """
  return CNN(num_outputs=num_outputs, ndim=1, channels=(24, 24, 24, 24), kernel_sizes=(5, 3, 3, 3),
             pool="max", batch_norm=True)
