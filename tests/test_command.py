"""`dl-jax NAME` / `python -m experiments NAME`: one command for every experiment."""

import json
import subprocess
import sys

import pytest

from experiments import __main__ as command


def _run(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True,
                        text=True, timeout=timeout)


def test_every_command_is_a_module_with_flags_a_main_and_a_summary():
  for name in command.COMMANDS:
    assert command.summary(name), name
  assert len(set(command.COMMANDS)) == len(command.COMMANDS)


def test_the_list_needs_no_heavy_import_and_a_missing_name_exits_2():
  listed = _run("--help")
  assert listed.returncode == 0
  for name in command.COMMANDS:
    assert f"  {name} " in listed.stdout
  assert _run().returncode == 2
  # the list is printed without importing jax (it reads docstrings)
  code = ("import sys; from experiments import __main__ as c; c.usage(); "
          "print('jax' in sys.modules)")
  probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert probe.stdout.strip() == "False", probe.stderr


def test_an_unknown_name_gets_one_line_with_the_closest_name():
  result = _run("tuor")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: no experiment 'tuor'; did you mean 'tour'? run 'dl-jax' for the list."]


@pytest.mark.parametrize("name, flag", [("regularization", "--strategies"),
                                        ("tour", "--report_only")])
def test_helpshort_lists_the_experiments_own_flags_under_its_docstring(name, flag):
  result = _run(name, "--helpshort")
  assert result.returncode == 0, result.stderr  # asked-for help is a success (absl exits 1)
  text = result.stdout + result.stderr
  assert flag in text and "--workdir" in text
  assert command.summary(name).split(":")[0] in text


def test_a_run_through_the_command_writes_records_of_its_variant(tmp_path):
  workdir = tmp_path / "run"
  result = _run("regularization", "--variant=smoke", "--steps=20", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-2000:]
  records = [json.loads(line) for line in (workdir / "records.jsonl").read_text().splitlines()]
  assert {r["variant"] for r in records} == {"smoke"}
  assert {r["arm"] for r in records} >= {"none", "dropout=0.5"}
  assert json.loads((workdir / "config.json").read_text())["steps"] == 20
  assert "wall time" in result.stdout
  bad = _run("regularization", "--smoke", "--variant=tour", f"--workdir={tmp_path / 'b'}")
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      "error: --smoke and --variant=tour ask for two configs; give one."]
