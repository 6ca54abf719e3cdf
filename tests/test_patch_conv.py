import flax.linen as nn
import chex
import jax
import numpy as np
import pytest

from dl_jax.models.cnn import CNN, window_mean
from dl_jax.models.patch_conv import PatchConv, ShiftedConv


@pytest.mark.parametrize("conv", [PatchConv, ShiftedConv])
@pytest.mark.parametrize("shape, kernel, strides, padding", [
    ((3, 40, 1), (5,), (2,), 1),
    ((3, 19, 4), (3,), (2,), "SAME"),
    ((3, 19, 4), (3,), (1,), "VALID"),
    ((2, 28, 28, 1), (3, 3), (1, 1), "SAME"),
    ((2, 15, 14, 3), (3, 2), (2, 1), [(1, 0), 2]),
    ((2, 9, 9, 2), (4, 4), (3, 3), "SAME"),
])
def test_patch_and_shifted_convs_equal_flax_conv(conv, shape, kernel, strides, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  reference = nn.Conv(6, kernel, strides, padding)
  variables = reference.init(jax.random.PRNGKey(1), x)
  patches = conv(6, kernel, strides, padding)
  assert jax.tree_util.tree_map(np.shape, patches.init(jax.random.PRNGKey(1), x)) == \
      jax.tree_util.tree_map(np.shape, variables)
  np.testing.assert_allclose(patches.apply(variables, x), reference.apply(variables, x),
                             rtol=1e-5, atol=1e-5)
  grad = lambda model: jax.grad(lambda v: (model.apply(v, x) ** 2).sum())(variables)
  chex.assert_trees_all_close(grad(patches), grad(reference), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("build, shape", [("mnist1d_cnn", (4, 40)), ("flax_mnist_cnn", (2, 28, 28, 1))])
def test_reference_cnns_compute_the_same_function_either_way(build, shape):
  import dataclasses
  from dl_jax import models

  patches = getattr(models, build)()
  xla = dataclasses.replace(patches, conv="xla")
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  variables = patches.init(jax.random.PRNGKey(1), x)
  np.testing.assert_allclose(patches.apply(variables, x), xla.apply(variables, x),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape, window", [((2, 28, 28, 3), (2, 2)), ((3, 15, 2), (3,)),
                                           ((2, 7, 9, 1), (2, 3))])
def test_window_mean_equals_flax_avg_pool_with_its_gradient(shape, window):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  np.testing.assert_allclose(window_mean(x, window, window), nn.avg_pool(x, window, window),
                             rtol=1e-6, atol=1e-6)
  grad = lambda pool: jax.grad(lambda x: (pool(x, window, window) ** 2).sum())(x)
  np.testing.assert_allclose(grad(window_mean), grad(nn.avg_pool), rtol=1e-6, atol=1e-6)


def test_per_layer_convs_must_match_the_layers():
  with pytest.raises(ValueError, match="one conv name, or one per conv layer"):
    CNN(num_outputs=2, conv=("shifted", "xla", "xla"))
  with pytest.raises(ValueError, match=r"unknown conv \['fft'\]"):
    CNN(num_outputs=2, conv=("shifted", "fft"))
