"""Every hostile input of experiments.hostile_inputs ends in one clear line (or a correct run).

The table runs in this process through the same wrapper the script uses (`cli.reporting`), which
is quick; the cases that need a real process (peak memory, Ctrl-C, a file-size limit, a missing
coordinator) run as children.
"""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import traceback

import pytest
from absl import flags

from dl_jax import cli
from experiments import hostile_inputs, train
from experiments.hostile_inputs import CASES, Outcome, classify

if "max_classes" not in flags.FLAGS:
  train.define_flags()


def run_in_process(argv: list[str]) -> Outcome:
  """experiments.train's main on `argv`, as `cli.run` would run it; a trace is kept in stderr."""
  flags.FLAGS.unparse_flags()
  err, code = io.StringIO(), 0
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    try:
      flags.FLAGS(["train", *argv])
      cli.reporting(train.main)([])
    except SystemExit as e:
      code = e.code
    except Exception:  # what a user would see as a traceback
      traceback.print_exc()
      code = 1
  flags.FLAGS.unparse_flags()
  return Outcome(code, err.getvalue())


@pytest.fixture(autouse=True)
def first_runs_in_process(monkeypatch):
  """Cases that need a finished run first train it in this process too."""
  monkeypatch.setattr(hostile_inputs, "first_run", run_in_process)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_ends_in_one_clear_line_or_a_correct_run(case, tmp_path):
  outcome = run_in_process(case.setup(str(tmp_path)))
  kind = "correct" if case.expect is None else "clear"
  assert classify(case, outcome, str(tmp_path)) == kind, outcome.stderr[-3000:]
  if kind == "clear":
    assert outcome.code == 2


SIZE_CASES = [c for c in CASES if c.rss_bound_mb]


@pytest.mark.parametrize("case", SIZE_CASES, ids=[c.name for c in SIZE_CASES])
def test_files_that_lie_about_their_size_are_refused_within_a_memory_bound(case, tmp_path):
  outcome = hostile_inputs.run_process(case.setup(str(tmp_path)))
  assert classify(case, outcome, str(tmp_path)) == "clear", outcome.stderr[-3000:]
  assert outcome.peak_rss_mb < case.rss_bound_mb


def test_the_table_counts_each_outcome():
  rows = [{"outcome": o, "within_bound": True} for o in ("clear", "clear", "silent", "correct")]
  assert hostile_inputs.summary(rows) == {"cases": 4, "clear": 2, "correct": 1, "misleading": 0,
                                          "traceback": 0, "silent": 1, "over_rss_bound": 0}


LIMITED = """import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, writes fail (EFBIG), no kill
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
sys.argv = ["train", *sys.argv[1:]]
runpy.run_module("experiments.train", run_name="__main__")
"""


def test_a_file_size_limit_stops_the_run_at_its_first_checkpoint_with_one_line(tmp_path):
  argv = hostile_inputs.npz_case()(str(tmp_path))
  done = subprocess.run([sys.executable, "-c", LIMITED, *argv], cwd=hostile_inputs.REPO,
                        capture_output=True, text=True)
  assert done.returncode == 2, done.stderr[-3000:]
  assert "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1].startswith(
      "error: saving the checkpoint of step 20 into ")
  assert "ulimit -f" in done.stderr
  assert (tmp_path / "run" / "config.json").stat().st_size > 0  # what was written is kept


def test_ctrl_c_says_how_to_resume_and_the_rerun_resumes(tmp_path):
  # enough steps that the run is still training when the signal lands (600 once finished first)
  argv = hostile_inputs.npz_case()(str(tmp_path)) + ["--steps=3000", "--log_every=100",
                                                      "--checkpoint_every=100"]
  command = [sys.executable, "-m", "experiments.train", *argv]
  # a shell that starts this suite in the background (`cmd &`) hands its children SIGINT ignored,
  # and Python keeps an ignored SIGINT: give the child the default, as a terminal would
  child = subprocess.Popen(command, cwd=hostile_inputs.REPO, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  for line in child.stderr:
    if line.startswith("step 300/"):
      break
  child.send_signal(signal.SIGINT)
  rest = child.stderr.read()
  assert child.wait() == 130
  assert "Traceback" not in rest
  assert rest.strip().splitlines()[-1] == (
      f"error: interrupted; what is already saved in {tmp_path}/run is kept: run the same "
      "command again to resume from the last checkpoint")
  again = subprocess.run(command + ["--steps=400"], cwd=hostile_inputs.REPO, capture_output=True,
                         text=True)
  assert again.returncode == 2 and "different config" in again.stderr  # a changed run: refused
  resumed = subprocess.run(command, cwd=hostile_inputs.REPO, capture_output=True, text=True,
                           timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  resumed_from = results["resumed_from_step"]
  assert results["step"] == 3000 and resumed_from % 100 == 0 and 100 <= resumed_from < 3000


def test_a_coordinator_nobody_answers_ends_in_one_line_after_the_timeout(tmp_path):
  done = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--smoke", f"--workdir={tmp_path}/run",
       "--coordinator=localhost:1", "--num_processes=2", "--process_id=1",
       "--coordinator_timeout=3"], cwd=hostile_inputs.REPO, capture_output=True, text=True,
      timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith(
      "error: process 1 of 2 could not join the run at --coordinator=localhost:1 within 3 s")
  assert not os.path.exists(tmp_path / "run")
