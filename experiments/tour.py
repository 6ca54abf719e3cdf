"""The tour: every experiment at a documented budget, then one report of claims, evidence, plots.

    python -m experiments.tour                      # the main job (dl-jax tour is the same)
    python -m experiments.tour --only=activations,adversarial
    python -m experiments.tour --full               # each experiment's own (paper-scale) budget: hours
    python -m experiments.tour --smoke              # every experiment end to end in ~5 min
    python -m experiments.tour --report_only --readme=README.md   # re-render from results.json

Writes into --workdir: report.md, report.html (self-contained: images inlined), results.json (every
figure, each experiment's config and seeds, package versions, device, wall times), and one
sub-directory per experiment with that experiment's own outputs. The report opens with the claims
table: each claim of the mission, the experiment that tests it, the measured figure (mean ± std over
seeds), the stated test with its effect, 95% CI and p-value, the published anchor, and the verdict
(experiments/tour_claims.py), all computed from records.jsonl: every figure as a long-form record.
A failing experiment does not stop the tour: the report names it and the command exits non-zero.
"""

import dataclasses
import datetime
import glob
import importlib
import json
import os
import sys
import time
import traceback

from absl import flags

from dl_jax import cli, readme_blocks
from dl_jax.errors import UserError
from dl_jax.settings import ConfigError, each, one_of, setting, validate
from dl_jax.environment import PACKAGES, describe_cpu, environment
from dl_jax.lab.records import Records, write_jsonl
from dl_jax.config_flags import define_experiment_flags, experiment_config
from dl_jax.report import markdown_table, markdown_to_html
from dl_jax.train.writers import json_safe, quiet_library_logs, write_config, write_json
from experiments import tour_generalization
from experiments.tour_claims import judge_claims

STAGES = ("minibatch", "activations", "mnist1d_table", "translate", "sparsity", "regularization",
          "siamese", "adversarial", "gan")

# Each experiment declares its own variants beside its code (`EXPERIMENT.variants`): the tour's
# budgets are those variants by name. In the default ("tour") budget every arm a claim compares
# runs 5 seeds or more; seconds per stage are in results.json, and the README's claims block says
# how long the tour behind it took, on which CPU.
VARIANT = {"smoke": "smoke", "default": "tour", "full": "full"}


@dataclasses.dataclass(frozen=True)
class TourConfig:
  only: tuple[str, ...] = setting(STAGES, f"Experiments to run, from {list(STAGES)}.",
                                  check=each(one_of(STAGES)))
  full: bool = setting(False, "Each experiment's own default (paper-scale) config: hours on a CPU.")


class ResultsFileError(UserError, ValueError):
  """A tour results file that cannot be read back."""


def smoke_config() -> TourConfig:
  return TourConfig()


def budget_name(config: TourConfig, smoke: bool) -> str:
  if smoke and config.full:
    raise ConfigError("--smoke and --full ask for opposite budgets; give one.")
  return "smoke" if smoke else "full" if config.full else "default"


def experiment(name: str):
  """The `Experiment` declared by experiments/<name>.py."""
  return importlib.import_module(f"experiments.{name}").EXPERIMENT


def stage_config(name: str, budget: str):
  """The config experiment `name` runs with at `budget` ('smoke', 'default' or 'full')."""
  return experiment(name).config_for(VARIANT[budget])


def run_stage(name: str, config, workdir: str, variant: str) -> dict:
  """Runs one experiment into workdir/<name>; a failure is recorded, not raised."""
  print(f"== tour: {name}", file=sys.stderr, flush=True)
  start, cpu = time.perf_counter(), time.process_time()
  record = {"config": dataclasses.asdict(config), "results": None, "error": None}
  try:
    record["results"] = experiment(name).execute(config, os.path.join(workdir, name), variant)
  except Exception as error:  # the tour goes on; the report and the exit code say what failed
    record["error"] = f"{type(error).__name__}: {error}"
    record["traceback"] = traceback.format_exc()
    print(record["traceback"], file=sys.stderr, flush=True)
  record["wall_seconds"] = time.perf_counter() - start
  record["cpu_seconds"] = time.process_time() - cpu
  return record


def run(config: TourConfig, workdir: str, budget: str = "default") -> dict:
  """Runs the chosen experiments, then writes results.json, report.md and report.html."""
  validate(config)
  configs = {name: stage_config(name, budget) for name in STAGES if name in config.only}
  write_config(workdir, {"tour": dataclasses.asdict(config), "budget": budget,
                         "stages": {n: dataclasses.asdict(c) for n, c in configs.items()}})
  results = {"budget": budget, "tour": dataclasses.asdict(config), "environment": environment(),
             "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
             "stages": {}}
  start = time.perf_counter()
  for name, stage in configs.items():
    results["stages"][name] = run_stage(name, stage, workdir, VARIANT[budget])
    results["wall_seconds"] = time.perf_counter() - start
    write_json(os.path.join(workdir, "results.json"), results)  # nothing finished is lost
  return write_report(results, workdir)


def write_report(results: dict, workdir: str) -> dict:
  """Judges the claims, tabulates generalization, writes results.json, report.md, report.html.
  Works on `results` as results.json stores it (keys sorted), so a re-render is identical. Every
  file is written only after all three are made: a failure leaves the old ones as they were."""
  results = json.loads(json.dumps(json_safe(results), sort_keys=True))
  records = tour_records(results)
  results["claims"] = [dataclasses.asdict(c) for c in judge_claims(records, finished(results))]
  results["generalization"] = tour_generalization.rows(records)
  markdown = report_markdown(results, workdir)
  html = markdown_to_html(markdown, "dl_jax tour", workdir)
  write_jsonl(os.path.join(workdir, "records.jsonl"), records)
  write_json(os.path.join(workdir, "results.json"), results)
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(workdir, "report.html"), "w") as f:
    f.write(html)
  return results


def finished(results: dict) -> set[str]:
  """The stages that ran to the end."""
  return {name for name, stage in results["stages"].items() if stage["results"] is not None}


def tour_records(results: dict) -> Records:
  """Every figure of every finished stage as long-form records, in the tour's order; each
  experiment's own `records` function reads its results (with the config it ran)."""
  records = Records()
  for name, stage in _in_tour_order(results["stages"]):
    if stage["results"] is not None:
      own = dict(stage["results"], config=stage["config"])
      records += Records(experiment(name).records(own, VARIANT[results["budget"]]))
  return records


def rerender(workdir: str) -> dict:
  """`write_report` on the workdir's results.json; a file that is missing, not JSON, or not
  shaped as a tour writes it is refused (ResultsFileError) and left untouched."""
  path = os.path.join(workdir, "results.json")
  hint = "run the tour into this --workdir again to remake it"
  try:
    with open(path) as f:
      results = json.load(f)
  except FileNotFoundError:
    raise ResultsFileError(f"--report_only needs {path}; run the tour into --workdir "
                           "first.") from None
  except (OSError, ValueError) as e:  # unreadable, truncated, not JSON
    raise ResultsFileError(f"{path} cannot be read back ({e}); {hint}.") from None
  try:
    _check_results_shape(results)
    return write_report(results, workdir)
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    raise ResultsFileError(f"{path} is not shaped as this version's tour writes it "
                           f"({type(e).__name__}: {e}); {hint}.") from None


def _check_results_shape(results) -> None:
  if not isinstance(results, dict) or not isinstance(results.get("stages"), dict):
    raise ValueError("no 'stages' object")
  for name, stage in results["stages"].items():
    if name not in STAGES or not isinstance(stage, dict):
      raise ValueError(f"stage {name!r} is unknown or not an object")
    for key in ("config", "results", "error", "wall_seconds", "cpu_seconds"):
      stage[key]  # raises KeyError naming the first missing key


def claims_table(results: dict) -> str:
  """The claims table, as the report and the README show it."""
  return markdown_table(
      ["claim", "experiment", "measured (mean ± std over seeds)", "test: effect [95% CI], p",
       "published anchor", "verdict", "rule"],
      [[c["claim"], c["experiment"], c["measured"], c["evidence"], c["anchor"],
        f"**{c['verdict']}**", c["rule"]] for c in results["claims"]])


def report_markdown(results: dict, workdir: str) -> str:
  """Claims, generalization, then each experiment's time, config and plots."""
  env = results["environment"]
  versions = ", ".join(f"{p} {env['packages'][p]}" for p in PACKAGES if env["packages"].get(p))
  lines = ["# dl_jax tour: why deep learning works, measured", "",
           f"Budget `{results['budget']}`, started {results['started']}, "
           f"{results.get('wall_seconds', 0) / 60:.1f} min in all on "
           f"{describe_cpu(env['machine'])} "
           f"({', '.join(env['devices'])}). Python {env['python']}; {versions}.", "",
           "## Claims", "",
           "Each verdict is the outcome of the stated test in the last column "
           "(`experiments/tour_claims.py`), computed from the tour's records "
           "(`records.jsonl`): supported, not supported, or refuted when the opposite effect is "
           "significant. Effects are in percentage points; \"not supported\" may change with "
           "more seeds or `--full`.", "", claims_table(results), "",
           "## Generalization", "",
           "Every model trained, on each split: mean ± std (sample) over its runs (seeds); the "
           "gap is paired by seed.", "",
           markdown_table(tour_generalization.HEADER, results["generalization"]), ""]
  for name, stage in _in_tour_order(results["stages"]):
    lines += [f"## {name}", "",
              f"`python -m experiments.{name}` at this budget: {stage['wall_seconds']:.0f} s wall, "
              f"{stage['cpu_seconds']:.0f} s CPU. Config: `{json.dumps(stage['config'])}`", ""]
    if stage["error"]:
      lines += [f"**Failed**: `{stage['error']}` (traceback in results.json).", ""]
    own = os.path.join(name, "results.md")
    if os.path.exists(os.path.join(workdir, own)):
      lines += [f"Its full tables: [{own}]({own}).", ""]
    for plot in sorted(glob.glob(os.path.join(workdir, name, "plots", "*.png"))):
      relative = os.path.relpath(plot, workdir)
      lines += [f"![{name}: {os.path.basename(plot)}]({relative})", ""]
  return "\n".join(lines)


def _in_tour_order(stages: dict) -> list[tuple[str, dict]]:
  """(name, stage) in the tour's order: results.json stores its keys sorted."""
  return [(name, stages[name]) for name in STAGES if name in stages]


README_BEGIN, README_END = readme_blocks.markers("tour-claims")


def update_readme(path: str, results: dict) -> None:
  """Replaces the README's claims block (between the markers) with this tour's table."""
  readme_blocks.replace_block(path, "tour-claims", (
      f"{claims_table(results)}\n\nBudget `{results['budget']}`, "
      f"{results.get('wall_seconds', 0) / 60:.1f} min, "
      f"{describe_cpu(results['environment']['machine'])}; regenerated by "
      f"`python -m experiments.tour --report_only --readme=README.md`."))


def define_flags() -> None:
  define_experiment_flags(TourConfig, "runs/tour")
  flags.DEFINE_bool("report_only", False, "Re-judge and re-render the report from the workdir's "
                    "results.json without running anything.")
  flags.DEFINE_string("readme", None, "Also write the claims table into this README's block.")


def main(argv):
  del argv
  quiet_library_logs()
  workdir = flags.FLAGS.workdir
  if flags.FLAGS.report_only:
    results = rerender(workdir)
  else:
    config = experiment_config(TourConfig, smoke_config)
    results = run(config, workdir, budget_name(config, flags.FLAGS.smoke))
  if flags.FLAGS.readme:
    update_readme(flags.FLAGS.readme, results)
  print(claims_table(results))
  print(f"\nreport: {os.path.join(workdir, 'report.html')}")
  failed = [name for name, stage in results["stages"].items() if stage["error"]]
  if failed:
    sys.exit(f"the tour finished, but these experiments failed: {failed}; see the report.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
