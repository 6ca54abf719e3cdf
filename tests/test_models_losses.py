import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax import optim
from dl_jax.activations import ACTIVATIONS, get_activation
from dl_jax.losses import correct, cross_entropy, mse
from dl_jax.models import MLP, make_model
from dl_jax.regularizers import l2_penalty
from dl_jax.train import count_params


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_is_elementwise(name):
  """Each output depends on its own input only: the same value alone or among others, in any
  position or shape, and a Jacobian with nothing off its diagonal."""
  f = get_activation(name)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 4)) * 3
  out = f(x)
  assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))
  # to float32 rounding: a value alone may take another code path than a vector (jax 0.12's gelu
  # gives -0.0 for a scalar where the vector gives -1.7e-7)
  alone = jnp.array([f(v) for v in x.ravel()]).reshape(x.shape)
  np.testing.assert_allclose(out, alone, rtol=1e-5, atol=1e-6)
  order = jax.random.permutation(jax.random.PRNGKey(1), 12)
  np.testing.assert_allclose(f(x.ravel()[order]), out.ravel()[order], rtol=1e-5, atol=1e-6)
  jacobian = jax.jacobian(f)(x.ravel())
  off_diagonal = jacobian - jnp.diag(jnp.diag(jacobian))
  assert float(jnp.abs(off_diagonal).max()) == 0.0


def test_activations_have_their_known_values():
  x = jnp.array([-2.0, 0.0, 3.0])
  expected = {"relu": [0, 0, 3], "leaky_relu": [-0.02, 0, 3], "identity": [-2, 0, 3],
              "sigmoid": 1 / (1 + np.exp(-np.array([-2.0, 0.0, 3.0]))),
              "tanh": np.tanh([-2.0, 0.0, 3.0]), "softplus": np.log1p(np.exp([-2.0, 0.0, 3.0])),
              "elu": [np.expm1(-2.0), 0, 3], "silu": [-2 / (1 + np.exp(2.0)), 0, 3 / (1 + np.exp(-3.0))]}
  for name, values in expected.items():
    np.testing.assert_allclose(get_activation(name)(x), values, rtol=1e-5, atol=1e-6, err_msg=name)
  assert float(get_activation("gelu")(jnp.array(3.0))) == pytest.approx(2.9964, abs=1e-3)


def test_unknown_activation_lists_valid_names():
  with pytest.raises(ValueError, match="unknown activation 'swish2'.*'gelu'.*'tanh'"):
    get_activation("swish2")


def _num_params(model, input_shape):
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)))
  return count_params(variables["params"])


def test_mnist1d_reference_parameter_counts():
  assert _num_params(make_model("linear", 10), (40,)) == 410
  mlp = make_model("mlp", 10, widths=(100, 100), activation="relu", dropout_rate=0.0,
                   residual=True)
  assert _num_params(mlp, (40,)) == 15210


def test_mlp_flattens_images_and_shapes_logits():
  model = MLP(widths=(16,), num_outputs=10)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  assert model.apply(variables, jnp.zeros((5, 28, 28, 1))).shape == (5, 10)
  assert _num_params(model, (28, 28, 1)) == 784 * 16 + 16 + 16 * 10 + 10


def test_residual_changes_the_function_not_the_parameters():
  plain = MLP(widths=(8, 8), num_outputs=3)
  skip = MLP(widths=(8, 8), num_outputs=3, residual=True)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
  variables = plain.init(jax.random.PRNGKey(0), x)
  assert not np.allclose(plain.apply(variables, x), skip.apply(variables, x))


def test_dropout_needs_a_key_in_training_and_is_off_in_evaluation():
  model = MLP(widths=(64,), num_outputs=4, dropout_rate=0.5)
  x = jnp.ones((2, 8))
  variables = model.init(jax.random.PRNGKey(0), x)
  with pytest.raises(flax.errors.InvalidRngError, match="dropout"):
    model.apply(variables, x, train=True)
  a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
  b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(model.apply(variables, x), model.apply(variables, x))


def test_cross_entropy_matches_optax_and_correct_counts_argmax():
  logits = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
  labels = jnp.array([0, 1, 2, 3, 4, 0])
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  np.testing.assert_allclose(cross_entropy(logits, labels), expected, rtol=1e-6)
  np.testing.assert_array_equal(correct(logits, labels),
                                (jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def test_mse_and_l2_penalty_values():
  assert float(mse(jnp.array([[1.0, 2.0], [0.0, 0.0]]), jnp.zeros((2, 2)))) == 2.5
  params = {"Dense_0": {"kernel": jnp.array([[1.0, 2.0]]), "bias": jnp.array([10.0, 10.0])}}
  assert float(l2_penalty(params)) == 2.5  # 0.5 * (1 + 4); the bias is not penalised


REFERENCE_OPTIMIZERS = {"sgd": lambda lr: optax.sgd(lr), "momentum": lambda lr: optax.sgd(lr, 0.9),
                        "adam": lambda lr: optax.adam(lr), "adamw": lambda lr: optax.adamw(lr, weight_decay=0.01)}


@pytest.mark.parametrize("optimizer", optim.OPTIMIZERS)
def test_optimizers_by_name_are_the_optax_ones(optimizer):
  decay = 0.01 if optimizer == "adamw" else 0.0
  tx = optim.make_optimizer(optimizer, optim.make_schedule("constant", 0.1, 100), weight_decay=decay)
  reference = REFERENCE_OPTIMIZERS[optimizer](0.1)
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = {"w": jnp.array([0.5, 0.25, -1.0])}
  ours, state = tx.update(grads, tx.init(params), params)
  theirs, ref_state = reference.update(grads, reference.init(params), params)
  ours, _ = tx.update(grads, state, params)  # a second step tells momentum from plain sgd
  theirs, _ = reference.update(grads, ref_state, params)
  np.testing.assert_allclose(ours["w"], theirs["w"], rtol=1e-6)


def test_schedules_have_the_promised_shape():
  cosine = optim.make_schedule("cosine", 0.1, 100)
  warm = optim.make_schedule("warmup_cosine", 0.1, 100, warmup_steps=10)
  assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(100)) == pytest.approx(0.0)
  assert float(warm(0)) == 0.0 and float(warm(10)) == pytest.approx(0.1)


def test_unknown_optimizer_and_schedule_are_rejected():
  with pytest.raises(ValueError, match="choose one of \\['sgd', 'momentum', 'adam', 'adamw'\\]"):
    optim.make_optimizer("lion", optax.constant_schedule(0.1))
  with pytest.raises(ValueError, match="unknown schedule 'step'"):
    optim.make_schedule("step", 0.1, 10)
  with pytest.raises(ValueError, match="unknown model 'resnet'"):
    make_model("resnet", 10)
