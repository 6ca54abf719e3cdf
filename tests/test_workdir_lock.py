import os
import subprocess
import sys

import pytest

from dl_jax.train.workdir_lock import LOCK_NAME, WorkdirBusyError, workdir_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = ("import sys, time\nfrom dl_jax.train.workdir_lock import workdir_lock\n"
        "with workdir_lock(sys.argv[1]):\n  print('held', flush=True)\n  time.sleep(60)\n")


def _holder(workdir) -> subprocess.Popen:
  """Another process holding `workdir` until killed."""
  held = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], cwd=REPO,
                          stdout=subprocess.PIPE, text=True)
  assert held.stdout.readline().strip() == "held"
  return held


def test_a_second_process_is_refused_with_the_holders_pid_until_it_dies(tmp_path):
  held = _holder(tmp_path)
  try:
    with pytest.raises(WorkdirBusyError, match=f"in use by pid {held.pid};"):
      with workdir_lock(str(tmp_path)):
        pass
  finally:
    held.kill()
    held.wait()
  with workdir_lock(str(tmp_path)):  # a dead holder's lock file does not block
    assert (tmp_path / LOCK_NAME).read_text() == str(os.getpid())


def test_the_holder_may_take_its_own_workdir_again_and_releases_it_at_the_end(tmp_path):
  with workdir_lock(str(tmp_path)):
    with workdir_lock(str(tmp_path / ".." / tmp_path.name)):  # the same directory, nested
      pass
  held = _holder(tmp_path)  # released: another process can take it
  held.kill()
  held.wait()


def test_train_on_a_busy_workdir_exits_2_with_one_line_and_writes_nothing(tmp_path):
  held = _holder(tmp_path)
  try:
    done = subprocess.run([sys.executable, "-m", "experiments.train", "--smoke",
                           f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True)
  finally:
    held.kill()
    held.wait()
  assert done.returncode == 2, done.stderr[-2000:]
  assert done.stderr.strip().splitlines()[-1] == (
      f"error: workdir {tmp_path} is in use by pid {held.pid}; wait for that run to end, or "
      f"pass another --workdir")
  assert "Traceback" not in done.stderr
  assert sorted(os.listdir(tmp_path)) == [LOCK_NAME]
