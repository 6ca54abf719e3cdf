"""Draws adversarial's tables and figures from its results (experiments/adversarial.py runs it)."""

import os

import numpy as np

from dl_jax.plots import save_figure, subplots
from dl_jax.stats import mean_std, plus_minus

# Madry et al. 2018, MNIST challenge white-box leaderboard, eps 0.3, full 60k training set (%).
MADRY = {"clean": 98.8, "fgsm": 96.4, "pgd100": 92.5, "pgd100_50_restarts": 89.6}


def figure(run: dict, eps: float, attack: str, restarts: int | None = None) -> np.ndarray:
  """Per-seed test accuracy under `attack` at `eps` after `restarts` starts (default: all)."""
  values = []
  for seed_figures in run["attacked"]:
    curve = seed_figures["eps"][str(eps)][attack]
    values.append(curve[min(restarts or len(curve), len(curve)) - 1])
  return np.asarray(values)


def clean_test(run: dict) -> np.ndarray:
  return np.asarray(run["clean"]["test"]["accuracy"])


# ---- reports -----------------------------------------------------------------------------------

def _ordered_runs(results: dict) -> list[tuple[str, dict]]:
  """(training, run) in the config's order (results.json stores its keys sorted)."""
  return [(training, results["runs"][training]) for training in results["config"]["trainings"]]


def _pm(values) -> str:
  return plus_minus(mean_std(values))


def accuracy_table(results: dict) -> list[str]:
  """Test accuracy (%) per training method and eps: clean, noise, FGSM, PGD-k (1 start / all)."""
  config = results["config"]
  steps, restarts = sorted(config["pgd_eval_steps"]), config["restarts"]
  pgd_heads = [f"PGD-{k}" for k in steps[:-1]] + [
      f"PGD-{steps[-1]} (1 start / {restarts} starts at eps "
      f"{', '.join(map(str, config['restart_eps']))})"]
  lines = ["| training | eps | clean | noise | FGSM | " + " | ".join(pgd_heads) + " |",
           "|---|---|---|---|---|" + "---|" * len(steps)]

  def cell(run, eps, attack):
    first, last = figure(run, eps, attack, 1), figure(run, eps, attack)
    many = len(run["attacked"][0]["eps"][str(eps)][attack]) > 1
    return f"{_pm(first)} / {_pm(last)}" if many else _pm(first)

  for training, run in _ordered_runs(results):
    for eps in config["eval_eps"]:
      pgds = [cell(run, eps, f"pgd{k}") for k in steps]
      lines.append(f"| {training} | {eps} | {_pm(clean_test(run))} | "
                   f"{_pm(figure(run, eps, 'noise'))} | {_pm(figure(run, eps, 'fgsm'))} | "
                   + " | ".join(pgds) + " |")
  return lines


def generalization_table(results: dict) -> list[str]:
  """Clean accuracy on train / val / test, and PGD accuracy at the training eps on each."""
  config = results["config"]
  k = min(config["pgd_eval_steps"])
  splits = [s for s in ("train", "val", "test") if s in _ordered_runs(results)[0][1]["clean"]]
  lines = ["| training | " + " | ".join(f"clean {s}" for s in splits) + " | clean gap (train-test) "
           "| " + " | ".join(f"PGD-{k} {s}" for s in splits) + " | robust gap (train-test) | "
           "train s | attacks s |", "|---|" + "---|" * (2 * len(splits) + 4)]
  for training, run in _ordered_runs(results):
    clean = {s: np.asarray(run["clean"][s]["accuracy"]) for s in splits}
    robust = {s: np.asarray([f["robust_splits"][s] for f in run["attacked"]]) for s in splits}
    lines.append(f"| {training} | " + " | ".join(_pm(clean[s]) for s in splits)
                 + f" | {_pm(clean['train'] - clean['test'])} | "
                 + " | ".join(_pm(robust[s]) for s in splits)
                 + f" | {_pm(robust['train'] - robust['test'])} | {run['train_seconds']:.0f}"
                 f"{'†' if run.get('resumed_from_step') else ''} | {run['attack_seconds']:.0f} |")
  if any(run.get("resumed_from_step") for _, run in _ordered_runs(results)):
    lines += ["", "† resumed from its checkpoints: the seconds of this rerun only."]
  return lines


def checks_lines(results: dict) -> list[str]:
  lines = []
  for name, check in results["checks"].items():
    failed = [c for c in check["cases"] if not c["ok"]]
    detail = "" if not failed else " — fails for " + "; ".join(
        f"{c['training']} eps {c['eps']}" + (f" restarts {c['restarts']}" if "restarts" in c
                                              else "") + (f": {c['accuracy']}" if "accuracy" in c
                                                          else "") for c in failed)
    excess = max((c.get("excess", 0.0) for c in check["cases"]), default=0.0)
    note = (f" (largest rise of a stronger attack over a weaker one: {100 * excess:+.1f} points; "
            f"tolerance {100 * results['config']['check_tolerance']:.1f})"
            if any("excess" in c for c in check["cases"]) else "")
    lines.append(f"- {name}: {'pass' if check['ok'] else 'FAIL'}{note}{detail}")
  large = results["checks"]["large_eps_to_zero"]["cases"]
  if large:
    lines.append("- PGD accuracy at eps " + str(large[0]["eps"]) + ": " + ", ".join(
        f"{c['training']} {_pm(c['accuracy'])}" for c in large))
  return lines


def markdown_report(results: dict) -> str:
  config = results["config"]
  setup = [
      "# Robustness on MNIST: FGSM / PGD attacks against four training methods", "",
      f"CNN: convs {config['channels']} ({config['kernel_size']}x{config['kernel_size']}, "
      f"stride 2), Dense {config['width']}, {results['params']:,} parameters; trained on "
      f"{results['dataset']['num_train']} digits ({results['dataset']['num_val']} held out for "
      f"validation), Adam {config['learning_rate']} cosine, batch {config['batch_size']}, "
      f"{config['steps']} steps, train eps {config['train_eps']} (ramped over "
      f"{config['eps_ramp_steps']} steps), PGD-{config['pgd_train_steps']} training, FGSM step "
      f"{config['fgsm_relative_step']} eps with random start; the learned adversary is a conv "
      f"generator {config['adversary_channels']} of (x, noise) with eps * tanh output. Seeds "
      f"{config['seeds']}; accuracy in %, mean ± std over seeds; wall time "
      f"{results['wall_seconds']:.0f} s (all seconds: wall time on a shared CPU). "
      f"PGD-k evaluation: step {config['eval_relative_step']} eps / k, random start; with "
      f"restarts an example counts as robust only if every start fails.", "",
      "## Test accuracy under attack", ""]
  return "\n".join(setup + accuracy_table(results) + [
      "", f"Madry et al. 2018 (60k training digits, eps 0.3): clean {MADRY['clean']}, FGSM "
      f"{MADRY['fgsm']}, PGD-100 {MADRY['pgd100']}, PGD-100 with 50 restarts "
      f"{MADRY['pgd100_50_restarts']}.", "",
      f"## Generalization (PGD at eps {config['train_eps']}, one start)", ""]
      + generalization_table(results) + ["", "## Sanity checks", ""] + checks_lines(results)) + "\n"


def summary(results: dict) -> str:
  """What the command prints: the headline figures."""
  return "\n".join(accuracy_table(results) + [""] + checks_lines(results))


# ---- figures -----------------------------------------------------------------------------------

def plot_accuracy_vs_eps(results: dict, directory: str) -> str:
  """A panel per attack, a line per training method: test accuracy against eps (0 = clean)."""
  config = results["config"]
  steps = sorted(config["pgd_eval_steps"])
  panels = ["noise", "fgsm"] + [f"pgd{k}" for k in steps]
  fig, axes = subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), sharey=True)
  for ax, attack in zip(axes, panels):
    for training, run in _ordered_runs(results):
      eps = [0.0] + list(config["eval_eps"])
      values = [clean_test(run)] + [figure(run, e, attack) for e in config["eval_eps"]]
      if attack == f"pgd{steps[0]}":  # the large-eps sanity points were attacked with PGD-k_min
        eps += list(config["large_eps"])
        values += [np.asarray([s["large_eps"][str(e)] for s in run["attacked"]])
                   for e in config["large_eps"]]
      values = 100 * np.asarray(values, dtype=float)
      ax.errorbar(eps, values.mean(axis=1), yerr=values.std(axis=1), marker="o", label=training,
                  capsize=2)
    restarts = (f", {config['restarts']} starts at eps {', '.join(map(str, config['restart_eps']))}"
                if attack == f"pgd{steps[-1]}" else "")
    ax.set(title=f"{attack.upper()}{restarts}", xlabel="eps (L-inf, pixels in [0, 1])")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("test accuracy (%)")
  axes[-1].legend(fontsize=8)
  return save_figure(fig, os.path.join(directory, "accuracy_vs_eps.png"))
