"""The mission's claims, each judged by a stated test on the records of the experiment behind it.

A claim is a query over the tour's long-form records (`dl_jax.lab.records`) and a verdict:
- a comparison over seeds ("A beats B") is a one-sided t-test at alpha = 0.05, paired by seed where
  both arms ran the same seeds (`dl_jax.lab.verdicts.compare`): supported, not supported, or
  refuted when the opposite effect is significant. The report shows the effect, its 95% CI and p.
- a rate over examples (exact match) is an exact binomial test against its target.
- a design check (the data do not fit, training completes) or a per-seed target is a check: it
  holds or it does not, and the rule says which.
Conditions beside the test (e.g. every gradient-masking check passes) turn "supported" into "not
supported" when they fail. Nothing here knows how an experiment stores its own results.
"""

import dataclasses
import re
from typing import Callable

import numpy as np

from dl_jax.lab.records import Records, paired_values
from dl_jax.lab.verdicts import NOT_SUPPORTED, REFUTED, SUPPORTED, Comparison, Proportion, compare
from dl_jax.stats import mean_std, percent

NOT_RUN, NOT_MEASURED = "not run", "not measured"


@dataclasses.dataclass(frozen=True)
class Judgement:
  measured: str  # the figures, as text
  evidence: str  # the test and its outcome, or the check
  verdict: str


@dataclasses.dataclass(frozen=True)
class Claim:
  claim: str
  experiment: str
  measured: str
  evidence: str
  anchor: str
  rule: str
  verdict: str


def _pct(values) -> str:
  return percent(mean_std(values))


def _test(comparison: Comparison, conditions: dict[str, bool] | None = None) -> Judgement:
  """The comparison's verdict, held back to "not supported" by a failed condition."""
  failed = [name for name, ok in (conditions or {}).items() if not ok]
  verdict = comparison.verdict
  if verdict == SUPPORTED and failed:
    verdict = NOT_SUPPORTED
  evidence = comparison.describe() + (f"; failed: {', '.join(failed)}" if failed else "")
  return Judgement("", evidence, verdict)


def _check(holds: bool, what: str) -> Judgement:
  return Judgement("", f"check: {what}", SUPPORTED if holds else NOT_SUPPORTED)


def _with(judgement: Judgement, measured: str) -> Judgement:
  return dataclasses.replace(judgement, measured=measured)


def _paired(a: Records, b: Records, margin: float = 0.0) -> tuple[Comparison, list, list]:
  """The paired comparison of a and b over the seeds both ran, and those values."""
  x, y = paired_values(a, b)
  return compare(x, y, paired=True, margin=margin), x, y


# ---- 1. mini-batches ---------------------------------------------------------------------------

def out_of_core(r: Records) -> Judgement:
  o = r.where(dataset=lambda d: "memory-mapped" in d)
  fig = lambda arm, metric: o.where(arm=arm, metric=metric).one()
  gib = lambda n: f"{n / 2**30:.2f}"
  size, cap = fig("data", "file_bytes"), fig("data", "memory_cap_bytes")
  loads, completes = fig("load whole array", "completes"), fig("mini-batches", "completes")
  measured = (f"{gib(size)} GiB of augmented digits under a {gib(cap)} GiB memory cap: loading the "
              f"array {'succeeds' if loads else 'fails'}; memory-mapped mini-batch training "
              f"{'completes' if completes else 'fails'}")
  if completes:
    test = o.where(arm="mini-batches", metric="accuracy").one()
    plain = o.where(arm="mini-batches, plain digits", metric="accuracy")
    measured += (f" (peak RSS {fig('mini-batches', 'peak_rss_bytes') / 2**20:.0f} MiB, mapped file "
                 f"pages included), test {100 * test:.1f}%"
                 + (f" vs {100 * plain.one():.1f}% on the plain digits" if len(plain) else ""))
  holds = size > cap and not loads and bool(completes)
  return _with(_check(holds, "file > cap, loading fails, mini-batch training completes"),
               measured)


def small_batches(r: Records) -> Judgement:
  acc = r.where(metric="accuracy", dataset=lambda d: "memory-mapped" not in d)
  dataset = acc.distinct("dataset")[0]
  acc = acc.where(dataset=dataset)
  arms = [a for a in acc.distinct("arm") if a != "full batch"]
  best = max(arms, key=lambda a: np.mean(acc.where(arm=a, split="val").values()))  # on validation
  comparison, ours, full = _paired(acc.where(arm=best, split="test"),
                                   acc.where(arm="full batch", split="test"))
  measured = (f"{dataset}, same epochs: {best} (best on validation) {_pct(ours)} test vs full batch "
              f"{_pct(full)}")
  return _with(_test(comparison), measured)


# ---- 2. activations ----------------------------------------------------------------------------

def relu_vs_sigmoid(r: Records) -> Judgement:
  dataset = r.distinct("dataset")[0]
  r = r.where(dataset=dataset)
  depth = max(int(re.search(r"depth (\d+)", a).group(1)) for a in r.distinct("arm"))
  deep = r.where(arm=lambda a: a.endswith(f", depth {depth}"))
  relu = f"relu/he, depth {depth}"
  sigmoids = [a for a in deep.distinct("arm") if a.startswith("sigmoid/")]
  accuracy = deep.where(metric="accuracy")
  sigmoid = max(sigmoids, key=lambda a: np.mean(accuracy.where(arm=a, split="val").values()))
  comparison, ours, theirs = _paired(accuracy.where(arm=relu, split="test"),
                                     accuracy.where(arm=sigmoid, split="test"))
  trains = lambda arm: bool(deep.where(arm=arm, metric="trains").one())
  ratio = lambda arm: deep.where(arm=arm, metric="first_last_gradient_ratio_at_init").one()
  shown = lambda v: f"{v:.2g}" if v else "0 (underflow)"
  measured = (f"{dataset}, depth {depth}: relu/He {_pct(ours)} vs {sigmoid.split(',')[0]} "
              f"{_pct(theirs)} test; first/last-layer gradient-norm ratio at init "
              f"{shown(ratio(relu))} vs {shown(ratio(sigmoid))}")
  conditions = {"relu/He trains": trains(relu),
                "every sigmoid stays below 2x chance": not any(map(trains, sigmoids))}
  return _with(_test(comparison, conditions), measured)


# ---- 3. architectures --------------------------------------------------------------------------

def _beats_mlp(model: str) -> Callable[[Records], Judgement]:
  def judge(r: Records) -> Judgement:
    test = r.where(metric="accuracy", split="test")
    comparison, ours, mlp = _paired(test.where(dataset="mnist1d", arm=model),
                                    test.where(dataset="mnist1d", arm="mlp"))
    params = lambda arm: int(r.where(dataset="mnist1d", arm=arm, metric="num_params").one())
    measured = (f"MNIST-1D: {model} {_pct(ours)} vs MLP {_pct(mlp)} test ({params(model):,} vs "
                f"{params('mlp'):,} parameters)")
    shuffled = test.where(dataset="mnist1d_shuffled")
    if {model, "mlp"} <= set(shuffled.distinct("arm")):
      lost, _, _ = _paired(shuffled.where(arm=model), shuffled.where(arm="mlp"))
      measured += f"; with the time steps shuffled {100 * lost.effect:+.1f} points over the MLP"
    return _with(_test(comparison), measured)
  return judge


def translation(r: Records) -> Judgement:
  held_out = r.where(split="held_out")
  trials = int(held_out.where(metric="num_numbers").one())
  greedy = held_out.where(arm="seq2seq, greedy", metric="exact_match").one()
  beam = held_out.where(arm="seq2seq, beam", metric="exact_match")
  measured = (f"{trials} held-out numbers: exact match {100 * greedy:.2f}% (greedy)"
              + (f", {100 * beam.one():.2f}% (beam)" if len(beam) else "") + ", one seed")
  test = Proportion(round(greedy * trials), trials, 0.95)
  return Judgement(measured, test.describe(), test.verdict)


# ---- 4. losses beyond MSE ----------------------------------------------------------------------

def l1_prunes(r: Records) -> Judgement:
  pruned = {m: float(re.match(r"accuracy, ([\d.]+) of weights pruned", m).group(1))
            for m in r.distinct("metric") if m.startswith("accuracy, ")}
  metric = max((m for m, s in pruned.items() if s <= 0.95), key=pruned.get)
  oneshot = r.where(metric=metric)
  comparison, l1, none = _paired(oneshot.where(arm="l1, dense"), oneshot.where(arm="none, dense"))
  tuned = r.where(arm="l1, pruned + fine-tuned")
  measured = (f"one-shot pruning of {100 * pruned[metric]:.0f}% of weights: L1 {_pct(l1)} vs no "
              f"penalty {_pct(none)} test; L1 at {100 * tuned.where(metric='removed').one():.0f}% "
              f"pruned + fine-tuned loses "
              f"{100 * tuned.where(metric='accuracy_loss').one():.2f} points")
  return _with(_test(comparison), measured)


def activation_l1_narrows(r: Records) -> Judgement:
  test = r.where(metric="accuracy", split="test")
  # non-inferiority: narrow - dense > -1 point, paired by seed
  comparison, after, before = _paired(test.where(arm="activation_l1, narrow"),
                                      test.where(arm="activation_l1, dense"), margin=-0.01)
  fewer = r.where(arm="activation_l1, narrow", metric="fewer_flops").one()
  measured = (f"{fewer:.2f}x fewer FLOPs: test {_pct(before)} -> {_pct(after)} "
              f"({100 * (np.mean(before) - np.mean(after)):.2f} points lost)")
  return _with(_test(comparison, {">= 3x fewer FLOPs": fewer >= 3}), measured)


# ---- 5. biology-like strategies ----------------------------------------------------------------

def _gaps(acc: Records, arm: str) -> Records:
  """Per-seed train - test gaps of one arm, as records."""
  train, test = acc.where(arm=arm, split="train").by_seed(), acc.where(arm=arm, split="test")
  return Records(dataclasses.replace(t, split="train - test", value=train[t.seed] - t.value)
                 for t in test)


def _shrinks_gap(strategy: str) -> Callable[[Records], Judgement]:
  def judge(r: Records) -> Judgement:
    dataset = r.distinct("dataset")[0]
    acc = r.where(dataset=dataset, metric="accuracy")
    comparison, none_gap, gap = _paired(_gaps(acc, "none"), _gaps(acc, strategy))
    test_change, test, none_test = _paired(acc.where(arm=strategy, split="test"),
                                           acc.where(arm="none", split="test"))
    measured = (f"{dataset}: train-test gap {percent(mean_std(none_gap), ' pts')} -> "
                f"{percent(mean_std(gap), ' pts')}; test {_pct(none_test)} -> {_pct(test)}")
    return _with(_test(comparison, {"test accuracy does not fall significantly":
                                    test_change.verdict != REFUTED}), measured)
  return judge


def sharing(r: Records) -> Judgement:
  unseen = r.where(dataset=lambda d: d.endswith("unseen classes"), metric="one_shot")
  comparison, shared, unshared = _paired(unseen.where(arm="shared"),
                                         unseen.where(arm="unshared_equal_params"))
  pixels = unseen.where(arm="pixels")
  measured = (f"5-way one-shot on unseen classes ({unseen.distinct('dataset')[0]}): one shared "
              f"encoder {_pct(shared)} vs two unshared (same parameter count) {_pct(unshared)}"
              + (f"; nearest neighbour on raw pixels {100 * pixels.one():.1f}%" if len(pixels)
                 else ""))
  return _with(_test(comparison), measured)


# ---- 6. adversarial training -------------------------------------------------------------------

ATTACK = re.compile(r"accuracy under PGD-(\d+) x (\d+) at eps ([\d.]+)")


def robustness(r: Records) -> Judgement:
  attacks = {m: ATTACK.fullmatch(m) for m in r.distinct("metric")}
  strongest = max((m for m, a in attacks.items() if a),
                  key=lambda m: (float(attacks[m].group(3)), int(attacks[m].group(1)),
                                 int(attacks[m].group(2))))
  steps, starts, eps = attacks[strongest].groups()
  attacked = r.where(metric=strongest)
  comparison, pgd, normal = _paired(attacked.where(arm="pgd"), attacked.where(arm="normal"),
                                    margin=0.3)
  checks = r.where(arm="gradient-masking check")
  failed = [c.metric for c in checks if not c.value]
  measured = (f"PGD-{steps} x {starts} starts at eps {eps}: PGD-trained {_pct(pgd)} vs normally "
              f"trained {_pct(normal)}; gradient-masking checks "
              + ("all pass" if not failed else f"fail: {', '.join(failed)}"))
  return _with(_test(comparison, {"every gradient-masking check passes": not failed}), measured)


def gan(r: Records) -> Judgement:
  generator = r.where(arm="generator")
  ratios = generator.where(metric="ratio_to_floor").values()
  rarest = generator.where(metric="min_class_fraction").values()
  classes = generator.where(metric="classes_generated").values()
  target = r.where(arm="target", metric="distance_ratio_target").one()
  floor = r.where(arm="target", metric="min_class_fraction").one()
  measured = (f"FD to test digits {np.mean(ratios):.1f} ± {np.std(ratios, ddof=1):.1f} x the "
              f"real-vs-real floor; rarest class {_pct(rarest)} of samples, "
              f"{np.mean(classes):.0f} classes, {len(ratios)} seeds")
  holds = max(ratios) <= target and min(rarest) >= floor
  return _with(_check(holds, f"every seed: FD ratio <= {target:g} and rarest class >= "
                             f"{100 * floor:g}%"), measured)


# ---- the table ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ClaimSpec:
  claim: str
  experiment: str
  anchor: str
  rule: str
  judge: Callable[[Records], Judgement]


PAIRED_RULE = "one-sided paired t-test over seeds, alpha 0.05"
CLAIMS = (
    ClaimSpec("Mini-batches let us train on data that does not fit in memory", "minibatch",
              "— (design goal)", "check: loading fails under the cap, mini-batch training "
              "completes", out_of_core),
    ClaimSpec("Small mini-batches generalize better than full-batch training, epoch for epoch",
              "minibatch", "Keskar et al. 2017: large batches generalize worse",
              f"best mini-batch (chosen on validation) > full batch on test; {PAIRED_RULE}",
              small_batches),
    ClaimSpec("ReLU trains deep nets where sigmoid stalls", "activations",
              "He et al. 2015 (30 layers: ReLU + He init trains); Glorot & Bengio 2010",
              f"relu/He > best sigmoid on test ({PAIRED_RULE}); relu/He trains and every sigmoid "
              "stays below 2x chance", relu_vs_sigmoid),
    ClaimSpec("CNNs beat MLPs on signals", "mnist1d_table",
              "Greydanus 2020: CNN 94% vs MLP 68%", f"CNN > MLP on test; {PAIRED_RULE}",
              _beats_mlp("cnn_mnist1d")),
    ClaimSpec("RNNs beat MLPs on sequences", "mnist1d_table",
              "Greydanus 2020: GRU 91% vs MLP 68%", f"GRU > MLP on test; {PAIRED_RULE}",
              _beats_mlp("gru_mnist1d")),
    ClaimSpec("A seq2seq GRU with attention translates number words", "translate",
              "— (issue target: >= 95% exact match)",
              "greedy held-out exact match > 95%; one-sided exact binomial test over the held-out "
              "numbers, alpha 0.05", translation),
    ClaimSpec("Weight penalties give sparse models", "sparsity",
              "Han et al. 2015: LeNet-300-100 12x fewer weights, error 1.64% -> 1.59%",
              f"after one-shot pruning, L1 > no penalty on test; {PAIRED_RULE}", l1_prunes),
    ClaimSpec("Activation penalties give cheaper (narrower) models", "sparsity",
              "— (issue target: >= 3x fewer FLOPs for <= 1 point)",
              f"narrow - dense test accuracy > -1 point (non-inferiority; {PAIRED_RULE}) and >= 3x "
              "fewer FLOPs", activation_l1_narrows),
    ClaimSpec("Dropout improves generalization", "regularization",
              "Srivastava et al. 2014: test error 1.60% -> 1.25% (dropout + L2)",
              f"train-test gap smaller than without ({PAIRED_RULE}); test accuracy not "
              "significantly lower", _shrinks_gap("dropout=0.5")),
    ClaimSpec("DropConnect improves generalization", "regularization",
              "Wan et al. 2013: DropConnect 0.21% vs dropout 0.27% error",
              f"train-test gap smaller than without ({PAIRED_RULE}); test accuracy not "
              "significantly lower", _shrinks_gap("dropconnect=0.5")),
    ClaimSpec("Parameter sharing improves generalization", "siamese",
              "— (no published figure for this split)",
              f"shared > unshared on unseen classes; {PAIRED_RULE}", sharing),
    ClaimSpec("Adversarial training gives robustness", "adversarial",
              "Madry et al. 2018: 89.6% under PGD-100 x 50 starts, eps 0.3 (60k digits)",
              f"PGD-trained - normal > 30 points under the strongest attack ({PAIRED_RULE}); "
              "every gradient-masking check passes", robustness),
    ClaimSpec("A generator trained against a discriminator makes realistic digits of every class",
              "gan", "— (issue target: FD <= 5x the real-vs-real floor, every class >= 5%)",
              "check, every seed: FD ratio <= target and rarest class >= 5%", gan),
)


def judge_claims(records: Records, ran: set[str]) -> list[Claim]:
  """Every claim, judged on the records of the experiments in `ran` (the others: 'not run')."""
  claims = []
  for spec in CLAIMS:
    fields = dict(claim=spec.claim, experiment=spec.experiment, anchor=spec.anchor,
                  rule=spec.rule)
    if spec.experiment not in ran:
      claims.append(Claim(measured="—", evidence="—", verdict=NOT_RUN, **fields))
      continue
    try:
      judged = spec.judge(records.where(experiment=spec.experiment))
    except (ValueError, KeyError, IndexError, AttributeError) as missing:  # e.g. --only ran a part of it
      claims.append(Claim(measured=f"not measured at this budget ({missing})", evidence="—",
                          verdict=NOT_MEASURED, **fields))
      continue
    claims.append(Claim(measured=judged.measured, evidence=judged.evidence,
                        verdict=judged.verdict, **fields))
  return claims
