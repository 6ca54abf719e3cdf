import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.losses import cross_entropy, huber, multiclass_hinge, one_hot_squared_error
from dl_jax.models.mlp import MLP
from dl_jax.regularizers import (Penalties, activation_l1, elastic_net_penalty, l1_penalty,
                                 l2_penalty)
from dl_jax.sparsity import zero_activation_fraction
from dl_jax.train import classification_loss, create_train_state, make_train_step
from dl_jax.train.classification import apply_model

PARAMS = {"Dense_0": {"kernel": jnp.array([[1.0, -2.0], [3.0, -0.5]]),
                      "bias": jnp.array([5.0, 5.0])},
          "Dense_1": {"kernel": jnp.array([[-1.0], [2.0]]), "bias": jnp.array([7.0])}}
KERNEL_L1 = 1 + 2 + 3 + 0.5 + 1 + 2
KERNEL_L2 = 0.5 * (1 + 4 + 9 + 0.25 + 1 + 4)


def test_weight_penalties_values_and_gradients_skip_biases():
  assert float(l1_penalty(PARAMS)) == pytest.approx(KERNEL_L1)
  assert float(l2_penalty(PARAMS)) == pytest.approx(KERNEL_L2)
  assert float(elastic_net_penalty(PARAMS, 0.25)) == pytest.approx(
      0.25 * KERNEL_L1 + 0.75 * KERNEL_L2)
  for penalty, expected in ((l1_penalty, jnp.sign), (l2_penalty, lambda w: w),
                            (lambda p: elastic_net_penalty(p, 0.25),
                             lambda w: 0.25 * jnp.sign(w) + 0.75 * w)):
    grads = jax.grad(penalty)(PARAMS)
    for layer in PARAMS:
      np.testing.assert_allclose(grads[layer]["kernel"], expected(PARAMS[layer]["kernel"]))
      np.testing.assert_array_equal(grads[layer]["bias"], 0.0)


def test_parameter_path_selection():
  assert float(l1_penalty(PARAMS, pattern=r"bias$")) == 17.0
  assert float(l2_penalty(PARAMS, pattern=r"^Dense_1/kernel$")) == 2.5
  with pytest.raises(ValueError, match="no parameter path matches 'scale'"):
    l1_penalty(PARAMS, pattern="scale")
  with pytest.raises(ValueError, match="l1_ratio must be in"):
    elastic_net_penalty(PARAMS, 1.5)


def test_activation_l1_value_and_gradient():
  sown = {"activations": (jnp.array([[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]]),
                          jnp.array([[4.0], [0.0]]))}
  assert float(activation_l1(sown)) == pytest.approx((1 + 2 + 4 + 3) / 2)  # mean over 2 examples
  grads = jax.grad(activation_l1)(sown)["activations"]
  np.testing.assert_allclose(grads[0][0], [0.5, -0.5, 0.5])  # sign / batch (d|a|/da = 1 at 0)
  np.testing.assert_allclose(zero_activation_fraction(sown), [1 / 4, 3 / 4])
  with pytest.raises(ValueError, match="mutable=\\['intermediates'\\]"):
    activation_l1({})


def test_penalties_compose_and_reject_negative_weights():
  sown = {"activations": (jnp.ones((2, 3)),)}
  both = Penalties(l1=0.1, l2=0.01, activation_l1=0.5)
  assert float(both(PARAMS, sown)) == pytest.approx(0.1 * KERNEL_L1 + 0.01 * KERNEL_L2 + 1.5)
  assert float(Penalties()(PARAMS)) == 0.0
  with pytest.raises(ValueError, match=">= 0"):
    Penalties(l1=-1.0)


def test_huber_hinge_and_one_hot_mse_values_and_gradients():
  pred, target = jnp.array([[0.5, 3.0]]), jnp.array([[0.0, 0.0]])
  assert float(huber(pred, target)[0]) == pytest.approx(0.125 + (3.0 - 0.5))
  np.testing.assert_allclose(jax.grad(lambda p: huber(p, target)[0])(pred), [[0.5, 1.0]])
  with pytest.raises(ValueError, match="delta must be positive"):
    huber(pred, target, delta=0.0)

  scores, labels = jnp.array([[2.0, 1.5, 0.0], [3.0, 0.0, 1.0]]), jnp.array([0, 0])
  np.testing.assert_allclose(multiclass_hinge(scores, labels), [0.5, 0.0])  # 1 + 1.5 - 2; won by 2
  grad = jax.grad(lambda s: multiclass_hinge(s, labels).sum())(scores)
  np.testing.assert_allclose(grad, [[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  with pytest.raises(ValueError, match="hinge needs scores"):
    multiclass_hinge(jnp.ones((2, 1)), labels)

  outputs = jnp.array([[0.5, 0.0, 1.0]])
  np.testing.assert_allclose(one_hot_squared_error(outputs, jnp.array([2])), [0.25])
  np.testing.assert_allclose(jax.grad(lambda o: one_hot_squared_error(o, jnp.array([2]))[0])(
      outputs), [[1.0, 0.0, 0.0]])


def _batch():
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 5))
  return {"x": x, "y": jnp.arange(8) % 3}


def test_classification_loss_adds_the_penalty_on_the_sown_activations():
  model = MLP(widths=(6, 4), num_outputs=3)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 5)))["params"]
  batch, penalty = _batch(), Penalties(l1=1e-2, activation_l1=0.1)
  loss, (metrics, _) = classification_loss(model, penalty_fn=penalty)(params, {}, batch, {})
  logits, _, sown = apply_model(model, params, {}, batch["x"], False, intermediates=True)
  hidden = jax.tree_util.tree_leaves(sown)
  assert [a.shape for a in hidden] == [(8, 6), (8, 4)]
  expected_penalty = 1e-2 * l1_penalty(params) + 0.1 * np.mean(
      sum(np.abs(a).sum(axis=1) for a in hidden))
  data_loss = float(np.mean(cross_entropy(logits, batch["y"])))
  assert float(metrics["penalty"]) == pytest.approx(float(expected_penalty), rel=1e-5)
  assert float(loss) == pytest.approx(data_loss + float(expected_penalty), rel=1e-5)
  # The old keyword still means the same objective.
  old, _ = classification_loss(model, l2_weight=0.1)(params, {}, batch, {})
  new, _ = classification_loss(model, penalty_fn=Penalties(l2=0.1))(params, {}, batch, {})
  assert float(old) == pytest.approx(float(new), rel=1e-6)


def test_activation_l1_training_silences_units():
  model = MLP(widths=(16,), num_outputs=3)
  batch = _batch()
  zeros = {}
  for weight in (0.0, 0.3):
    state = create_train_state(model, optax.adam(1e-2), batch["x"], seed=0)
    step = make_train_step(classification_loss(model, penalty_fn=Penalties(activation_l1=weight)))
    for _ in range(100):
      state, _ = step(state, batch)
    _, _, sown = apply_model(model, state.params, {}, batch["x"], False, intermediates=True)
    zeros[weight] = float(jnp.mean(zero_activation_fraction(sown)))
  assert zeros[0.3] > zeros[0.0] + 0.2, zeros
