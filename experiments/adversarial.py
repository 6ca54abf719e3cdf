"""Robustness: a CNN on MNIST trained normally, with fast FGSM, with PGD, and against a learned
adversary; each evaluated clean, under uniform noise, FGSM, PGD-40 and PGD-100 with restarts.

    python -m experiments.adversarial            # the full run
    python -m experiments.adversarial --smoke      # a tiny run, mostly compilation
    python -m experiments.adversarial --trainings=normal,pgd --seeds=0,1 --restarts=10

A 54k-parameter CNN (convs 8, 16 of 5x5 with stride 2, Dense 64) on 3,600 training digits (400 for
validation), 1,500 Adam steps, trained normally, with fast FGSM + random start (Wong et al. 2020),
with PGD-7 (Madry et al. 2018), and against a learned adversary (a conv generator of (x, noise)).
Each is attacked on the test digits at several eps (pixels in [0, 1]); the robust train-test gap is
taken on sampled training digits. Sanity checks against gradient masking: more PGD steps or
restarts must not help beyond a small tolerance (independent random starts), no attack may beat
clean accuracy, and PGD accuracy must fall near 0 at large eps.
Madry et al. (60k digits, a 3.3M-parameter CNN, PGD-40 training) report 98.8 / 96.4 / 92.5 /
89.6% at eps 0.3 (clean / FGSM / PGD-100 / PGD-100 with 50 starts).
Its figures: docs/experiments/adversarial.md (generated from the last default tour).
"""

import dataclasses
import functools
import os
import sys
import time
from typing import Iterator

import jax
import numpy as np
import optax

from dl_jax.adversarial.evaluation import accuracy_under_attack, attack_suite, make_predict
from dl_jax.adversarial.learned_adversary import (PerturbationGenerator, defended_train_step,
                                                  init_adversary_state, with_adversary)
from dl_jax.adversarial.training import (ATTACK_STREAM, adversarial_loss, eval_logits_fn,
                                         fgsm_attack, pgd_attack, with_eps_ramp)
from dl_jax.data import Dataset, load_dataset
from dl_jax.lab.experiment import Experiment
from dl_jax.lab.records import Record, Recorder
from dl_jax.models.cnn import CNN
from dl_jax.plots import save_figure, subplots
from dl_jax.settings import (at_least, between, each, non_negative_finite, one_of, positive_finite,
                             setting)
from dl_jax.train import (FitConfig, classification_loss, classification_metrics, count_params,
                          fit, make_eval_step)
from dl_jax.train.rng import stream_id
from dl_jax.train.seeds import make_seeds_init, stack_states, unstack_state
from dl_jax.train.step import train_step_fn
from dl_jax.train.writers import write_config
from experiments.reports.adversarial import (MADRY, _pm, clean_test, figure, markdown_report,
                                             plot_accuracy_vs_eps, summary)

TRAININGS = ("normal", "fgsm", "pgd", "adversary")


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
  dataset: str = setting("mnist", "Image dataset (pixels in [0, 1]): an embedded name, an .npz "
                         "file or a directory.")
  val_fraction: float = setting(0.1, "Share of train held out (stratified) for validation; 0: "
                                "none.")
  # The CNN: stride-2 convs then one hidden Dense layer (small enough for PGD training on a CPU).
  channels: tuple[int, ...] = setting((8, 16), "Output channels of the CNN's stride-2 conv layers, "
                                      "comma separated.")
  kernel_size: int = setting(5, "Side of every square conv kernel, in pixels.")
  width: int = setting(64, "Units of the hidden Dense layer after the convs.")
  trainings: tuple[str, ...] = setting(TRAININGS, f"Training methods, comma separated, among "
                                       f"{','.join(TRAININGS)}.", check=each(one_of(TRAININGS)))
  seeds: tuple[int, ...] = setting((0,), "Seeds trained together in one vmapped program, comma "
                                   "separated.")
  steps: int = setting(1500, "Training steps per method.")
  batch_size: int = setting(100, "Training examples per step.")
  learning_rate: float = setting(3e-3, "Peak learning rate of Adam with cosine decay.")
  train_eps: float = setting(0.3, "L-inf attack radius of adversarial training (pixels in [0, 1]).",
                             check=non_negative_finite)
  eps_ramp_steps: int = setting(300, "Steps over which the training radius grows linearly from 0 "
                                "to train_eps; 0: full radius from the start.")
  pgd_train_steps: int = setting(7, "Steps of the PGD attack in PGD training (step size 2.5 * eps "
                                 "/ steps).", check=at_least(1))
  fgsm_relative_step: float = setting(1.25, "Step of fast FGSM training after its random start, "
                                      "as a multiple of eps (Wong et al. 2020: 1.25).")
  adversary_channels: tuple[int, ...] = setting((16, 16), "Channels of the learned adversary's 3x3 "
                                                "conv layers, comma separated.")
  adversary_noise_dim: int = setting(8, "Length of the noise vector the learned adversary takes.")
  adversary_learning_rate: float = setting(1e-3, "Adam learning rate of the learned adversary.")
  eval_eps: tuple[float, ...] = setting((0.1, 0.2, 0.3), "L-inf attack radii for the table (pixels "
                                        "in [0, 1]), comma separated.",
                                        check=each(positive_finite))
  large_eps: tuple[float, ...] = setting((0.5, 0.7), "Radii where PGD accuracy should fall to ~0 "
                                         "(sanity check), comma separated.")
  pgd_eval_steps: tuple[int, ...] = setting((40, 100), "PGD step counts evaluated, comma "
                                            "separated.", check=each(at_least(1)))
  restarts: int = setting(5, "Random starts of the strongest PGD at restart_eps; an example is "
                          "robust only if every start fails.", check=at_least(1))
  restart_eps: tuple[float, ...] = setting((0.3,), "Radii where the strongest PGD gets --restarts "
                                           "starts (every other PGD gets one), comma separated.")
  eval_relative_step: float = setting(2.5, "Step size of PGD-k evaluation, as a multiple of eps / "
                                      "k.")
  robust_train_examples: int = setting(500, "Training examples attacked for the robust "
                                       "generalization gap.", check=at_least(1))
  eval_batch_size: int = setting(500, "Examples per evaluation and attack batch.")
  near_zero: float = setting(0.05, "Accuracy (a fraction) below which PGD (fewest steps) at the "
                             "largest large_eps counts as ~0 (sanity check).",
                             check=between(0, 1, False))
  # Two attacks with independent random starts differ by a few test digits by chance: a "stronger"
  # attack may score this much above a weaker one before the check fails (0.005 = 5 of 1000).
  check_tolerance: float = setting(0.005, "Accuracy (a fraction) by which a stronger attack may "
                                   "beat a weaker one before a sanity check fails.",
                                   check=between(0, 1, False))


def smoke_config() -> RobustnessConfig:
  """About a minute on a shared CPU, mostly compilation: what the tests run end to end."""
  return RobustnessConfig(channels=(4, 8), width=16, steps=12, batch_size=32, eps_ramp_steps=4,
                          pgd_train_steps=2, adversary_channels=(4,), eval_eps=(0.1, 0.3),
                          large_eps=(0.7,), pgd_eval_steps=(3, 6), restarts=2, restart_eps=(0.3,),
                          robust_train_examples=64, eval_batch_size=100, val_fraction=0.05)


def run(config: RobustnessConfig, workdir: str) -> dict:
  """Trains every model, attacks each; its results, and plots/ in `workdir`."""
  check_config(config)
  write_config(workdir, dataclasses.asdict(config))
  start = time.perf_counter()
  dataset = load_dataset(config.dataset, config.val_fraction, val_seed=0)
  model = CNN(num_outputs=dataset.num_classes, channels=config.channels,
              kernel_sizes=(config.kernel_size,) * len(config.channels), strides=2,
              widths=(config.width,))
  attacks = attack_suite(eval_logits_fn(model, {}), config.eval_relative_step,
                         config.pgd_eval_steps)
  predict = make_predict(eval_logits_fn(model, {}))
  runs, states = {}, {}
  for training in config.trainings:
    states[training], runs[training] = train(config, dataset, model, training, workdir)
    runs[training].update(evaluate_robustness(config, dataset, attacks, predict, states[training]))
    print(f"{training}: {_headline(runs[training], config)}", file=sys.stderr, flush=True)
  results = {"config": dataclasses.asdict(config), "dataset": dataset.metadata,
             "params": count_params(unstack_state(next(iter(states.values())), 0).params),
             "runs": runs, "madry": MADRY}
  results["checks"] = sanity_checks(config, runs)
  results["wall_seconds"] = time.perf_counter() - start
  plots = os.path.join(workdir, "plots")
  results["plots"] = [plot_accuracy_vs_eps(results, plots),
                      plot_examples(config, dataset, attacks, predict, states, plots)]
  return results


def records(results: dict, variant: str) -> Iterator[Record]:
  """Every figure of this experiment as a long-form record (the tour's claims query these)."""
  config = results["config"]
  rec, seeds, dataset = Recorder("adversarial", variant), config["seeds"], config["dataset"]
  for training, run in results["runs"].items():
    for split in ("train", "val", "test"):
      yield from rec.per_seed(seeds, run["clean"][split]["accuracy"], dataset=dataset,
                              arm=training, split=split, metric="accuracy")
      yield from rec.per_seed(seeds, [s["robust_splits"][split] for s in run["attacked"]],
                              dataset=dataset, arm=training, split=split,
                              metric=f"accuracy under PGD-{min(config['pgd_eval_steps'])} at eps "
                                     f"{config['train_eps']}")
    for eps in config["eval_eps"]:
      for steps in config["pgd_eval_steps"]:
        starts = config["restarts"] if (eps in config["restart_eps"]
                                        and steps == max(config["pgd_eval_steps"])) else 1
        yield from rec.per_seed(
            seeds, [s["eps"][str(eps)][f"pgd{steps}"][-1] for s in run["attacked"]],
            dataset=dataset, arm=training, split="test",
            metric=f"accuracy under PGD-{steps} x {starts} at eps {eps}")
  for name, check in results["checks"].items():
    yield rec.single(check["ok"], dataset=dataset, arm="gradient-masking check", metric=name)


def check_config(config: RobustnessConfig) -> None:
  """Fails on a bad name or size before any training starts."""
  unknown = sorted(set(config.trainings) - set(TRAININGS))
  if unknown or not config.trainings:
    raise ValueError(f"unknown trainings {unknown}; choose among {list(TRAININGS)}")
  if not config.seeds or config.restarts < 1 or min(config.pgd_eval_steps) < 1:
    raise ValueError("need at least one seed, one restart and one PGD evaluation step")
  if not config.eval_eps or min(config.eval_eps + config.large_eps) <= 0:
    raise ValueError(f"attack radii must be positive, got {config.eval_eps} and {config.large_eps}")


# ---- training ----------------------------------------------------------------------------------

def train(config: RobustnessConfig, dataset: Dataset, model: CNN, training: str, workdir: str):
  """All seeds of one training method: one `fit` of the stacked seeds into workdir/fits/TRAINING
  (a rerun resumes from its checkpoints); returns (states, record with clean figures)."""
  tx = optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps))
  example = dataset.train.gather([0])["x"]
  states = make_seeds_init(model, tx, example)(config.seeds)
  if training == "adversary":
    states = with_adversary(states, _adversaries(config, example))
  every = max(config.steps // 5, 1)
  fit_config = FitConfig(num_steps=config.steps, batch_size=config.batch_size,
                         eval_every=config.steps, log_every=every, checkpoint_every=every,
                         eval_batch_size=config.eval_batch_size)
  states, results = fit(states, _train_step(config, model, training),
                        make_eval_step(classification_metrics(model)), dataset, fit_config,
                        os.path.join(workdir, "fits", training), seeds=list(config.seeds))
  return states, {"train_seconds": results["train_seconds"],
                  "resumed_from_step": results["resumed_from_step"],
                  "clean": {split: results[split] for split in dataset.splits()}}


def _adversaries(config: RobustnessConfig, example: np.ndarray):
  """The learned adversary's stacked states, one per seed."""
  generator = PerturbationGenerator(channels=config.adversary_channels)
  tx = optax.adam(config.adversary_learning_rate)
  return stack_states([init_adversary_state(generator, tx, example, config.adversary_noise_dim,
                                            seed) for seed in config.seeds])


def _train_step(config: RobustnessConfig, model: CNN, training: str):
  """The single-model train_step(state, batch) of a training method; the attack radius ramps up
  with the step (`eps_ramp_steps`)."""
  if training == "normal":
    return train_step_fn(classification_loss(model), ())
  if training == "adversary":
    generator = PerturbationGenerator(channels=config.adversary_channels)
    step = defended_train_step(model, generator, config.adversary_noise_dim)
  else:
    attack = (pgd_attack(config.pgd_train_steps) if training == "pgd"
              else fgsm_attack(config.fgsm_relative_step, random_start=True))
    step = train_step_fn(adversarial_loss(model, attack), (ATTACK_STREAM,))
  return with_eps_ramp(step, config.train_eps, config.eps_ramp_steps)


# ---- evaluation under attack -------------------------------------------------------------------

def evaluate_robustness(config: RobustnessConfig, dataset: Dataset, attacks: dict, predict,
                        states) -> dict:
  """Per seed: test accuracy under noise / FGSM / PGD-k at every eps (the strongest PGD with
  restarts at restart_eps), PGD-k_min at large eps, and PGD-k_min on training and validation
  examples at the training eps (the robust gap; its test figure is the table's)."""
  begin = time.perf_counter()
  test = dataset.test.materialize()
  k_min = min(config.pgd_eval_steps)
  per_seed = []
  for index, seed in enumerate(config.seeds):
    params = unstack_state(states, index).params
    key = jax.random.PRNGKey(seed)

    def under(name, data, eps, restarts=1):
      curve = accuracy_under_attack(functools.partial(attacks[name], eps=eps), predict, params,
                                    data["x"], data["y"], jax.random.fold_in(key, stream_id(name)),
                                    restarts, config.eval_batch_size)
      return curve

    figures = {"eps": {}}
    for eps in config.eval_eps:
      figures["eps"][str(eps)] = {
          "noise": under("noise", test, eps), "fgsm": under("fgsm", test, eps),
          **{f"pgd{k}": under(f"pgd{k}", test, eps, _restarts(config, eps, k))
             for k in config.pgd_eval_steps}}
    figures["large_eps"] = {str(eps): under(f"pgd{k_min}", test, eps)[0]
                            for eps in config.large_eps}
    figures["robust_splits"] = {name: under(f"pgd{k_min}", split, config.train_eps)[0]
                                for name, split in _robust_splits(config, dataset).items()}
    at_train_eps = figures["eps"].get(str(config.train_eps))
    figures["robust_splits"]["test"] = (at_train_eps[f"pgd{k_min}"][0] if at_train_eps else
                                        under(f"pgd{k_min}", test, config.train_eps)[0])
    per_seed.append(figures)
  return {"attacked": per_seed, "attack_seconds": time.perf_counter() - begin}


def _restarts(config: RobustnessConfig, eps: float, steps: int) -> int:
  return config.restarts if eps in config.restart_eps and steps == max(config.pgd_eval_steps) else 1


def _robust_splits(config: RobustnessConfig, dataset: Dataset) -> dict:
  """`robust_train_examples` training examples (a seeded sample) and the validation split."""
  rng = np.random.default_rng(0)
  size = min(config.robust_train_examples, len(dataset.train))
  splits = {"train": dataset.train.gather(np.sort(rng.choice(len(dataset.train), size, False)))}
  if dataset.val is not None:
    splits["val"] = dataset.val.materialize()
  return splits


# ---- summaries and sanity checks ---------------------------------------------------------------

def sanity_checks(config: RobustnessConfig, runs: dict) -> dict:
  """Signs that robustness is real and not gradient masking, each with the numbers behind it.

  - more_steps: PGD with more steps never does better than with fewer (FGSM counts as 1 step),
    compared with one start and with all restarts, up to `check_tolerance`;
  - below_clean: no attack (FGSM, PGD) does better than clean accuracy (strict);
  - large_eps_to_zero: PGD accuracy at the largest eps is below `near_zero`;
  - eps_monotone: PGD accuracy does not rise with eps, up to `check_tolerance`.
  Each case records `excess`, the largest amount by which the stronger attack scored higher.
  Restarts cannot raise accuracy (an example counts as robust only if all restarts fail).
  """
  steps = sorted(config.pgd_eval_steps)
  checks = {"more_steps": [], "below_clean": [], "large_eps_to_zero": [], "eps_monotone": []}
  for training in config.trainings:
    run = runs[training]
    clean = clean_test(run)
    largest = [np.asarray([s["large_eps"][str(e)] for s in run["attacked"]])
               for e in config.large_eps]
    for eps in config.eval_eps:
      for restarts in sorted({1, _restarts(config, eps, steps[-1])}):
        chain = [figure(run, eps, "fgsm")] + [figure(run, eps, f"pgd{k}", restarts) for k in steps]
        checks["more_steps"].append({
            "training": training, "eps": eps, "restarts": restarts,
            "accuracy": [c.tolist() for c in chain], **_non_increasing(chain, config)})
      attacked = [figure(run, eps, "fgsm")] + [figure(run, eps, f"pgd{k}") for k in steps]
      checks["below_clean"].append({"training": training, "eps": eps,
                                    "ok": bool(all(np.all(a <= clean) for a in attacked))})
    by_eps = [figure(run, e, f"pgd{steps[0]}", 1) for e in config.eval_eps] + largest
    checks["eps_monotone"].append({
        "training": training, "eps": list(config.eval_eps) + list(config.large_eps),
        "accuracy": [a.tolist() for a in by_eps], **_non_increasing(by_eps, config)})
    if largest:
      checks["large_eps_to_zero"].append({
          "training": training, "eps": config.large_eps[-1], "accuracy": largest[-1].tolist(),
          "ok": bool(np.all(largest[-1] < config.near_zero))})
  return {name: {"ok": all(c["ok"] for c in items), "cases": items}
          for name, items in checks.items()}


def _non_increasing(chain: list[np.ndarray], config: RobustnessConfig) -> dict:
  """Does each accuracy (per seed) stay at or below the previous one, up to the tolerance?"""
  excess = max(float(np.max(b - a)) for a, b in zip(chain, chain[1:]))
  return {"excess": excess, "strict": excess <= 0, "ok": excess <= config.check_tolerance}


def _headline(run: dict, config: RobustnessConfig) -> str:
  eps, k = max(config.eval_eps), max(config.pgd_eval_steps)
  return (f"clean {_pm(clean_test(run))}, PGD-{k} x{config.restarts} at eps {eps}: "
          f"{_pm(figure(run, eps, f'pgd{k}'))} (train {run['train_seconds']:.0f} s, "
          f"attacks {run['attack_seconds']:.0f} s)")


# ---- figures -----------------------------------------------------------------------------------

def plot_examples(config: RobustnessConfig, dataset: Dataset, attacks: dict, predict,
                  states: dict, directory: str, count: int = 8) -> str:
  """Top row: clean test digits; then, per training method (seed 0), its PGD adversarial images at
  the largest eval eps and its prediction (red when wrong)."""
  test = dataset.test.gather(np.linspace(0, len(dataset.test) - 1, count).astype(int))
  eps, k = max(config.eval_eps), max(config.pgd_eval_steps)
  attack = attacks[f"pgd{k}"]
  keys = jax.random.split(jax.random.PRNGKey(0), count)
  rows = [("clean", test["x"], None)]
  for training, states_ in states.items():
    params = unstack_state(states_, 0).params
    x_adv = np.asarray(attack(params, test["x"], test["y"], keys, eps))
    rows.append((training, x_adv, np.asarray(predict(params, x_adv))))
  fig, axes = subplots(len(rows), count, figsize=(1.3 * count, 1.45 * len(rows)),
                           squeeze=False)
  for r, (name, images, predictions) in enumerate(rows):
    for c in range(count):
      ax = axes[r][c]
      ax.imshow(images[c, ..., 0], cmap="gray", vmin=0, vmax=1)
      ax.set_xticks([]), ax.set_yticks([])
      if predictions is None:
        ax.set_title(f"label {test['y'][c]}", fontsize=8)
      else:
        wrong = predictions[c] != test["y"][c]
        ax.set_title(f"pred {predictions[c]}", fontsize=8, color="red" if wrong else "black")
    axes[r][0].set_ylabel(name, fontsize=8)
  fig.suptitle(f"PGD-{k} at eps {eps} against each model (seed 0, one start)", fontsize=9)
  return save_figure(fig, os.path.join(directory, "adversarial_examples.png"))


# ---- command line ------------------------------------------------------------------------------

# The tour's budget: the default config with these fields changed (every compared arm >= 5 seeds).
TOUR = dict(trainings=("normal", "pgd"), seeds=(0, 1, 2, 3, 4), steps=800, eps_ramp_steps=200,
            eval_eps=(0.1, 0.3), large_eps=(0.7,), pgd_eval_steps=(10, 40), restarts=2)

EXPERIMENT = Experiment(
    name="adversarial", config=RobustnessConfig, run=run, records=records, summary=summary,
    report=markdown_report, variants={"smoke": smoke_config, "tour": TOUR}, check=check_config)


if __name__ == "__main__":
  EXPERIMENT.command()
