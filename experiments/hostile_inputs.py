"""Bad input, tried as a careless or hostile user would: every case must end in one clear line.

    python -m experiments.hostile_inputs              # every case as its own process (~5 min)
    python -m experiments.readme --blocks=hostile-inputs

Each case sets up files in a fresh folder (a corrupt dataset, a damaged checkpoint, a changed
config), runs `python -m experiments.train` on them, and sorts the outcome:
  clear      non-zero exit, the last stderr line `error: ...` says what the case expects, no trace
  correct    a run that should succeed did (e.g. resuming past a damaged newest checkpoint)
  misleading a clear-looking error that names the wrong problem
  traceback  a Python traceback reached the user
  silent     exit 0 where the input should have been refused
For the cases that lie about sizes, the child's peak RSS is measured too (`os.wait4`) and must stay
under the case's bound. tests/test_hostile_inputs.py runs the same cases in-process.
"""

import dataclasses
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Callable

import numpy as np
from absl import flags

from dl_jax import cli
from dl_jax.environment import describe_cpu, machine_record
from dl_jax.report import markdown_table
from dl_jax.train.writers import quiet_library_logs, write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTCOMES = ("clear", "correct", "misleading", "traceback", "silent")


@dataclasses.dataclass(frozen=True)
class Case:
  """`setup(folder)` writes what the case needs and returns the flags for experiments.train;
  `expect` is a phrase the error line must hold, or None for a run that must succeed, and then
  `succeeded(folder)` says whether it did what it should have."""

  name: str
  setup: Callable[[str], list[str]]
  expect: str | None
  rss_bound_mb: float | None = None
  succeeded: Callable[[str], bool] | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
  code: int
  stderr: str
  peak_rss_mb: float | None = None


def classify(case: Case, outcome: Outcome, folder: str) -> str:
  """One of OUTCOMES for what `case` produced in `folder`."""
  if "Traceback (most recent call last)" in outcome.stderr:
    return "traceback"
  lines = outcome.stderr.strip().splitlines()
  if case.expect is None:
    return "correct" if outcome.code == 0 and case.succeeded(folder) else "misleading"
  if outcome.code == 0:
    return "silent"
  last = lines[-1] if lines else ""
  errors = [line for line in lines if line.startswith("error: ")]
  return "clear" if len(errors) == 1 and last == errors[0] and case.expect in last else "misleading"


def within_bound(case: Case, outcome: Outcome) -> bool:
  """A case with a memory bound passes only with a measured peak under it."""
  return case.rss_bound_mb is None or (outcome.peak_rss_mb is not None
                                       and outcome.peak_rss_mb <= case.rss_bound_mb)


# ---- the data every case starts from -------------------------------------------------------------

def good_arrays(n_train: int = 200, n_test: int = 40, features: int = 8) -> dict:
  rng = np.random.default_rng(0)
  return {"x_train": rng.normal(size=(n_train, features)).astype(np.float32),
          "y_train": np.arange(n_train) % 4, "x_test": rng.normal(size=(n_test, features)).astype(
              np.float32), "y_test": np.arange(n_test) % 4}


def base_flags(folder: str, *more: str) -> list[str]:
  return ["--smoke", "--compilation_cache=", f"--workdir={folder}/run", "--batch_size=20", *more]


def npz_case(**overrides) -> Callable[[str], list[str]]:
  """A dataset .npz with some arrays replaced."""
  def setup(folder):
    path = os.path.join(folder, "data.npz")
    np.savez(path, **{**good_arrays(), **overrides})
    return base_flags(folder, f"--dataset={path}")
  return setup


def flags_case(*more: str) -> Callable[[str], list[str]]:
  """The good .npz, with flags added."""
  def setup(folder):
    return npz_case()(folder) + list(more)
  return setup


def npz_bytes_case(write: Callable[[str], None]) -> Callable[[str], list[str]]:
  """A dataset path whose bytes `write(path)` makes."""
  def setup(folder):
    path = os.path.join(folder, "data.npz")
    write(path)
    return base_flags(folder, f"--dataset={path}")
  return setup


def npy_dir_case(**raw: bytes | np.ndarray) -> Callable[[str], list[str]]:
  """A directory of the four .npy files; `raw` replaces some with arrays or raw bytes."""
  def setup(folder):
    directory = os.path.join(folder, "npy")
    os.makedirs(directory)
    for key, array in good_arrays().items():
      path = os.path.join(directory, key + ".npy")
      value = raw.get(key, array)
      if isinstance(value, bytes):
        with open(path, "wb") as f:
          f.write(value)
      else:
        np.save(path, value)
    return base_flags(folder, f"--dataset={directory}")
  return setup


def idx_bytes(dtype_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
  return bytes([0, 0, dtype_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def idx_case(images: bytes, gz: bool = False) -> Callable[[str], list[str]]:
  """MNIST's four IDX files, small and valid, with the training images replaced by `images`."""
  def setup(folder):
    directory = os.path.join(folder, "idx")
    os.makedirs(directory)
    files = {"train-labels-idx1-ubyte": idx_bytes(8, (200,), bytes(i % 4 for i in range(200))),
             "t10k-images-idx3-ubyte": idx_bytes(8, (40, 2, 2), bytes(160)),
             "t10k-labels-idx1-ubyte": idx_bytes(8, (40,), bytes(i % 4 for i in range(40)))}
    for name, data in files.items():
      with open(os.path.join(directory, name), "wb") as f:
        f.write(data)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    with (gzip.open if gz else open)(os.path.join(directory, name), "wb") as f:
      f.write(images)
    return base_flags(folder, f"--dataset={directory}")
  return setup


def npy_header_claiming(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
  """An .npy file: a valid header that claims `shape`, then 64 bytes of data."""
  header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}".encode()
  header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
  return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(64)


def npz_with_member(name: str, data: bytes) -> Callable[[str], None]:
  def write(path):
    arrays = good_arrays()
    with zipfile.ZipFile(path, "w") as archive:
      for key, array in arrays.items():
        if key + ".npy" != name:
          with archive.open(key + ".npy", "w") as f:
            np.lib.format.write_array(f, array)
      archive.writestr(name, data)
  return write


# ---- cases that need a run already in the workdir ------------------------------------------------

def trained_case(change: Callable[[str, str], None], *more: str) -> Callable[[str], list[str]]:
  """Trains the smoke run on the good .npz first, then `change(folder, workdir)` damages it."""
  def setup(folder):
    argv = npz_case()(folder) + list(more)
    done = first_run(argv)
    if done.code:
      raise RuntimeError(f"setup run failed: {done.stderr[-500:]}")
    change(folder, os.path.join(folder, "run"))
    return argv
  return setup


def flip_bit_in_saved_arrays(*steps: int) -> Callable[[str, str], None]:
  """Flips one bit inside the first hidden kernel's stored bytes in each checkpoint of `steps`."""
  def change(folder, workdir):
    del folder
    for step in steps:
      flip_bit_in_array(os.path.join(workdir, "checkpoints", str(step)),
                        ("params", "Dense_0", "kernel"))
  return change


def flip_bit_in_array(checkpoint: str, path: tuple[str, ...]) -> None:
  """Rewrites a checkpoint's state with one bit of the array at `path` flipped (orbax compresses
  its files, so the bit is flipped in the array, then stored as orbax stores it)."""
  import orbax.checkpoint as ocp  # only this damage needs it
  state_dir = os.path.join(checkpoint, "state")
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(state_dir)
    node = state
    for key in path[:-1]:
      node = node[key]
    bits = np.array(node[path[-1]]).view(np.uint32)
    bits.flat[bits.size // 2] ^= 1
    node[path[-1]] = bits.view(np.float32)
    shutil.rmtree(state_dir)
    checkpointer.save(state_dir, state)


def keep(folder, workdir) -> None:
  del folder, workdir


def replace_dataset(folder, workdir) -> None:
  del workdir
  np.savez(os.path.join(folder, "data.npz"), **{**good_arrays(), "x_train": good_arrays(
      )["x_train"] + 1})


def resumed_past_damage(folder: str) -> bool:
  """The damaged newest checkpoint was set aside and the run resumed from the one before it."""
  with open(os.path.join(folder, "run", "results.json")) as f:
    results = json.load(f)
  damaged = os.path.join(folder, "run", "checkpoints.damaged", "60")
  return os.path.isdir(damaged) and results["resumed_from_step"] == 40 and results["step"] == 60


def remove_state(*steps: int) -> Callable[[str, str], None]:
  """Deletes the state/ folder of the checkpoints of `steps` and garbles their metadata file."""
  def change(folder, workdir):
    del folder
    for step in steps:
      with open(os.path.join(workdir, "checkpoints", str(step), "_CHECKPOINT_METADATA"), "w") as f:
        f.write("{garbage")
      shutil.rmtree(os.path.join(workdir, "checkpoints", str(step), "state"))
  return change


def corrupt_config_json(folder, workdir) -> None:
  del folder
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write('{"config": {"trunc')


# ---- the table -----------------------------------------------------------------------------------

def workdir_is_a_file(folder):
  open(os.path.join(folder, "afile"), "w").close()
  return npz_case()(folder) + [f"--workdir={folder}/afile"]


def workdir_under_a_file(folder):
  open(os.path.join(folder, "afile"), "w").close()
  return npz_case()(folder) + [f"--workdir={folder}/afile/run"]


CASES = (
    # flags, checked before anything is written
    *(Case(f"flag {flag}", flags_case(flag), flag.split("=")[0] + "=") for flag in (
        "--eval_every=0", "--log_every=0", "--checkpoint_every=0", "--batch_size=0",
        "--batch_size=-5", "--dropout=1.0", "--dropout=-0.1", "--val_fraction=1.0",
        "--widths=0,32", "--widths=32,-1", "--widths=a", "--seed=-1", "--learning_rate=-0.01",
        "--learning_rate=nan", "--steps=-1", "--steps=0", "--warmup_steps=-5", "--patience=-1",
        "--epochs=-1", "--l2=-1", "--weight_decay=inf", "--max_classes=1", "--devices=-1")),
    Case("flag --batch_size larger than the data", flags_case("--batch_size=1000"),
         "--batch_size=1000: larger than the 180 training examples"),
    Case("flag --devices beyond the machine's", flags_case("--devices=64"), "--devices=64:"),
    Case("learning rate that diverges (NaN in training)", flags_case("--learning_rate=1e30"),
         "training stopped: non-finite"),
    Case("workdir is a file", workdir_is_a_file, "cannot be used"),
    Case("workdir under a file", workdir_under_a_file, "cannot be used"),
    # datasets: names and files
    Case("unknown dataset name", lambda d: base_flags(d, "--dataset=mnist2d"), "unknown dataset"),
    Case("missing .npz", lambda d: base_flags(d, f"--dataset={d}/none.npz"), "file not found"),
    Case(".npz that is not a zip", npz_bytes_case(lambda p: open(p, "wb").write(b"x" * 100)),
         "not a readable .npz"),
    Case("empty .npz", npz_bytes_case(lambda p: open(p, "wb").close()), "not a readable .npz"),
    Case("truncated .npz", npz_bytes_case(lambda p: (np.savez(p, **good_arrays()), os.truncate(
        p, 900))), "not a readable .npz"),
    Case(".npz without y_test", npz_bytes_case(lambda p: np.savez(p, **{
        k: v for k, v in good_arrays().items() if k != "y_test"})), "missing arrays ['y_test']"),
    Case(".npz member that is not .npy", npz_bytes_case(npz_with_member(
        "x_train.npy", b"hello, not an array")), "not a valid .npy"),
    Case(".npz member claiming 4.8 GB", npz_bytes_case(npz_with_member(
        "x_train.npy", npy_header_claiming((1_200_000_000,)))), "header promises",
         rss_bound_mb=600),
    Case(".npz of Python objects", npz_case(x_train=np.array([{}] * 200, dtype=object)),
         "through pickle"),
    Case(".npy dir: 1.7 KB file claiming 64 GiB", npy_dir_case(
        x_train=npy_header_claiming((2**34,))), "header promises", rss_bound_mb=600),
    Case(".npy dir: zero-byte file", npy_dir_case(y_train=b""), "not a valid .npy"),
    Case(".npy dir: missing file", lambda d: (npy_dir_case()(d), os.remove(
        f"{d}/npy/y_test.npy"))[0], "file not found"),
    # datasets: contents
    Case("complex inputs", npz_case(x_train=good_arrays()["x_train"] * 1j), "real numbers"),
    Case("string inputs", npz_case(x_train=np.array([["a"] * 8] * 200)), "real numbers"),
    Case("labels shaped [n, 1]", npz_case(y_train=(np.arange(200) % 4)[:, None]), "1-D array"),
    Case("float labels", npz_case(y_train=np.arange(200) % 4 * 1.0), "must be integers"),
    Case("negative label", npz_case(y_train=np.arange(200) % 4 - 1), "outside"),
    Case("one label of 2^31-2", npz_case(y_train=np.where(np.arange(200) == 7, 2**31 - 2,
                                                          np.arange(200) % 4)),
         "2147483647 classes", rss_bound_mb=600),
    Case("zero features", npz_case(x_train=np.zeros((200, 0), np.float32),
                                   x_test=np.zeros((40, 0), np.float32)), "no features"),
    Case("1-D inputs", npz_case(x_train=np.zeros(200, np.float32)), "at least 2 dimensions"),
    Case("train and test shapes differ", npz_case(x_test=np.zeros((40, 5), np.float32)),
         "both splits must share"),
    Case("fewer labels than examples", npz_case(y_train=np.arange(150) % 4), "150 labels for 200"),
    Case("empty test split", npz_case(x_test=np.zeros((0, 8), np.float32),
                                      y_test=np.zeros(0, int)), "test split is empty"),
    Case("NaN input", npz_case(x_train=np.where(np.arange(8) == 3, np.nan, good_arrays(
        )["x_train"]).astype(np.float32)), "NaN or Inf"),
    Case("float64 1e300 (Inf in float32)", npz_case(x_train=np.full((200, 8), 1e300)),
         "NaN or Inf"),
    Case("1-example dataset", npz_case(x_train=np.zeros((1, 8), np.float32),
                                       y_train=np.zeros(1, int), y_test=np.zeros(40, int)),
         "class 0 has only 1"),
    Case("1-example dataset, no validation split", lambda d: npz_case(
        x_train=np.zeros((1, 8), np.float32), y_train=np.zeros(1, int), y_test=np.zeros(
            40, int))(d) + ["--val_fraction=0"], "--batch_size=20: larger than the 1"),
    Case("a class with one example", npz_case(y_train=np.where(np.arange(200) == 5, 4,
                                                               np.arange(200) % 4)),
         "class 4 has only 1"),
    # IDX files
    Case("IDX: bad magic", idx_case(b"\x01\x02\x03\x04" + bytes(100)), "bad magic"),
    Case("IDX: 0 dimensions", idx_case(bytes([0, 0, 8, 0]) + bytes(10)), "0 dimensions"),
    Case("IDX: truncated header", idx_case(bytes([0, 0, 8, 3, 0, 0])), "truncated"),
    Case("IDX: truncated data", idx_case(idx_bytes(8, (200, 2, 2), bytes(700))), "truncated"),
    Case("IDX: dimensions overflowing int64", idx_case(idx_bytes(8, (2**32 - 1,) * 3, bytes(8))),
         "beyond any array's size", rss_bound_mb=600),
    Case("IDX .gz: 2 MB of data, header promises 78 KB", idx_case(
        idx_bytes(8, (200, 20, 20), bytes(2_000_000)), gz=True), "holds more than",
         rss_bound_mb=600),
    Case("IDX .gz: header promises 64 GiB", idx_case(idx_bytes(8, (2**16, 2**10, 2**10),
                                                               bytes(1000)), gz=True),
         "more than a gzip file", rss_bound_mb=600),
    Case("IDX .gz: not gzip", lambda d: (idx_case(idx_bytes(8, (200, 2, 2), bytes(800)))(d),
                                         os.rename(f"{d}/idx/train-images-idx3-ubyte",
                                                   f"{d}/idx/train-images-idx3-ubyte.gz"))[0],
         "cannot read IDX"),
    # a run already in the workdir
    Case("resume with another config", lambda d: trained_case(keep)(d) + ["--dropout=0.1"],
         "different config"),
    Case("resume after the dataset's contents changed", trained_case(replace_dataset),
         "contents changed"),
    Case("config.json truncated", trained_case(corrupt_config_json), "not valid JSON"),
    Case("one bit flipped in the newest checkpoint's weights (falls back, resumes)",
         trained_case(flip_bit_in_saved_arrays(60)), None, succeeded=resumed_past_damage),
    Case("one bit flipped in both checkpoints' weights", trained_case(
        flip_bit_in_saved_arrays(40, 60)), "no intact checkpoint"),
    Case("newest checkpoint without state/, metadata garbage (falls back, resumes)",
         trained_case(remove_state(60)), None, succeeded=resumed_past_damage),
    Case("both checkpoints without state/", trained_case(remove_state(40, 60)),
         "no intact checkpoint"),
)


# ---- running the table as real processes --------------------------------------------------------

# Runs experiments.train and, as it exits, writes its peak RSS (VmHWM: this program's own, unlike
# ru_maxrss, which keeps the forking parent's) into the file named by its first argument.
_MEASURED = """import runpy, sys
path, sys.argv = sys.argv[1], ["train", *sys.argv[2:]]
try:
  runpy.run_module("experiments.train", run_name="__main__")
finally:
  with open("/proc/self/status") as status, open(path, "w") as out:
    out.write(next(line.split()[1] for line in status if line.startswith("VmHWM")))
"""


def run_process(argv: list[str]) -> Outcome:
  """`python -m experiments.train argv` as a child; its exit code, stderr and peak RSS."""
  with tempfile.TemporaryFile("w+") as err, tempfile.NamedTemporaryFile("r") as peak:
    done = subprocess.run([sys.executable, "-c", _MEASURED, peak.name, *argv], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=err, text=True)
    err.seek(0)
    kb = peak.read().strip()
    return Outcome(done.returncode, err.read(), int(kb) / 1024 if kb else None)


first_run = run_process  # how a case's first, undamaged run is made (tests run it in-process)


def run_table(cases=CASES) -> list[dict]:
  rows = []
  for case in cases:
    with tempfile.TemporaryDirectory() as folder:
      start = time.perf_counter()
      outcome = run_process(case.setup(folder))
      kind = classify(case, outcome, folder)
    lines = outcome.stderr.replace(folder, "<tmp>").strip().splitlines()
    rows.append({"case": case.name, "outcome": kind, "code": outcome.code,
                 "last_line": lines[-1] if lines else "", "peak_rss_mb": outcome.peak_rss_mb,
                 "rss_bound_mb": case.rss_bound_mb, "within_bound": within_bound(case, outcome),
                 "seconds": time.perf_counter() - start})
    print(f"{rows[-1]['outcome']:>10}  {case.name}", file=sys.stderr, flush=True)
  return rows


def summary(rows: list[dict]) -> dict:
  counts = {name: sum(r["outcome"] == name for r in rows) for name in OUTCOMES}
  return {"cases": len(rows), **counts,
          "over_rss_bound": sum(not r["within_bound"] for r in rows)}


def markdown(results: dict) -> str:
  s = results["summary"]
  head = (f"{s['cases']} cases: {s['clear']} clear one-line errors, {s['correct']} correct runs, "
          f"{s['misleading']} misleading, {s['traceback']} tracebacks, {s['silent']} silent; "
          f"{s['over_rss_bound']} over their memory bound.")
  table = markdown_table(
      ["case", "outcome", "exit", "what the user reads (last stderr line)", "peak RSS MiB"],
      [[r["case"], r["outcome"], r["code"], f"`{r['last_line'][:240]}`",
        _megabytes(r["peak_rss_mb"]) + (f" (bound {r['rss_bound_mb']:.0f})"
                                         if r["rss_bound_mb"] else "")] for r in results["rows"]])
  return (f"{head}\n\n{table}\n\n`python -m experiments.hostile_inputs` on "
          f"{describe_cpu(results['machine'])}.")


def _megabytes(value: float | None) -> str:
  return "not measured" if value is None else f"{value:.0f}"


def main(argv):
  del argv
  quiet_library_logs()
  rows = run_table()
  results = {"rows": rows, "summary": summary(rows), "machine": machine_record()}
  workdir = flags.FLAGS.workdir
  write_json(os.path.join(workdir, "results.json"), results)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown(results) + "\n")
  print(json.dumps(results["summary"]))
  return 0 if results["summary"]["clear"] + results["summary"]["correct"] == len(rows) else 1


def define_flags() -> None:
  flags.DEFINE_string("workdir", "runs/hostile_inputs", "Where results.json and results.md go.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
