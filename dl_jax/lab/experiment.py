"""An experiment declared once: its config, variants, run, records and summary; the script is made.

    EXPERIMENT = Experiment(name="regularization", config=RegularizationConfig, run=run,
                            records=records, summary=markdown_report,
                            variants={"smoke": smoke_config, "tour": TOUR})

    if __name__ == "__main__":
      EXPERIMENT.command()

Variants are whole configs by name: "full" is the config's own defaults (the paper-scale run),
"smoke" seconds of the same code (the tests run it), "tour" the tour's budget; a variant is a
function returning a config, or the fields it changes over the defaults. `command()` is the
script: one flag per config field (plus --workdir, --variant, --smoke, --config), every value
checked before anything runs, then `execute`: run(config, workdir), and beside what run wrote,
results.json, results.md (the report) and records.jsonl (every figure as a long-form record); the
summary printed; bad input ends in one line and exit 2 (dl_jax.cli).
"""

import dataclasses
import os
from typing import Any, Callable, Iterable, Mapping

from absl import flags

from dl_jax import cli
from dl_jax.config_flags import define_experiment_flags, experiment_config
from dl_jax.lab.records import Record, write_jsonl

FULL = "full"


@dataclasses.dataclass(frozen=True)
class Experiment:
  name: str
  config: type
  run: Callable[[Any, str], dict]
  records: Callable[[dict, str], Iterable[Record]]
  summary: Callable[[dict], str]
  variants: Mapping[str, Callable[[], Any] | Mapping[str, Any]]
  report: Callable[[dict], str] | None = None  # results.md: the experiment's own tables
  check: Callable[[Any], None] | None = None  # raises ValueError with a sentence for the user

  def variant_names(self) -> list[str]:
    return [FULL, *self.variants]

  def config_for(self, variant: str) -> Any:
    """The config of a variant by name (ValueError for an unknown one)."""
    if variant == FULL:
      return self.config()
    if variant not in self.variants:
      raise ValueError(f"{self.name} has no variant {variant!r}; it has {self.variant_names()}")
    made = self.variants[variant]
    return made() if callable(made) else dataclasses.replace(self.config(), **made)

  def execute(self, config: Any, workdir: str, variant: str = FULL) -> dict:
    """run(config, workdir), then what every experiment writes beside its own files:
    results.json, results.md (its report) and records.jsonl (every figure, one record each)."""
    from dl_jax.train.writers import is_writer, write_json

    results = self.run(config, workdir)
    write_json(os.path.join(workdir, "results.json"), results)
    if is_writer():
      if self.report is not None:
        with open(os.path.join(workdir, "results.md"), "w") as f:
          f.write(self.report(results).rstrip("\n") + "\n")
      write_jsonl(os.path.join(workdir, "records.jsonl"), self.records(results, variant))
    return results

  def define_flags(self) -> None:
    define_experiment_flags(self.config, f"runs/{self.name}")
    flags.DEFINE_enum("variant", FULL, self.variant_names(),
                      f"The config to start from: {FULL} (the defaults below), or one declared "
                      "beside the experiment; --smoke is --variant=smoke.",
                      module_name=flags.FLAGS.find_module_defining_flag("workdir"))

  def main(self, argv) -> None:
    del argv
    from dl_jax.train.writers import quiet_library_logs

    quiet_library_logs()
    variant = flags.FLAGS.variant
    if flags.FLAGS.smoke:
      if flags.FLAGS["variant"].present and variant != "smoke":
        cli.fail(f"--smoke and --variant={variant} ask for two configs; give one.")
      variant = "smoke"
    config = experiment_config(self.config, None, base=self.config_for(variant))
    if self.check is not None:
      try:
        self.check(config)
      except ValueError as e:  # a bad name or size: a sentence, not a traceback
        cli.fail(str(e))
    workdir = flags.FLAGS.workdir
    results = self.execute(config, workdir, variant)
    print(self.summary(results))
    if "wall_seconds" in results:
      print(f"wall time {results['wall_seconds']:.0f} s; config, results, tables, records and "
            f"plots in {workdir}")

  def command(self) -> None:
    """Defines the flags and runs `main` as the script (`if __name__ == "__main__":`)."""
    self.define_flags()
    cli.run(self.main)
