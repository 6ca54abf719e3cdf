"""Draws gan's tables and figures from its results (experiments/gan.py runs it)."""

import json
import os

import numpy as np

from dl_jax.gan import save_sample_grid
from dl_jax.plots import plot_mean_std_curves, save_figure, subplots
from dl_jax.stats import plus_minus


# ---- reports -------------------------------------------------------------------------------------

def _pm(stat: dict, scale: float = 1.0, digits: int = 1) -> str:
  return plus_minus(stat, scale, digits)


def headline_table(results: dict) -> list[str]:
  """One row per seed and the mean ± std: distances, ratio, coverage, targets."""
  s, ref, cfg = results["summary"], results["reference"], results["config"]
  lines = ["| seed | FD gen-test | FD gen-train | FD gen-test / floor | classes | min class % | "
           "mean confidence % | D real acc train / val / test % | targets met |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in results["runs"]:
    d = r["discriminator"]
    accs = " / ".join(f"{100 * d[k]['accuracy']:.1f}" for k in ("train", "val", "test") if k in d)
    met = "yes" if r["distance_target_met"] and r["coverage_target_met"] else "no"
    coverage = r["coverage"]
    lines.append(f"| {r['seed']} | {r['frechet_generated_test']:.2f} | "
                 f"{r['frechet_generated_train']:.2f} | {r['ratio_to_floor']:.2f} | "
                 f"{coverage['classes_generated']} | {100 * coverage['min_fraction']:.1f} | "
                 f"{100 * coverage['mean_confidence']:.1f} | {accs} | {met} |")
  d = s["discriminator_real_accuracy"]
  lines.append(f"| mean ± std | {_pm(s['frechet_generated_test'], digits=2)} | "
               f"{_pm(s['frechet_generated_train'], digits=2)} | "
               f"{_pm(s['ratio_to_floor'], digits=2)} | "
               f"{_pm(s['classes_generated'])} | {_pm(s['min_class_fraction'], 100)} | "
               f"{_pm(s['mean_confidence'], 100)} | "
               + " / ".join(_pm(d[k], 100) for k in ("train", "val", "test") if k in d)
               + f" | {s['targets']['distance_met_seeds']}+{s['targets']['coverage_met_seeds']}"
                 f" of {s['targets']['num_seeds']} |")
  lines += ["", f"Reference distances to the test digits: real training digits (floor) "
                f"{ref['frechet_train_test']:.2f}, uniform noise {ref['frechet_noise_test']:.2f}; "
                f"samples from the generator's last weights instead of their average: FD "
                f"{_pm(s['frechet_last_weights_test'], digits=2)}. "
                f"Targets: FD gen-test <= {cfg['distance_ratio_target']:g} x floor, every class "
                f">= {100 * cfg['min_class_fraction']:.0f}% of samples: "
                f"{'met' if s['targets']['all_met'] else 'not met'} "
                f"(distance met by {s['targets']['distance_met_seeds']}, coverage by "
                f"{s['targets']['coverage_met_seeds']} of {s['targets']['num_seeds']} seeds)."]
  return lines


def markdown_report(results: dict) -> str:
  cfg, c, ref = results["config"], results["classifier"], results["reference"]
  run0 = results["runs"][0]
  speed = run0["steps_per_sec"]
  lines = [
      "# GAN: DCGAN on MNIST digits, judged by a classifier", "",
      f"Generator {run0['generator_params']:,} parameters, discriminator "
      f"{run0['discriminator_params']:,}; Adam lr {cfg['generator_learning_rate']} (generator) and "
      f"{cfg['discriminator_learning_rate']} (discriminator), b1 {cfg['beta1']}, b2 "
      f"{cfg['beta2']}; discriminator dropout {cfg['dropout_rate']}, input augmentation "
      f"{', '.join(cfg['augment']) or 'none'}; R1 penalty weight {cfg['r1_weight']} every "
      f"{cfg['r1_every']} steps; samples from the generator's weight average "
      f"(decay {cfg['ema_decay']}); "
      f"batch {cfg['batch_size']}, {cfg['steps']} steps, seeds {list(cfg['seeds'])}; "
      f"{results['dataset']['num_train']} training digits, {results['dataset']['num_val']} "
      f"validation, {results['dataset']['num_test']} test. Wall time "
      f"{results['wall_seconds']:.0f} s" + (f"; seed {run0['seed']} ran {speed:.1f} GAN steps/s"
                                             if speed else "") + ".", "",
      f"Judge: CNN classifier, test accuracy {100 * c['test']['accuracy']:.1f}% (train "
      f"{100 * c['train']['accuracy']:.1f}%, val "
      f"{100 * c.get('val', {}).get('accuracy', float('nan')):.1f}%, train-test gap "
      f"{100 * c['gap']['train_test_accuracy']:.1f} points). Fréchet distances (FD) in its "
      f"{ref['feature_dim']}-d penultimate features, {ref['num_reference_samples']} samples "
      "against the test digits. D real acc: the share of real digits the discriminator calls real.",
      "", *headline_table(results), "",
      "## Class histogram of generated digits (% of samples, mean ± std over seeds)", "",
      "| class | " + " | ".join(str(k) for k in range(len(ref["coverage_test"]["fractions"])))
      + " |", "|---|" + "---|" * len(ref["coverage_test"]["fractions"]),
      "| generated | " + " | ".join(
          f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in zip(
              np.mean(results["summary"]["class_fractions"]["values"], axis=0),
              np.std(results["summary"]["class_fractions"]["values"], axis=0))) + " |",
      "| test digits | " + " | ".join(f"{100 * f:.1f}" for f in ref["coverage_test"]["fractions"])
      + " |",
      "| uniform noise | " + " | ".join(f"{100 * f:.1f}"
                                        for f in ref["coverage_noise"]["fractions"]) + " |"]
  return "\n".join(lines) + "\n"


def summary(results: dict) -> str:
  """What the command prints: the headline figures."""
  return "\n".join(headline_table(results))


# ---- plots ---------------------------------------------------------------------------------------

def _logged_curves(directory: str) -> dict[str, tuple[list[int], list[float]]]:
  """Per logged training metric: (steps, values) from a seed's metrics.jsonl."""
  curves = {}
  with open(os.path.join(directory, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"):
        if key in record:
          steps, values = curves.setdefault(key, ([], []))
          steps.append(record["step"])
          values.append(record[key])
  return curves


def plot_losses(runs: list[dict], workdir: str, directory: str) -> str:
  """Both players' losses and D's mean output on real and fake images, mean ± std over seeds."""
  per_seed = [_logged_curves(os.path.join(workdir, f"seed_{r['seed']}")) for r in runs]
  steps = per_seed[0]["train/d_loss"][0]
  curves = {key.removeprefix("train/"): (steps, np.stack([c[key][1] for c in per_seed], axis=1))
            for key in per_seed[0]}
  return plot_mean_std_curves(curves, os.path.join(directory, "losses.png"), "value",
                              "GAN training: losses and D's mean output (mean ± std over seeds)")


def plot_class_histogram(results: dict, directory: str) -> str:
  """Share of generated digits per predicted class (mean ± std over seeds), test digits beside."""
  fractions = np.asarray(results["summary"]["class_fractions"]["values"], dtype=float)
  test = np.asarray(results["reference"]["coverage_test"]["fractions"])
  classes = np.arange(len(test))
  fig, ax = subplots(figsize=(7, 4))
  ax.bar(classes - 0.2, 100 * fractions.mean(0), 0.4, yerr=100 * fractions.std(0),
         label="generated")
  ax.bar(classes + 0.2, 100 * test, 0.4, label="test digits")
  ax.axhline(100 * results["config"]["min_class_fraction"], color="k", ls="--", lw=1,
             label="target minimum")
  ax.set(xticks=classes, xlabel="class predicted by the judge", ylabel="% of samples",
         title="Mode coverage")
  ax.legend(fontsize=8)
  return save_figure(fig, os.path.join(directory, "class_histogram.png"))


def plot_final_samples(panels: dict[str, np.ndarray], directory: str) -> str:
  """One grid of samples per seed (`panels`: title -> images), from the fixed latent codes."""
  columns = int(round(len(next(iter(panels.values()))) ** 0.5))
  return save_sample_grid(panels, os.path.join(directory, "samples_final.png"),
                          "final samples from fixed latent codes", columns)
