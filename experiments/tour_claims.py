"""The mission's claims, each judged from the numbers of the experiment that tests it.

Every claim is a function of the tour's results (experiment name -> its run() results) that returns
a `Claim`: the measured figure as text, the published anchor, and a verdict computed by a stated
rule (`rule`), never typed by hand. A comparison "A beats B" holds when the mean difference over
seeds exceeds both a margin and two standard errors (`dl_jax.stats.exceeds`).
"""

import dataclasses
from typing import Callable, Mapping

import numpy as np

from dl_jax.stats import difference, exceeds, mean_std, percent

SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported at this budget", "not run"


@dataclasses.dataclass(frozen=True)
class Claim:
  claim: str
  experiment: str
  measured: str
  anchor: str
  rule: str
  supported: bool | None = None  # None: the experiment did not run (or failed)

  @property
  def verdict(self) -> str:
    return NOT_RUN if self.supported is None else SUPPORTED if self.supported else NOT_SUPPORTED


Results = Mapping[str, dict]


def _pct(values) -> str:
  return percent(mean_std(values))


def _diff(a, b) -> str:
  d = difference(a, b)
  return f"{100 * d['mean']:+.1f} ± {100 * d['se']:.1f} (s.e.) points"


# ---- 1. mini-batches ---------------------------------------------------------------------------

def out_of_core(r: dict) -> tuple[str, bool]:
  o = r["out_of_core"]
  loaded, trained = o["load_whole"], o["augmented"]
  gib = lambda n: f"{n / 2**30:.2f}"
  completes = trained["returncode"] == 0
  measured = (f"{gib(o['file_bytes'])} GiB of augmented digits under a {gib(o['memory_cap_bytes'])}"
              f" GiB memory cap: loading the array {'fails' if loaded['returncode'] else 'succeeds'}"
              f"; memory-mapped mini-batch training {'completes' if completes else 'fails'}")
  if completes:
    plain = o["plain"].get("results", {}).get("test", {}).get("accuracy")
    measured += (f" (peak RSS {trained['peak_rss_bytes'] / 2**20:.0f} MiB, mapped file pages "
                 f"included), test "
                 f"{100 * trained['results']['test']['accuracy']:.1f}%"
                 + (f" vs {100 * plain:.1f}% on the plain digits" if plain is not None else ""))
  supported = o["file_bytes"] > o["memory_cap_bytes"] and loaded["returncode"] != 0 and completes
  return measured, supported


def small_batches(r: dict) -> tuple[str, bool]:
  name, sweep = next(iter(r["sweep"].items()))
  runs = {int(b): run for b, run in sweep["runs"].items()}
  full = runs.pop(sweep["num_train"])
  best = max(runs, key=lambda b: runs[b]["final"]["val"]["mean"])  # chosen on validation
  ours, theirs = runs[best]["final"]["test"]["values"], full["final"]["test"]["values"]
  measured = (f"{name}, same epochs: batch {best} (best on validation) {_pct(ours)} test vs full "
              f"batch {_pct(theirs)} ({_diff(ours, theirs)})")
  return measured, exceeds(ours, theirs)


# ---- 2. activations ----------------------------------------------------------------------------

def relu_vs_sigmoid(r: dict) -> tuple[str, bool]:
  dataset = r["config"]["datasets"][0]
  runs = [run for run in r["runs"] if run["dataset"] == dataset]
  depth = max(run["depth"] for run in runs)
  deep = {(run["activation"], run["init"]): run for run in runs if run["depth"] == depth}
  relu, sigmoids = deep[("relu", "he")], [v for (a, _), v in deep.items() if a == "sigmoid"]
  sigmoid = max(sigmoids, key=lambda run: run["mean"]["val"])
  def ratio(run: dict) -> str:
    value = run["geomean"]["0"]["first_last_ratio"]
    return f"{value:.2g}" if value else "0 (underflow)"
  measured = (f"{dataset}, depth {depth}: relu/He {_pct(relu['accuracy']['test'])} vs sigmoid/"
              f"{sigmoid['init']} {_pct(sigmoid['accuracy']['test'])} test; first/last-layer "
              f"gradient-norm ratio at init {ratio(relu)} vs {ratio(sigmoid)}")
  supported = (relu["trains"] and not any(s["trains"] for s in sigmoids)
               and exceeds(relu["accuracy"]["test"], sigmoid["accuracy"]["test"]))
  return measured, supported


# ---- 3. architectures --------------------------------------------------------------------------

def _beats_mlp(model: str) -> Callable[[dict], tuple[str, bool]]:
  def judge(r: dict) -> tuple[str, bool]:
    runs = r["runs"]["mnist1d"]
    ours, mlp = (runs[m]["final"]["test"]["accuracy"]["values"] for m in (model, "mlp"))
    steps = r["config"]["steps"]
    measured = (f"MNIST-1D, {steps} steps: {model} {_pct(ours)} vs MLP {_pct(mlp)} test "
                f"({runs[model]['num_params']:,} vs {runs['mlp']['num_params']:,} parameters)")
    shuffled = r["runs"].get("mnist1d_shuffled", {})
    if model in shuffled and "mlp" in shuffled:
      lost = (shuffled[m]["final"]["test"]["accuracy"]["values"] for m in (model, "mlp"))
      measured += f"; with the time steps shuffled {_diff(*lost)} over the MLP"
    return measured, exceeds(ours, mlp)
  return judge


def translation(r: dict) -> tuple[str, bool]:
  held_out = r["held_out"]
  measured = (f"{held_out['num_numbers']} held-out numbers: exact match "
              f"{100 * held_out['string_exact_match']:.1f}% (greedy)")
  best = held_out["string_exact_match"]
  if "beam" in held_out:
    best = max(best, held_out["beam"]["string_exact_match"])
    measured += f", {100 * held_out['beam']['string_exact_match']:.1f}% (beam)"
  return measured + ", one seed", best >= 0.95


# ---- 4. losses beyond MSE ----------------------------------------------------------------------

def l1_prunes(r: dict) -> tuple[str, bool]:
  sparsity = max(s for s in r["runs"]["l1"]["oneshot"] if float(s) <= 0.95)
  acc = lambda setting: r["runs"][setting]["oneshot"][sparsity]["accuracy"]
  l1, none = acc("l1"), acc("none")
  target = r["targets"]["l1"]["magnitude"]
  measured = (f"one-shot pruning of {100 * float(sparsity):.0f}% of weights: L1 {_pct(l1)} vs no "
              f"penalty {_pct(none)} test; L1 at {100 * target['removed']:.0f}% pruned + fine-tuned "
              f"loses {100 * target['accuracy_loss']:.2f} points")
  return measured, exceeds(l1, none)


def activation_l1_narrows(r: dict) -> tuple[str, bool]:
  run = r["runs"]["activation_l1"]
  structured = run["structured"]
  before, after = run["trained"]["test"]["accuracy"], structured["fine_tuned"]["test"]["accuracy"]
  loss = np.asarray(before) - np.asarray(after)
  fewer = structured["original_flops"] / structured["flops"]
  measured = (f"{fewer:.2f}x fewer FLOPs (hidden {structured['widths']}): test "
              f"{_pct(before)} -> {_pct(after)}, loss {100 * loss.mean():.2f} points")
  return measured, fewer >= 3 and loss.mean() <= 0.01


# ---- 5. biology-like strategies ----------------------------------------------------------------

def _shrinks_gap(strategy: str) -> Callable[[dict], tuple[str, bool]]:
  def judge(r: dict) -> tuple[str, bool]:
    task, results = next(iter(r["tasks"].items()))
    row = results["summary"][strategy]
    change, test = row["gap_change"]["values"], row["test_change"]["values"]
    none = results["summary"]["none"]
    measured = (f"{task}: train-test gap {percent(none['gap_test'], ' pts')} -> "
                f"{percent(row['gap_test'], ' pts')}; test {percent(none['test'])} -> "
                f"{percent(row['test'])}")
    return measured, exceeds(-np.asarray(change), [0.0]) and np.mean(test) >= 0
  return judge


def sharing(r: dict) -> tuple[str, bool]:
  variants = r["variants"]
  shared, unshared = (variants[v]["test_unseen"]["one_shot"]["values"]
                      for v in ("shared", "unshared_equal_params"))
  per_class = r["config"]["train_per_class"] or "all"
  measured = (f"5-way one-shot on unseen classes, {per_class} training digits per class: one "
              f"shared encoder {_pct(shared)} vs two unshared (same parameter count) "
              f"{_pct(unshared)}")
  return measured, exceeds(shared, unshared)


# ---- 6. adversarial training -------------------------------------------------------------------

def robustness(r: dict) -> tuple[str, bool]:
  config = r["config"]
  eps, steps = str(max(config["eval_eps"])), max(config["pgd_eval_steps"])
  under_attack = lambda training: [seed["eps"][eps][f"pgd{steps}"][-1]
                                   for seed in r["runs"][training]["attacked"]]
  pgd, normal = under_attack("pgd"), under_attack("normal")
  checks = {name: check["ok"] for name, check in r["checks"].items()}
  failed = [name for name, ok in checks.items() if not ok]
  starts = config["restarts"] if float(eps) in map(float, config["restart_eps"]) else 1
  measured = (f"PGD-{steps} x {starts} starts at eps {eps}: PGD-trained {_pct(pgd)} vs normally "
              f"trained {_pct(normal)}; gradient-masking checks "
              + ("all pass" if not failed else f"fail: {', '.join(failed)}"))
  return measured, exceeds(pgd, normal, margin=0.3) and not failed


def gan(r: dict) -> tuple[str, bool]:
  s = r["summary"]
  ratios, rarest = s["ratio_to_floor"]["values"], s["min_class_fraction"]["values"]
  target, floor = s["targets"]["distance_ratio_target"], s["targets"]["min_class_fraction"]
  measured = (f"FD to test digits {s['ratio_to_floor']['mean']:.1f} ± "
              f"{s['ratio_to_floor']['std']:.1f} x the real-vs-real floor; rarest class "
              f"{percent(s['min_class_fraction'])} of samples, "
              f"{s['classes_generated']['mean']:.0f} classes")
  return measured, max(ratios) <= target and min(rarest) >= floor


# ---- the table ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ClaimSpec:
  claim: str
  experiment: str
  anchor: str
  rule: str
  judge: Callable[[dict], tuple[str, bool]]


CLAIMS = (
    ClaimSpec("Mini-batches let us train on data that does not fit in memory", "minibatch",
              "— (design goal)", "loading fails under the cap, mini-batch training completes",
              out_of_core),
    ClaimSpec("Small mini-batches generalize better than full-batch training, epoch for epoch",
              "minibatch", "Keskar et al. 2017: large batches generalize worse",
              "best mini-batch beats full batch on test by > 2 s.e.", small_batches),
    ClaimSpec("ReLU trains deep nets where sigmoid stalls", "activations",
              "He et al. 2015 (30 layers: ReLU + He init trains); Glorot & Bengio 2010",
              "relu/He trains, every sigmoid stays below 2x chance, relu beats sigmoid by > 2 s.e.",
              relu_vs_sigmoid),
    ClaimSpec("CNNs beat MLPs on signals", "mnist1d_table",
              "Greydanus 2020: CNN 94% vs MLP 68%", "CNN beats MLP on test by > 2 s.e.",
              _beats_mlp("cnn_mnist1d")),
    ClaimSpec("RNNs beat MLPs on sequences", "mnist1d_table",
              "Greydanus 2020: GRU 91% vs MLP 68%", "GRU beats MLP on test by > 2 s.e.",
              _beats_mlp("gru_mnist1d")),
    ClaimSpec("A seq2seq GRU with attention translates number words", "translate",
              "— (issue target: >= 95% exact match)", "held-out exact match >= 95%", translation),
    ClaimSpec("Weight penalties give sparse models", "sparsity",
              "Han et al. 2015: LeNet-300-100 12x fewer weights, error 1.64% -> 1.59%",
              "after one-shot pruning, L1 beats no penalty on test by > 2 s.e.", l1_prunes),
    ClaimSpec("Activation penalties give cheaper (narrower) models", "sparsity",
              "— (issue target: >= 3x fewer FLOPs for <= 1 point)",
              ">= 3x fewer FLOPs and mean test loss <= 1 point", activation_l1_narrows),
    ClaimSpec("Dropout improves generalization", "regularization",
              "Srivastava et al. 2014: test error 1.60% -> 1.25% (dropout + L2)",
              "gap shrinks by > 2 s.e. (paired seeds) and test accuracy does not fall",
              _shrinks_gap("dropout=0.5")),
    ClaimSpec("DropConnect improves generalization", "regularization",
              "Wan et al. 2013: DropConnect 0.21% vs dropout 0.27% error",
              "gap shrinks by > 2 s.e. (paired seeds) and test accuracy does not fall",
              _shrinks_gap("dropconnect=0.5")),
    ClaimSpec("Parameter sharing improves generalization", "siamese",
              "— (no published figure for this split)",
              "shared beats unshared on unseen classes by > 2 s.e.", sharing),
    ClaimSpec("Adversarial training gives robustness", "adversarial",
              "Madry et al. 2018: 89.6% under PGD-100 x 50 starts, eps 0.3 (60k digits)",
              "PGD-trained beats normal under the strongest attack by > 30 points and > 2 s.e.; "
              "every gradient-masking check passes", robustness),
    ClaimSpec("A generator trained against a discriminator makes realistic digits of every class",
              "gan", "— (issue target: FD <= 5x the real-vs-real floor, every class >= 5%)",
              "every seed: FD ratio <= target and rarest class >= 5%", gan),
)


def judge_claims(results: Results) -> list[Claim]:
  """Every claim, judged from whichever experiments ran (the others say 'not run')."""
  claims = []
  for spec in CLAIMS:
    fields = dict(claim=spec.claim, experiment=spec.experiment, anchor=spec.anchor,
                  rule=spec.rule)
    r = results.get(spec.experiment)
    if r is None:
      claims.append(Claim(measured="—", **fields))
      continue
    try:
      measured, supported = spec.judge(r)
    except KeyError as missing:  # e.g. --only ran a part or a strategy this claim needs
      claims.append(Claim(measured=f"not measured at this budget (no {missing})", **fields))
      continue
    claims.append(Claim(measured=measured, supported=bool(supported), **fields))
  return claims
