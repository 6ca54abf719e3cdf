import dataclasses
import json
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.adversarial.attacks import (cross_entropy_loss, example_keys, fgsm, input_gradients,
                                        pgd, pgd_example, pgd_restarts)
from dl_jax.adversarial.evaluation import accuracy_under_attack, make_predict
from dl_jax.adversarial.learned_adversary import (PerturbationGenerator, defended_train_step,
                                                  init_adversary_state, with_adversary)
from dl_jax.adversarial.training import adversarial_loss, fgsm_attack, pgd_attack, with_eps_ramp
from dl_jax.data import load_dataset
from dl_jax.models import MLP
from dl_jax.train import (FitConfig, classification_metrics, create_train_state, fit,
                          make_eval_step, make_train_step)
from dl_jax.train.seeds import stack_states
from dl_jax.train.state import tree_digest
from dl_jax.train.rng import step_rngs
from experiments import adversarial


def _linear_logits(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"]


# Two classes on 4 pixels: logits z = x W, z1 - z0 = x . (w1 - w0), w1 - w0 = [1, -2, 3, -0.5].
LINEAR = {"w": jnp.array([[0.0, 1.0], [0.0, -2.0], [0.0, 3.0], [0.0, -0.5]])}
LINEAR_LOSS = cross_entropy_loss(_linear_logits)


def test_fgsm_is_the_sign_gradient_step_of_a_linear_model():
  # d CE / dx = W (softmax - onehot): for label 0 it is p1 (w1 - w0), for label 1 -p0 (w1 - w0),
  # so FGSM moves every pixel by eps along +-sign(w1 - w0) = +-[1, -1, 1, -1], then clips to [0, 1].
  x = jnp.array([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.95, 0.02, 0.5, 0.5]])
  y = jnp.array([0, 1, 0])
  x_adv = jax.jit(lambda x, y: fgsm(LINEAR_LOSS, LINEAR, x, y, jax.random.PRNGKey(0), eps=0.1))(
      x, y)
  np.testing.assert_allclose(x_adv, [[0.6, 0.4, 0.6, 0.4], [0.4, 0.6, 0.4, 0.6],
                                     [1.0, 0.0, 0.6, 0.4]], atol=1e-6)


def test_input_gradients_are_per_example_and_match_the_closed_form():
  # d CE(x W, y) / dx = W (softmax(x W) - onehot(y)) for each example separately.
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 4))
  y = jnp.array([0, 1, 1])
  expected = (jax.nn.softmax(x @ LINEAR["w"]) - jax.nn.one_hot(y, 2)) @ LINEAR["w"].T
  np.testing.assert_allclose(input_gradients(LINEAR_LOSS, LINEAR, x, y), expected, atol=1e-6)


def test_pgd_stays_in_the_eps_ball_and_the_pixel_range():
  x = jax.random.uniform(jax.random.PRNGKey(1), (16, 4))
  y = jnp.arange(16) % 2
  for norm, eps in (("linf", 0.1), ("l2", 0.5)):
    x_adv = jax.jit(lambda x, y: pgd(LINEAR_LOSS, LINEAR, x, y, jax.random.PRNGKey(2), eps=eps,
                                     step_size=0.3, steps=10, norm=norm))(x, y)
    delta = np.asarray(x_adv - x)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert np.all(size <= eps + 1e-5), norm
    assert np.all((x_adv >= 0) & (x_adv <= 1)), norm
    assert np.all(size > 0.5 * eps), norm  # it does move: the loss is unbounded in the ball


@pytest.fixture(scope="module")
def trained_mlp():
  """A small MLP trained for 150 steps on 1000 MNIST digits (~94% train accuracy)."""
  data = load_dataset("mnist").train.gather(np.arange(1000))
  model = MLP(widths=(32,), num_outputs=10)
  state = create_train_state(model, optax.adam(3e-3), data["x"][:1], seed=0)
  loss = lambda p, b: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      model.apply({"params": p}, b["x"]), b["y"]))
  step = jax.jit(lambda s, b: s.apply_gradients(grads=jax.grad(loss)(s.params, b)))
  for i in range(150):
    state = step(state, {k: v[(i % 10) * 100:(i % 10 + 1) * 100] for k, v in data.items()})
  logits_fn = lambda p, x: model.apply({"params": p}, x)
  return logits_fn, state.params, jnp.asarray(data["x"][:200]), jnp.asarray(data["y"][:200])


def test_pgd_finds_a_loss_at_least_fgsms_on_a_trained_model(trained_mlp):
  logits_fn, params, x, y = trained_mlp
  loss_fn = cross_entropy_loss(logits_fn)
  per_example = jax.vmap(loss_fn, in_axes=(None, 0, 0))
  key = jax.random.PRNGKey(3)
  fgsm_loss = jax.jit(lambda: per_example(params, fgsm(loss_fn, params, x, y, key, eps=0.1), y))()
  pgd_loss = jax.jit(lambda: per_example(params, pgd(loss_fn, params, x, y, key, eps=0.1,
                                                     step_size=0.025, steps=10), y))()
  assert float(jnp.mean(pgd_loss)) > float(jnp.mean(fgsm_loss))
  assert float(jnp.mean(pgd_loss >= fgsm_loss - 1e-4)) >= 0.95
  predict = make_predict(logits_fn)
  assert float(jnp.mean(predict(params, x) == y)) > 0.85  # the model did train


def test_restarts_keep_each_examples_worst_start(trained_mlp):
  logits_fn, params, x, y = trained_mlp
  loss_fn, x, y, key = cross_entropy_loss(logits_fn), x[:8], y[:8], jax.random.PRNGKey(4)
  options = dict(eps=0.1, step_size=0.05, steps=3)
  per_example = jax.vmap(loss_fn, in_axes=(None, 0, 0))
  best = jax.jit(lambda: per_example(
      params, pgd_restarts(loss_fn, params, x, y, key, restarts=4, **options), y))()

  @jax.jit
  def each_start():  # [example, start]: every start of every example, run on its own
    def one(xi, yi, ki):
      starts = jax.random.split(ki, 4)
      return jax.vmap(lambda s: loss_fn(params, pgd_example(loss_fn, params, xi, yi, s, **options),
                                        yi))(starts)
    return jax.vmap(one)(x, y, example_keys(key, 8))

  losses = each_start()
  # float32 losses near 0.02 from two differently fused programs differ by ~1e-6 (jax 0.12.1)
  np.testing.assert_allclose(best, losses.max(axis=1), rtol=1e-5, atol=1e-5)
  assert np.all(np.ptp(np.asarray(losses), axis=1) > 0)  # the starts differ, so the choice matters


def test_attacking_a_batch_equals_attacking_each_example_alone(trained_mlp):
  logits_fn, params, x, y = trained_mlp
  loss_fn, x, y, key = cross_entropy_loss(logits_fn), x[:6], y[:6], jax.random.PRNGKey(5)
  attack = jax.jit(lambda x, y, k: pgd(loss_fn, params, x, y, k, eps=0.2, step_size=0.05,
                                       steps=5))
  together = attack(x, y, key)
  keys = example_keys(key, 6)
  for i in range(6):
    alone = attack(x[i:i + 1], y[i:i + 1], keys[i:i + 1])[0]
    np.testing.assert_allclose(together[i], alone, atol=1e-6)
  # With per-example keys the accuracy under attack does not depend on the batch size.
  pgd_keys = jax.jit(lambda p, x, y, k: pgd(loss_fn, p, x, y, k, eps=0.2, step_size=0.05, steps=5))
  predict = make_predict(logits_fn)
  curves = [accuracy_under_attack(pgd_keys, predict, params, np.asarray(trained_mlp[2][:50]),
                                  np.asarray(trained_mlp[3][:50]), key, 2, size)
            for size in (16, 50)]
  assert curves[0] == curves[1] and curves[0][1] <= curves[0][0]


def test_bad_attack_arguments_raise_with_a_sentence():
  x, y, key = jnp.zeros((2, 4)), jnp.zeros(2, jnp.int32), jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="unknown attack norm 'l1'"):
    pgd(LINEAR_LOSS, LINEAR, x, y, key, eps=0.1, step_size=0.1, steps=1, norm="l1")
  with pytest.raises(ValueError, match="2 inputs but 3 labels"):
    fgsm(LINEAR_LOSS, LINEAR, x, jnp.zeros(3, jnp.int32), key, eps=0.1)
  with pytest.raises(ValueError, match="restarts must be >= 1"):
    pgd_restarts(LINEAR_LOSS, LINEAR, x, y, key, restarts=0, eps=0.1, step_size=0.1, steps=1)


def _tiny_batch():
  data = load_dataset("mnist").train.gather(np.arange(32))
  return data, MLP(widths=(8,), num_outputs=10)


@pytest.mark.parametrize("attack", [pgd_attack(3), fgsm_attack(1.25, random_start=True)])
def test_adversarial_train_step_is_jitted_seeded_and_needs_eps(attack):
  data, model = _tiny_batch()
  step = make_train_step(adversarial_loss(model, attack, clean_weight=0.5), ("attack",))
  batch = {**data, "eps": np.float32(0.3)}
  runs = []
  for _ in range(2):
    state = create_train_state(model, optax.adam(1e-2), data["x"][:1], seed=0)
    start = jax.tree_util.tree_map(np.asarray, state.params)  # the step donates the state
    state, metrics = step(state, batch)
    state, metrics = step(state, batch)
    runs.append(state.params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, *runs)  # same seed, same bits
  assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
      lambda a, b: bool(jnp.any(a != b)), start, runs[0])))
  assert {"adversarial_accuracy", "clean_accuracy", "loss"} <= set(metrics)
  with pytest.raises(ValueError, match=r"batch\['eps'\]"):
    step(state, data)


ADAM = optax.adam(1e-2)  # one optimizer object: states stack only if their static parts agree


def _defended(classifier, generator, x, seed=0):
  return with_adversary(create_train_state(classifier, ADAM, x[:1], seed=seed),
                        init_adversary_state(generator, ADAM, x[:1], 3, seed=seed))


def test_learned_adversary_round_updates_both_players_within_eps():
  data, classifier = _tiny_batch()
  data = {k: v.reshape(32, 28, 28, 1) if k == "x" else v for k, v in data.items()}
  generator = PerturbationGenerator(channels=(4,))
  state = _defended(classifier, generator, data["x"])
  assert not np.array_equal(state.key, state.adversary.key)
  step = jax.jit(defended_train_step(classifier, generator, noise_dim=3))
  new, metrics = step(state, {**data, "eps": np.float32(0.2)})
  for old, played in ((state, new), (state.adversary, new.adversary)):
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), old.params, played.params)
    assert all(jax.tree_util.tree_leaves(changed))
    assert int(played.step) == 1
  assert {"generated_accuracy", "adversary_loss", "loss"} <= set(metrics)
  delta = generator.apply({"params": new.adversary.params}, data["x"],
                          jax.random.normal(jax.random.PRNGKey(0), (32, 3)), 0.2)
  assert float(jnp.max(jnp.abs(delta))) <= 0.2
  # The two players' noise comes from distinct named streams of the same step.
  keys = step_rngs(state.key, state.step, ("noise", "adversary"))
  assert not np.array_equal(keys["noise"], keys["adversary"])


def test_a_resumed_fit_replays_both_players_of_the_learned_adversary(tmp_path):
  # The generator's state rides in the classifier's, so fit's checkpoints hold both players:
  # 4 steps, or 2 then a rerun to 4 from the checkpoint, give identical parameters of both.
  mnist = load_dataset("mnist", 0.0)
  dataset = dataclasses.replace(mnist, train=mnist.train.subset(np.arange(64)),
                                test=mnist.test.subset(np.arange(32)))
  classifier, generator = MLP(widths=(8,), num_outputs=10), PerturbationGenerator(channels=(4,))
  step = with_eps_ramp(defended_train_step(classifier, generator, 3), 0.3, 2)
  eval_step = make_eval_step(classification_metrics(classifier))
  x = dataset.train.gather([0])["x"]

  def train(steps, workdir):
    config = FitConfig(num_steps=steps, batch_size=16, eval_every=steps, log_every=2,
                       checkpoint_every=2)
    start = stack_states([_defended(classifier, generator, x, seed) for seed in (0, 1)])
    return fit(start, step, eval_step, dataset, config, str(workdir), seeds=[0, 1])

  whole, _ = train(4, tmp_path / "whole")
  train(2, tmp_path / "split")
  resumed, results = train(4, tmp_path / "split")
  assert results["resumed_from_step"] == 2
  assert tree_digest(resumed.adversary) == tree_digest(whole.adversary)
  assert tree_digest(resumed.params) == tree_digest(whole.params)
  assert np.asarray(whole.adversary.step).tolist() == [4, 4]


def test_eps_ramp_sets_the_radius_from_the_states_own_step():
  def radius(eps, ramp_steps, step):
    echo = with_eps_ramp(lambda state, batch: (state, batch["eps"]), eps, ramp_steps)
    return float(jax.jit(lambda i: echo(SimpleNamespace(step=i), {})[1])(jnp.int32(step)))

  assert [radius(0.3, 4, i) for i in range(6)] == pytest.approx([0.075, 0.15, 0.225, 0.3, 0.3,
                                                                 0.3])
  assert radius(0.3, 0, 0) == pytest.approx(0.3)


def test_smoke_run_writes_tables_checks_and_plots(smoke_stage):
  config, results, tmp_path = smoke_stage("adversarial")
  assert config == adversarial.smoke_config()
  saved = json.loads((tmp_path / "results.json").read_text())
  assert set(saved["runs"]) == set(adversarial.TRAININGS)
  for run in saved["runs"].values():
    clean = run["clean"]["test"]["accuracy"][0]
    for eps in config.eval_eps:
      figures = run["attacked"][0]["eps"][str(eps)]
      assert len(figures["pgd6"]) == (config.restarts if eps in config.restart_eps else 1)
      assert figures["pgd6"][-1] <= figures["pgd6"][0] <= clean + 1e-9
    assert set(run["clean"]) == {"train", "val", "test"}
  assert set(saved["checks"]) == {"more_steps", "below_clean", "large_eps_to_zero", "eps_monotone"}
  report = (tmp_path / "results.md").read_text()
  assert "| pgd | 0.3 |" in report and "## Sanity checks" in report
  for path in results["plots"]:
    assert open(path, "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"
