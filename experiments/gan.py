"""GAN: a DCGAN on the MNIST digits, judged by a classifier trained on the same digits.

    python -m experiments.gan            # 3 seeds x 8000 steps
    python -m experiments.gan --smoke      # seconds
    python -m experiments.gan --steps=5000 --seeds=0

A small DCGAN (dl_jax.gan: generator 7x7 -> 14x14 -> 28x28 with resize-convolutions and batch
norm, discriminator with two stride-2 convolutions and LeakyReLU; no dropout by default) trains
with the non-saturating loss plus an R1 gradient penalty on real digits (Mescheder et al. 2018;
weight 1, lazily every 4th step), Adam for each player (the generator's lr twice the
discriminator's), one jitted step updating both; the step also keeps an exponential moving
average of the generator's weights (dl_jax.gan.ema), which draws every evaluated sample and grid.
Every `sample_every` steps it saves a grid of samples drawn from the same fixed latent codes.
`--augment=translation,cutout` turns on differentiable augmentation of everything the
discriminator sees (dl_jax.gan.augment, DiffAugment), off by default (it made the samples worse).

Evaluation, in the spirit of FID but with features that fit these digits: a CNN classifier
(dl_jax.models.CNN, trained by dl_jax.train.fit on the same training digits and cached in
workdir/classifier) labels `len(train)` generated digits: the class histogram shows mode coverage,
the mean top probability how digit-like they are. The Fréchet distance between Gaussians fitted to
the classifier's penultimate features compares generated digits with the test digits, beside the
same distance for real training digits (the real-vs-real floor: finite samples never reach 0) and
for uniform noise (a ceiling). Targets: generated-vs-test within 5x the floor, all 10 classes
generated, none below 5% of the samples. The discriminator's accuracy at calling real train,
validation and test digits real is the GAN's generalization figure: a gap means it memorised.
Its figures: docs/experiments/gan.md (generated from the last default tour).

The R1 penalty is on by default because it is the change that met the distance target; dropout in
the discriminator and DiffAugment are off because they made the samples worse. Those comparisons
are this command with the flags changed (--r1_weight, --r1_every, --dropout_rate, --augment, ...).
"""

import dataclasses
import functools
import os
import time
from typing import Iterator

import jax
import numpy as np
import optax

from dl_jax.data import Dataset, load_dataset
from dl_jax.gan import (Discriminator, Generator, augment, class_coverage, classifier_outputs,
                        discriminator_metrics, frechet_distance, gaussian_stats, generate,
                        init_gan_state, latent_noise, make_classifier_outputs, make_gan_step,
                        save_sample_grid)
from dl_jax.gan.augment import check_policy
from dl_jax.lab.experiment import Experiment
from dl_jax.lab.records import Record, Recorder
from dl_jax.models.cnn import CNN
from dl_jax.settings import at_least, between, non_negative_finite, positive_finite, setting
from dl_jax.stats import mean_std
from dl_jax.train import (FitConfig, classification_loss, classification_metrics, fit,
                          make_eval_step, make_train_step, stream_key)
from dl_jax.train.calls import Periodic
from dl_jax.train.state import count_params, create_train_state
from dl_jax.train.writers import write_config
from experiments.reports.gan import (markdown_report, plot_class_histogram, plot_final_samples,
                                     plot_losses, summary)


@dataclasses.dataclass(frozen=True)
class GANConfig:
  dataset: str = setting("mnist", "Image dataset (H and W multiples of 4): an embedded name, an "
                         ".npz file or a directory.")
  val_fraction: float = setting(0.1, "Share of train held out for validation (the judge's and the "
                                "discriminator's gap); 0: none.")
  latent_dim: int = setting(64, "Length of the generator's latent code.")
  generator_channels: tuple[int, ...] = setting((64, 32), "Generator channels at H/4 and at H/2 "
                                                "(two values), comma separated.")
  discriminator_channels: tuple[int, ...] = setting((32, 64), "Channels of the discriminator's "
                                                    "stride-2 convs, comma separated.")
  # Dropout in the discriminator: off, as 0.3 gave a worse FD than none when it was tried (it also
  # noises the generator's gradient, which passes through the same dropped-out discriminator).
  dropout_rate: float = setting(0.0, "Dropout rate in the discriminator.")
  # DiffAugment (dl_jax.gan.augment): random transforms, applied in this order, of every image the
  # discriminator sees, real and generated, in both players' updates; empty turns it off.
  # Choices: translation, cutout (e.g. --augment=translation,cutout). Off by default: with this
  # small discriminator every policy tried measured worse (see the module docstring).
  augment: tuple[str, ...] = setting((), "DiffAugment transforms of every image the discriminator "
                                     "sees, in order, comma separated, from translation,cutout; "
                                     "empty: off.")
  translation_fraction: float = setting(0.125, "Largest DiffAugment shift, as a fraction of the "
                                        "height / width.", check=between(0, 0.5))
  cutout_fraction: float = setting(0.5, "Side of the DiffAugment cutout's zeroed square, as a "
                                   "fraction of the height / width (0 excluded).")
  generator_learning_rate: float = setting(2e-3, "Adam learning rate of the generator (twice the "
                                           "discriminator's: the best of the 4 pairs tried).")
  discriminator_learning_rate: float = setting(1e-3, "Adam learning rate of the discriminator.")
  beta1: float = setting(0.5, "Adam's first-moment decay for both players (DCGAN's choice).",
                         check=between(0, 1))
  beta2: float = setting(0.999, "Adam's second-moment decay for both players.",
                         check=between(0, 1))
  ema_decay: float = setting(0.999, "Decay of the generator weight average that draws the "
                             "evaluated samples; 0: the last weights.",
                             check=between(0, 1, False))
  # R1 gradient penalty on real images (dl_jax.gan.step.r1_penalty; 0: off), lazily every
  # r1_every steps: of the changes tried, the one that met the FD target.
  r1_weight: float = setting(1.0, "Weight of the R1 gradient penalty on real images; 0: off.",
                             check=non_negative_finite)
  r1_every: int = setting(4, "Steps between R1 penalty updates (lazy regularization).")
  batch_size: int = setting(64, "Real images per training step.")
  steps: int = setting(8000, "GAN training steps per seed.")
  seeds: tuple[int, ...] = setting((0, 1, 2), "GAN seeds, trained one after another, comma "
                                   "separated.")
  sample_every: int = setting(250, "Save a grid of samples from fixed latent codes every this "
                              "many steps.")
  log_every: int = setting(50, "Steps between metrics lines.")
  eval_every: int = setting(500, "Steps between evaluations of the discriminator on the real "
                            "splits.")
  checkpoint_every: int = setting(500, "Steps between checkpoints.")
  grid_columns: int = setting(8, "Columns and rows of every sample grid (grid_columns^2 fixed "
                              "latent codes).", check=at_least(1))
  classifier_channels: tuple[int, ...] = setting((16, 32), "Channels of the judge CNN's 3x3 "
                                                 "convs, comma separated.")
  classifier_width: int = setting(128, "Hidden width of the judge's head: the Fréchet distance's "
                                  "space.")
  classifier_steps: int = setting(1000, "Training steps of the judge classifier.",
                                  check=at_least(1))
  classifier_batch_size: int = setting(128, "Examples per training step of the judge.")
  classifier_learning_rate: float = setting(1e-3, "Adam learning rate of the judge.")
  eval_batch_size: int = setting(1000, "Examples per evaluation, generation and judging batch.")
  distance_ratio_target: float = setting(5.0, "Target: the generated-vs-test Fréchet distance at "
                                         "most this many times the real-vs-real floor.",
                                         check=positive_finite)
  min_class_fraction: float = setting(0.05, "Target: every class at least this share of the "
                                      "generated samples, in (0, 1).")


def smoke_config() -> GANConfig:
  """Seconds on a laptop CPU: what the tests run end to end."""
  return GANConfig(generator_channels=(8, 4), discriminator_channels=(4, 8), batch_size=16,
                   steps=6, seeds=(0, 1), sample_every=3, log_every=3, eval_every=6,
                   checkpoint_every=3, grid_columns=3, classifier_channels=(4,),
                   classifier_width=8, classifier_steps=5, classifier_batch_size=32)


def run(config: GANConfig, workdir: str) -> dict:
  """Trains the classifier (or reuses it), then the GAN per seed, then evaluates the samples.
  Writes config.json, each seed's run and plots/ into `workdir`; returns its results."""
  _check(config)
  write_config(workdir, dataclasses.asdict(config))
  start = time.perf_counter()
  dataset = load_dataset(config.dataset, config.val_fraction, val_seed=0)
  _check_images(dataset)
  judge = train_classifier(config, dataset, os.path.join(workdir, "classifier"))
  reference = reference_distances(judge, dataset)
  parts = make_parts(config, dataset)
  trained = [train_and_judge(config, parts, dataset, judge, reference, seed, workdir)
             for seed in config.seeds]
  runs = [figures for figures, _ in trained]
  final_samples = {f"seed {figures['seed']}": samples for figures, samples in trained}
  results = {"config": dataclasses.asdict(config), "dataset": dataset.metadata,
             "classifier": judge.figures, "reference": reference.figures, "runs": runs,
             "summary": summarize(config, runs),
             "wall_seconds": time.perf_counter() - start}
  plots = os.path.join(workdir, "plots")
  results["plots"] = [plot_losses(runs, workdir, plots), plot_class_histogram(results, plots),
                      plot_final_samples(final_samples, plots)]
  return results


def records(results: dict, variant: str) -> Iterator[Record]:
  """Every figure of this experiment as a long-form record (the tour's claims query these)."""
  rec, seeds = Recorder("gan", variant), results["config"]["seeds"]
  s, dataset = results["summary"], results["config"]["dataset"]
  for metric in ("ratio_to_floor", "min_class_fraction", "classes_generated"):
    yield from rec.per_seed(seeds, s[metric]["values"], dataset=dataset, arm="generator",
                            split="test", metric=metric)
  for split, figures in s["discriminator_real_accuracy"].items():
    yield from rec.per_seed(seeds, figures["values"], dataset=dataset, arm="discriminator",
                            split=split, metric="real_called_real")
  for split in ("train", "val", "test"):
    if split in results["classifier"]:
      yield rec.single(results["classifier"][split]["accuracy"], dataset=dataset,
                       arm="judge CNN", split=split, metric="accuracy")
  for target, value in s["targets"].items():
    yield rec.single(value, dataset=dataset, arm="target", metric=target)


def _check(config: GANConfig) -> None:
  """Fails on a bad size before any training starts."""
  if not config.seeds or min(config.steps, config.batch_size, config.classifier_steps,
                             config.sample_every, config.grid_columns) < 1:
    raise ValueError("steps, batch sizes, sample_every and grid_columns must be >= 1, and there "
                     "must be at least one seed")
  if len(config.generator_channels) != 2:
    raise ValueError(f"generator_channels needs 2 entries (at H/4 and H/2), got "
                     f"{config.generator_channels}")
  if not 0 < config.min_class_fraction < 1 or config.distance_ratio_target <= 0:
    raise ValueError("min_class_fraction must be in (0, 1) and distance_ratio_target > 0")
  if not (0 <= config.translation_fraction < 0.5 and 0 < config.cutout_fraction <= 1):
    raise ValueError("translation_fraction must be in [0, 0.5) and cutout_fraction in (0, 1]")
  if config.r1_weight < 0 or config.r1_every < 1:
    raise ValueError(f"r1_weight must be >= 0 and r1_every >= 1; got {config.r1_weight} and "
                     f"{config.r1_every}")
  check_policy(config.augment)


def _check_images(dataset: Dataset) -> None:
  shape = dataset.input_shape
  if len(shape) != 3 or shape[0] % 4 or shape[1] % 4:
    raise ValueError(f"the DCGAN needs images [H, W, C] with H and W multiples of 4; dataset "
                     f"{dataset.name!r} has examples of shape {shape}")


# ---- the judge: a classifier trained on the same digits ----------------------------------------

@dataclasses.dataclass(frozen=True)
class Judge:
  """A trained classifier: `outputs(images) -> (probabilities, features)`, and its own figures."""

  outputs: callable
  figures: dict


def train_classifier(config: GANConfig, dataset: Dataset, directory: str) -> Judge:
  """A CNN trained by dl_jax.train.fit; a finished run in `directory` is restored, not retrained."""
  model = CNN(num_outputs=dataset.num_classes, channels=config.classifier_channels,
              kernel_sizes=(3,) * len(config.classifier_channels), pool="avg",
              widths=(config.classifier_width,))
  state = create_train_state(model, optax.adam(config.classifier_learning_rate),
                             dataset.train.gather([0])["x"], seed=0)
  steps = config.classifier_steps
  fit_config = FitConfig(num_steps=steps, batch_size=config.classifier_batch_size,
                         eval_every=steps, log_every=max(steps // 10, 1), checkpoint_every=steps,
                         eval_batch_size=config.eval_batch_size)
  state, figures = fit(state, make_train_step(classification_loss(model)),
                       make_eval_step(classification_metrics(model)), dataset, fit_config,
                       directory)
  outputs_fn = make_classifier_outputs(model)
  outputs = lambda images: classifier_outputs(outputs_fn, state.params, state.model_state, images,
                                              config.eval_batch_size)
  return Judge(outputs, figures)


@dataclasses.dataclass(frozen=True)
class Reference:
  """Gaussian statistics of the real digits' features, and the reference distances."""

  train_stats: tuple
  test_stats: tuple
  figures: dict


def reference_distances(judge: Judge, dataset: Dataset) -> Reference:
  """Fréchet distances to the test digits of the real training digits (the floor) and of as many
  uniform-noise images (a ceiling), and the classes the judge sees in each."""
  train_x, test_x = dataset.train.materialize()["x"], dataset.test.materialize()["x"]
  noise = np.random.default_rng(0).uniform(size=train_x.shape).astype(np.float32)
  (train_p, train_f), (test_p, test_f), (noise_p, noise_f) = map(judge.outputs,
                                                                   (train_x, test_x, noise))
  train_stats, test_stats = gaussian_stats(train_f), gaussian_stats(test_f)
  figures = {"frechet_train_test": frechet_distance(train_stats, test_stats),
             "frechet_noise_test": frechet_distance(gaussian_stats(noise_f), test_stats),
             "coverage_train": class_coverage(train_p), "coverage_test": class_coverage(test_p),
             "coverage_noise": class_coverage(noise_p), "feature_dim": int(train_f.shape[1]),
             "num_reference_samples": len(train_x)}
  return Reference(train_stats, test_stats, figures)


# ---- one GAN per seed ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GANParts:
  """The models and their jitted functions, built once and shared by every seed (one compile)."""

  generator: Generator
  discriminator: Discriminator
  train_step: callable
  eval_step: callable
  sample: callable  # sample(state, z, averaged=True) -> images, in eval mode
  init: callable  # init(root key) -> GANState


def make_parts(config: GANConfig, dataset: Dataset) -> GANParts:
  generator = Generator(image_shape=dataset.input_shape, channels=config.generator_channels)
  discriminator = Discriminator(channels=config.discriminator_channels,
                                dropout_rate=config.dropout_rate)
  g_tx, d_tx = (optax.adam(lr, b1=config.beta1, b2=config.beta2) for lr in
                (config.generator_learning_rate, config.discriminator_learning_rate))
  init = jax.jit(lambda root: init_gan_state(generator, discriminator, g_tx, d_tx,
                                             config.latent_dim, dataset.input_shape, root))
  augment_inputs = functools.partial(augment, policy=config.augment,
                                     translation_fraction=config.translation_fraction,
                                     cutout_fraction=config.cutout_fraction)
  return GANParts(generator, discriminator,
                  make_gan_step(generator, discriminator, config.latent_dim, config.ema_decay,
                                augment_inputs, config.r1_weight, config.r1_every),
                  make_eval_step(discriminator_metrics(discriminator)),
                  jax.jit(functools.partial(generate, generator), static_argnames="averaged"),
                  init)


def train_and_judge(config: GANConfig, parts: GANParts, dataset: Dataset, judge: Judge,
                    reference: Reference, seed: int, workdir: str) -> tuple[dict, np.ndarray]:
  """Trains one seed's GAN in workdir/seed_<seed> (resuming its checkpoints), then judges
  `len(train)` samples. Returns its figures and its samples from the fixed latent codes."""
  state = parts.init(jax.random.PRNGKey(seed))
  fixed_z = latent_noise(stream_key(state.key, "fixed_noise"), config.grid_columns ** 2,
                         config.latent_dim)
  grids = os.path.join(workdir, "plots", f"samples_seed{seed}")

  def save_grid(step: int, state) -> None:
    save_sample_grid({f"seed {seed}": np.asarray(parts.sample(state, fixed_z))},
                     os.path.join(grids, f"step_{step:06d}.png"),
                     f"fixed latent codes, step {step}", config.grid_columns)

  # One step per call: the DCGAN's XLA convolutions run ~20x slower inside a scan (train.calls).
  fit_config = FitConfig(num_steps=config.steps, batch_size=config.batch_size, seed=seed,
                         eval_every=config.eval_every, log_every=config.log_every,
                         checkpoint_every=config.checkpoint_every,
                         eval_batch_size=config.eval_batch_size, max_steps_per_call=1)
  state, figures = fit(state, parts.train_step, parts.eval_step, dataset, fit_config,
                       os.path.join(workdir, f"seed_{seed}"),
                       hooks=[Periodic(config.sample_every, save_grid)])
  averaged = judge_samples(config, parts, state, judge, reference, averaged=True)
  last = judge_samples(config, parts, state, judge, reference, averaged=False)
  ratio = averaged["frechet_generated_test"] / reference.figures["frechet_train_test"]
  judged = {"seed": seed, **averaged, "ratio_to_floor": ratio,
            "distance_target_met": bool(ratio <= config.distance_ratio_target),
            "coverage_target_met": averaged["coverage"]["all_classes_above_min"],
            "last_weights": last,
            "discriminator": {k: figures[k] for k in ("train", "val", "test", "gap")
                              if k in figures},
            "generator_params": count_params(state.generator.params),
            "discriminator_params": count_params(state.discriminator.params),
            "train_seconds": figures.get("train_seconds"),
            "steps_per_sec": figures.get("steps_per_sec"),
            "first_call_seconds": figures.get("first_call_seconds")}
  return judged, np.asarray(parts.sample(state, fixed_z))


def judge_samples(config: GANConfig, parts: GANParts, state, judge: Judge, reference: Reference,
                  averaged: bool) -> dict:
  """Fréchet distances to the test and train digits, and class coverage, of `len(train)` samples
  drawn from the generator's weight average (`averaged`) or from its last weights."""
  num_samples = reference.figures["num_reference_samples"]
  z = latent_noise(stream_key(state.key, "eval_noise"), num_samples, config.latent_dim)
  samples = np.concatenate([np.asarray(parts.sample(state, z[i:i + config.eval_batch_size],
                                                    averaged))
                            for i in range(0, num_samples, config.eval_batch_size)])
  probabilities, features = judge.outputs(samples)
  stats = gaussian_stats(features)
  return {"frechet_generated_test": frechet_distance(stats, reference.test_stats),
          "frechet_generated_train": frechet_distance(stats, reference.train_stats),
          "coverage": class_coverage(probabilities, config.min_class_fraction)}


# ---- summary over seeds --------------------------------------------------------------------------

def summarize(config: GANConfig, runs: list[dict]) -> dict:
  """Mean ± std over seeds of every headline figure, and whether the targets are met."""
  d_acc = lambda split: [r["discriminator"][split]["accuracy"] for r in runs
                         if split in r["discriminator"]]
  summary = {
      "frechet_generated_test": mean_std([r["frechet_generated_test"] for r in runs]),
      "frechet_generated_train": mean_std([r["frechet_generated_train"] for r in runs]),
      "frechet_last_weights_test": mean_std([r["last_weights"]["frechet_generated_test"]
                                             for r in runs]),
      "ratio_to_floor": mean_std([r["ratio_to_floor"] for r in runs]),
      "mean_confidence": mean_std([r["coverage"]["mean_confidence"] for r in runs]),
      "min_class_fraction": mean_std([r["coverage"]["min_fraction"] for r in runs]),
      "classes_generated": mean_std([r["coverage"]["classes_generated"] for r in runs]),
      "class_fractions": {"values": [list(r["coverage"]["fractions"]) for r in runs]},
      "discriminator_real_accuracy": {split: mean_std(d_acc(split))
                                      for split in ("train", "val", "test") if d_acc(split)},
  }
  summary["targets"] = {
      "distance_ratio_target": config.distance_ratio_target,
      "min_class_fraction": config.min_class_fraction,
      "distance_met_seeds": sum(r["distance_target_met"] for r in runs),
      "coverage_met_seeds": sum(r["coverage_target_met"] for r in runs),
      "num_seeds": len(runs),
      "all_met": all(r["distance_target_met"] and r["coverage_target_met"] for r in runs)}
  return summary


# ---- command line --------------------------------------------------------------------------------

# The tour's budget: the default config with these fields changed (every compared arm >= 5 seeds).
TOUR = dict(steps=1500, seeds=(0, 1), classifier_steps=600)

EXPERIMENT = Experiment(
    name="gan", config=GANConfig, run=run, records=records, summary=summary, report=markdown_report,
    variants={"smoke": smoke_config, "tour": TOUR}, check=_check)


if __name__ == "__main__":
  EXPERIMENT.command()
