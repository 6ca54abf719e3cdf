import flax.linen as nn
import chex
import jax
import numpy as np
import pytest

from dl_jax.models.patch_conv import PatchConv


@pytest.mark.parametrize("shape, kernel, strides, padding", [
    ((3, 40, 1), (5,), (2,), 1),
    ((3, 19, 4), (3,), (2,), "SAME"),
    ((3, 19, 4), (3,), (1,), "VALID"),
    ((2, 28, 28, 1), (3, 3), (1, 1), "SAME"),
    ((2, 15, 14, 3), (3, 2), (2, 1), [(1, 0), 2]),
    ((2, 9, 9, 2), (4, 4), (3, 3), "SAME"),
])
def test_patch_conv_equals_flax_conv(shape, kernel, strides, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  reference = nn.Conv(6, kernel, strides, padding)
  variables = reference.init(jax.random.PRNGKey(1), x)
  patches = PatchConv(6, kernel, strides, padding)
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
