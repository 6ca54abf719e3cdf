"""Draws sparsity's tables and figure from its results (experiments/sparsity.py runs it)."""

import os

import numpy as np

from dl_jax.plots import colour_cycle, save_figure, subplots
from dl_jax.stats import mean_std, plus_minus


def _mean_std(values) -> tuple[float, float]:
  values = np.asarray(values, dtype=float)
  return float(values.mean()), float(values.std(ddof=1) if values.size > 1 else 0.0)


def _pm(values, scale: float = 100, digits: int = 1) -> str:
  return plus_minus(mean_std(values), scale, digits)


def markdown_report(results: dict) -> str:
  config = results["config"]
  lines = [
      "# Sparsity and efficient deployment: LeNet-300-100 on mnist", "",
      f"MLP 784-{'-'.join(map(str, config['widths']))}-10 (ReLU), Adam lr "
      f"{config['learning_rate']}, batch {config['batch_size']}, {config['steps']} steps; "
      f"{results['dataset']['num_train']} train / {results['dataset']['num_val']} val / "
      f"{results['dataset']['num_test']} test digits; seeds {config['seeds']}, mean ± std; "
      f"accuracy in %. Penalties: L2 {config['l2']} x 0.5 sum w^2, L1 {config['l1']} x sum |w| "
      f"(kernels only, biases excluded), elastic = both, activation L1 "
      f"{config['activation_l1']} x sum |a| over hidden units. Wall time "
      f"{results['wall_seconds']:.0f} s on {results['device']}.", ""]
  lines += _training_table(results) + _pruning_table(results) + _deployment_table(results)
  lines += _structured_table(results) + _targets_section(results)
  return "\n".join(lines) + "\n"


def _training_table(results: dict) -> list[str]:
  lines = ["## Trained (before pruning)", "",
           "| setting | train | val | test | gap train-test | gap train-val | zero weights | "
           "zero activations (test) |", "|---|---|---|---|---|---|---|---|"]
  for setting, r in results["runs"].items():
    t = r["trained"]
    lines.append(f"| {setting} | {_pm(t['train']['accuracy'])} | {_pm(t['val']['accuracy'])} | "
                 f"{_pm(t['test']['accuracy'])} | {_pm(t['gap']['train_test'])} | "
                 f"{_pm(t['gap']['train_val'])} | {_pm([w['overall'] for w in t['weights']])} | "
                 f"{_pm(t['test']['zero_activations'])} |")
  return lines + [""]


def _pruning_table(results: dict) -> list[str]:
  config = results["config"]
  layers = list(next(iter(results["runs"].values()))["trained"]["weights"][0]["layers"])
  lines = ["## Magnitude pruning, iterative with fine-tuning", "",
           f"Magnitude pruning ({config['prune_scope']} threshold) to each sparsity in turn, "
           f"{config['fine_tune_steps']} fine-tuning steps per round (Adam lr "
           f"{config['fine_tune_learning_rate']}, pruned weights frozen at 0, same penalty). "
           "'one-shot' prunes the trained model to that sparsity without any fine-tuning.", "",
           "| setting | sparsity | test unpruned | one-shot | pruned (before FT) | "
           "fine-tuned test | "
           "train | val | gap train-test | zero weights, all | " + " | ".join(layers)
           + " | zero act. |",
           "|---" * (11 + len(layers)) + "|"]
  for setting, r in results["runs"].items():
    base = r["trained"]["test"]["accuracy"]
    for x in r["iterative"]:
      oneshot = r["oneshot"].get(str(x["sparsity"]))
      ft = x["fine_tuned"]
      per_layer = " | ".join(_pm([w["layers"][n] for w in x["weights"]]) for n in layers)
      lines.append(
          f"| {setting} | {100 * x['sparsity']:.0f}% | {_pm(base)} | "
          f"{_pm(oneshot['accuracy']) if oneshot else '-'} | {_pm(x['pruned_test']['accuracy'])} "
          f"| {_pm(ft['test']['accuracy'])} | {_pm(ft['train']['accuracy'])} | "
          f"{_pm(ft['val']['accuracy'])} | {_pm(ft['gap']['train_test'])} | "
          f"{_pm([w['overall'] for w in x['weights']])} | {per_layer} | "
          f"{_pm(ft['test']['zero_activations'])} |")
  return lines + [""]


def _rate(value: float) -> str:
  return f"{value:,.0f}"


def _deployment_table(results: dict) -> list[str]:
  config = results["config"]
  sizes = config["timing_batch_sizes"]
  lines = ["## Deployment of the pruned model", "",
           f"The model pruned to {100 * config['target_sparsity']:.0f}% and fine-tuned (seed "
           f"{config['seeds'][0]}). Sizes: bytes of np.savez (raw dense) and np.savez_compressed "
           "(dense with zeros; CSR values + narrowest-integer indices). Throughput: examples/s, "
           "median of 5 timings, at batch " + " and ".join(map(str, sizes)) + "; dense numpy "
           "(BLAS), scipy.sparse CSR (float32), jitted JAX dense. Speeds depend on the machine "
           "and on what else runs on it: compare columns of one run, not runs.", "",
           "| setting | nonzero weights | dense raw | dense compressed | CSR compressed | "
           "raw / CSR | " + " | ".join(f"{n} b={b}" for n in ("dense numpy", "CSR", "dense jax")
                                        for b in sizes) + " |",
           "|---" * (6 + 3 * len(sizes)) + "|"]
  for setting, r in results["runs"].items():
    d = r["deployment"]
    speeds = " | ".join(_rate(d["examples_per_second"][n][str(b)])
                        for n in ("dense_numpy", "sparse_csr", "dense_jax") for b in sizes)
    lines.append(f"| {setting} | {d['nonzero_weights']:,} | {d['dense_bytes']:,} | "
                 f"{d['dense_compressed_bytes']:,} | {d['sparse_compressed_bytes']:,} | "
                 f"{d['dense_bytes'] / d['sparse_compressed_bytes']:.1f}x | {speeds} |")
  return lines + [""]


def _structured_table(results: dict) -> list[str]:
  config = results["config"]
  sizes = config["timing_batch_sizes"]
  first = next(iter(results["runs"].values()))["structured"]
  lines = ["## Structured pruning: removing whole neurons", "",
           f"Each hidden layer keeps its {first['widths']} units of highest mean |activation| on "
           f"{config['score_examples']} training examples; the narrower dense MLP is fine-tuned "
           f"for {config['structured_steps']} steps (Adam lr "
           f"{config['structured_learning_rate']}, same penalty). Parameters "
           f"{first['original_params']:,} -> "
           f"{first['params']:,}; FLOPs per example {first['original_flops']:,} -> "
           f"{first['flops']:,} ({first['original_flops'] / first['flops']:.2f}x fewer). "
           "'dead' = units whose activation is 0 on every scoring example (per layer, mean over "
           "seeds). Throughput (examples/s, seed 0) of the original and the "
           "narrow model, jitted JAX and numpy.", "",
           "| setting | dead units | test before | narrow, no FT | narrow fine-tuned | train | "
           "gap train-test | " + " | ".join(f"{n} b={b}" for n in ("orig jax", "narrow jax",
                                                                   "orig numpy", "narrow numpy")
                                            for b in sizes) + " |",
           "|---" * (7 + 4 * len(sizes)) + "|"]
  for setting, r in results["runs"].items():
    s = r["structured"]
    dead = "/".join(f"{np.mean(layer):.0f}" for layer in np.asarray(s["dead_units"]).T)
    speeds = " | ".join(_rate(s["examples_per_second"][n][str(b)])
                        for n in ("original_jax", "narrow_jax", "original_numpy", "narrow_numpy")
                        for b in sizes)
    ft = s["fine_tuned"]
    lines.append(f"| {setting} | {dead} | {_pm(r['trained']['test']['accuracy'])} | "
                 f"{_pm(s['cut_test']['accuracy'])} | {_pm(ft['test']['accuracy'])} | "
                 f"{_pm(ft['train']['accuracy'])} | {_pm(ft['gap']['train_test'])} | {speeds} |")
  return lines + [""]


def _targets_section(results: dict) -> list[str]:
  lines = ["## Targets (Han et al. 2015), computed from the figures above", "",
           "| setting | weights removed | test loss (points) | >= 90% for <= 1 point | "
           "FLOPs reduction | narrow/original speed (jax, largest batch) | test loss (points) | "
           ">= 3x, faster, <= 1 point |", "|---|---|---|---|---|---|---|---|"]
  for setting, t in results["targets"].items():
    m, s = t["magnitude"], t["structured"]
    lines.append(f"| {setting} | {100 * m['removed']:.1f}% | {100 * m['accuracy_loss']:.2f} | "
                 f"{'met' if m['met'] else 'not met'} | {s['flops_reduction']:.2f}x | "
                 f"{s['speedup_jax']:.2f}x | {100 * s['accuracy_loss']:.2f} | "
                 f"{'met' if s['met'] else 'not met'} |")
  return lines + ["", "'faster' compares the two models' throughput measured one after the other "
                  "in this run."]


def plot_accuracy_vs_sparsity(results: dict, directory: str) -> str:
  """Test accuracy against the fraction of weights kept (log scale, so 90% and 95% sparsity are
  apart): one-shot (dashed) and iterative with fine-tuning (solid). Left: L1 against L2 (and no
  penalty); right: every setting."""
  runs = results["runs"]
  colours = dict(zip(runs, colour_cycle()))
  panels = [("L1 vs L2", [s for s in ("none", "l2", "l1") if s in runs]), ("all settings", runs)]
  fig, axes = subplots(1, 2, figsize=(12, 4.8), sharey=True)
  for ax, (title, settings) in zip(axes, panels):
    for setting in settings:
      r = runs[setting]
      base = _mean_std(r["trained"]["test"]["accuracy"])
      oneshot = [(float(s), _mean_std(v["accuracy"])) for s, v in r["oneshot"].items()]
      tuned = [(x["sparsity"], _mean_std(x["fine_tuned"]["test"]["accuracy"]))
               for x in r["iterative"]]
      for points, style, label in ((oneshot, "--", "one-shot"), (tuned, "-", "fine-tuned")):
        points = [(0.0, base)] + points
        ax.errorbar([1 - s for s, _ in points], [100 * m for _, (m, _) in points],
                    [100 * d for _, (_, d) in points], ls=style, marker="o", ms=3,
                    color=colours[setting], alpha=0.6 if style == "--" else 1.0,
                    label=f"{setting}, {label}")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set(xlabel="fraction of weights kept (log scale)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
  axes[0].set_ylabel("test accuracy (%)")
  fig.suptitle("Magnitude pruning of LeNet-300-100 on mnist (mean ± std over seeds)")
  return save_figure(fig, os.path.join(directory, "accuracy_vs_sparsity.png"))


def summary(results: dict) -> str:
  """What the command prints: the headline figures."""
  return "\n".join(_targets_section(results))
