"""Long-form records: written and read back exactly, queried by field, refused when damaged."""

import json

import pytest

from dl_jax.lab.records import (SCHEMA_VERSION, Record, Recorder, Records, RecordsError,
                                paired_values, read_jsonl, write_jsonl)


def _records() -> Records:
  rec = Recorder("exp", "smoke")
  return Records(rec.per_seed([0, 1, 2], [0.9, 0.8, 0.7], dataset="d", arm="a", split="test",
                              metric="accuracy")
                 + rec.per_seed([2, 1], [0.5, 0.6], dataset="d", arm="b", split="test",
                                metric="accuracy")
                 + [rec.single(3.5, dataset="d", arm="a", metric="fewer_flops")])


def test_records_round_trip_through_jsonl_with_their_schema_version(tmp_path):
  path = tmp_path / "records.jsonl"
  write_jsonl(str(path), _records())
  lines = path.read_text().splitlines()
  assert len(lines) == 6 and all(json.loads(l)["schema"] == SCHEMA_VERSION for l in lines)
  assert list(read_jsonl(str(path))) == list(_records())


def test_where_filters_by_value_and_predicate_and_orders_by_seed():
  r = _records()
  assert r.where(arm="a", metric="accuracy").by_seed() == {0: 0.9, 1: 0.8, 2: 0.7}
  assert r.where(arm="b").values() == [0.6, 0.5]  # seed order, not file order
  assert len(r.where(metric=lambda m: m.startswith("acc"))) == 5
  assert r.where(metric="fewer_flops").one() == 3.5
  assert r.distinct("arm") == ["a", "b"]
  with pytest.raises(ValueError, match="no field"):
    r.where(model="a")
  with pytest.raises(ValueError, match="select one arm"):
    r.where(metric="accuracy").by_seed()


def test_paired_values_keep_the_seeds_both_sides_ran():
  r = _records().where(metric="accuracy")
  assert paired_values(r.where(arm="a"), r.where(arm="b")) == ([0.8, 0.7], [0.6, 0.5])


def test_per_seed_refuses_a_count_mismatch():
  with pytest.raises(ValueError, match="2 values for 3 seeds"):
    Recorder("e", "v").per_seed([0, 1, 2], [1.0, 2.0], dataset="d", arm="a", split="test",
                                metric="m")


@pytest.mark.parametrize("line, message", [
    ('{"schema": 0, "experiment": "e"}', "schema 0"),
    ("not json", "is not JSON"),
    ('{"schema": %d, "experiment": "e"}' % SCHEMA_VERSION, "has fields"),
    ('[1, 2]', "schema None"),
])
def test_a_damaged_or_foreign_line_is_refused_with_its_line_number(tmp_path, line, message):
  path = tmp_path / "records.jsonl"
  good = json.dumps(Record("e", "v", "d", "a", 0, "test", "m", 1.0).to_json())
  path.write_text(good + "\n" + line + "\n")
  with pytest.raises(RecordsError, match=f"line 2.*{message}|{message}.*line 2|line 2"):
    read_jsonl(str(path))
  with pytest.raises(RecordsError, match=message):
    read_jsonl(str(path))


def test_a_missing_file_says_to_run_the_experiment(tmp_path):
  with pytest.raises(RecordsError, match="run the experiment"):
    read_jsonl(str(tmp_path / "none.jsonl"))
