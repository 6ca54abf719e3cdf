"""One long-form record per figure, written as JSON Lines, and one query API over them.

Every figure an experiment reports (a test accuracy of one seed, a FLOPs ratio, a check that
passed) is a `Record`: which experiment and variant (budget) made it, on which dataset, for which
arm (model, setting or strategy), seed, split and metric, its value and, for curves, its step. The
tour's generalization table and every claim are queries over these records (`Records.where`), so
nothing downstream needs to know how an experiment stores its own results.

    records = read_jsonl("runs/tour/records.jsonl")
    test = records.where(experiment="minibatch", split="test", metric="accuracy")
    test.where(arm="batch 32").by_seed()   # {seed: value}
"""

import dataclasses
import json
import os
from typing import Iterable, Sequence

from dl_jax.errors import UserError

SCHEMA_VERSION = 1
NO_SPLIT = "-"  # figures of a whole run (a FLOPs ratio, a check), not of one split


class RecordsError(UserError, ValueError):
  """A records file that cannot be read back as this schema."""


@dataclasses.dataclass(frozen=True)
class Record:
  experiment: str
  variant: str
  dataset: str
  arm: str
  seed: int | None
  split: str
  metric: str
  value: float
  step: int | None = None

  def to_json(self) -> dict:
    return {"schema": SCHEMA_VERSION} | dataclasses.asdict(self)


FIELDS = tuple(f.name for f in dataclasses.fields(Record))


class Records(Sequence[Record]):
  """An immutable, ordered selection of records with equality and predicate filters."""

  def __init__(self, records: Iterable[Record] = ()):
    self._records = tuple(records)

  def __getitem__(self, index):
    return self._records[index]

  def __len__(self) -> int:
    return len(self._records)

  def __add__(self, other: "Records") -> "Records":
    return Records(self._records + tuple(other))

  def where(self, **filters) -> "Records":
    """Records whose fields equal the given values (or satisfy the given predicates)."""
    unknown = set(filters) - set(FIELDS)
    if unknown:
      raise ValueError(f"records have no field {sorted(unknown)}; fields: {FIELDS}")
    def keep(record: Record) -> bool:
      return all(test(getattr(record, name)) if callable(test) else getattr(record, name) == test
                 for name, test in filters.items())
    return Records(r for r in self._records if keep(r))

  def distinct(self, field: str) -> list:
    """The values of `field`, in the order they first appear."""
    return list(dict.fromkeys(getattr(r, field) for r in self._records))

  def by_seed(self) -> dict[int, float]:
    """{seed: value} of a selection that holds one figure per seed."""
    seeds = [r.seed for r in self._records]
    if len(set(seeds)) != len(seeds):
      raise ValueError(f"{len(seeds)} records for {len(set(seeds))} seeds: select one arm, split "
                       f"and metric first ({self.distinct('arm')}, {self.distinct('metric')})")
    return dict(sorted((r.seed, r.value) for r in self._records))

  def values(self) -> list[float]:
    """The values, ordered by seed."""
    return list(self.by_seed().values())

  def one(self) -> float:
    if len(self._records) != 1:
      raise ValueError(f"expected one record, found {len(self._records)}")
    return self._records[0].value


def paired_values(a: Records, b: Records) -> tuple[list[float], list[float]]:
  """The values of the seeds both selections hold, in seed order (for a paired test)."""
  a_seeds, b_seeds = a.by_seed(), b.by_seed()
  common = sorted(set(a_seeds) & set(b_seeds))
  if not common:
    raise ValueError(f"no seed measured on both sides ({len(a)} and {len(b)} records)")
  return [a_seeds[s] for s in common], [b_seeds[s] for s in common]


def write_jsonl(path: str, records: Iterable[Record]) -> None:
  """Writes every record as one JSON line (atomically: a reader never sees half a file)."""
  temporary = f"{path}.tmp"
  with open(temporary, "w") as f:
    for record in records:
      f.write(json.dumps(record.to_json(), allow_nan=True) + "\n")
  os.replace(temporary, path)


def read_jsonl(path: str) -> Records:
  """The records of a JSONL file; a line of another schema or shape is refused (RecordsError)."""
  try:
    with open(path) as f:
      return Records(_parse(line, path, number) for number, line in enumerate(f, 1)
                     if line.strip())
  except FileNotFoundError:
    raise RecordsError(f"{path} does not exist; run the experiment to write it.") from None
  except (OSError, UnicodeDecodeError) as e:
    raise RecordsError(f"{path} cannot be read ({e}).") from None


def _parse(line: str, path: str, number: int) -> Record:
  where = f"{path}, line {number}"
  try:
    row = json.loads(line)
  except ValueError as e:
    raise RecordsError(f"{where} is not JSON ({e}); rerun the experiment to rewrite it.") from None
  if not isinstance(row, dict) or row.get("schema") != SCHEMA_VERSION:
    schema = row.get("schema") if isinstance(row, dict) else None
    raise RecordsError(f"{where} has schema {schema!r}, this version reads {SCHEMA_VERSION}; "
                       "rerun the experiment with this version.")
  fields = {k: v for k, v in row.items() if k != "schema"}
  if set(fields) != set(FIELDS):
    raise RecordsError(f"{where} has fields {sorted(fields)}, expected {sorted(FIELDS)}.")
  if not isinstance(fields["value"], (int, float)) or isinstance(fields["value"], bool):
    raise RecordsError(f"{where}: value {fields['value']!r} is not a number.")
  return Record(**fields)


@dataclasses.dataclass(frozen=True)
class Recorder:
  """Makes the records of one experiment at one variant (budget)."""
  experiment: str
  variant: str

  def per_seed(self, seeds: Sequence[int], values: Sequence[float], *, dataset: str, arm: str,
               split: str, metric: str, step: int | None = None) -> list[Record]:
    """One record per seed: values[i] was measured with seeds[i]."""
    values = list(values)
    if len(values) != len(seeds):
      raise ValueError(f"{len(values)} values for {len(seeds)} seeds ({self.experiment}, {arm}, "
                       f"{split}, {metric})")
    return [Record(self.experiment, self.variant, dataset, arm, int(seed), split, metric,
                   float(value), step) for seed, value in zip(seeds, values)]

  def single(self, value: float, *, dataset: str, arm: str, metric: str, split: str = NO_SPLIT,
             seed: int | None = None) -> Record:
    """One figure of a whole run (or of one seed when `seed` is given)."""
    return Record(self.experiment, self.variant, dataset, arm, seed, split, metric, float(value))
