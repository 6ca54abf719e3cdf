"""The training loop: steps, logging, evaluation, early stopping, checkpoints and resumption.

Steps run several per call: one compiled program scans the train step over a group of batches
read together, so Python, the batch gather and the host-device copy are paid once per group, not
once per step (MNIST-1D, 6000 steps: seconds of a small model's run). Groups end where the loop
logs, evaluates or checkpoints, so every figure and checkpoint falls on the step it did before.
"""

import dataclasses
import functools
import os
import time
from typing import Callable, Sequence

import jax
import numpy as np

from dl_jax import compilation_cache
from dl_jax.data import BatchGroups, BatchIterator, Dataset
from dl_jax.errors import UserError
from dl_jax.data.prefetch import Prefetcher
from dl_jax.phases import Phases
from dl_jax.train.calls import Periodic, call_sizes, scanned, steps_per_call, tree_bytes
from dl_jax.train.checkpoint import Checkpointer
from dl_jax.train.evaluate import evaluate
from dl_jax.train.figures import (evaluation_curves, final_figures, params_fingerprint,
                                  training_curves)
from dl_jax.train.parallel import DataParallel
from dl_jax.train.seeds import stacked_eval_step, stacked_train_step, unstack_state
from dl_jax.train.state import TrainState, count_params
from dl_jax.train.step_timer import StepTimer
from dl_jax.train.workdir_lock import workdir_lock
from dl_jax.train.writers import MetricsLog, Progress, write_json

Hook = Callable[[int, TrainState], None]
"""Called after every step with (step, state); e.g. to save plots or inspect activations. A run
with hooks runs one step per call, unless each is Periodic (called every so many steps)."""

Watch = Callable[[TrainState], dict]
"""Called with the state at every evaluation during training; its figures (arrays, a row per
seed for stacked seeds) are logged beside the evaluation as 'watch/NAME' and come back in
results['curves']['watch'][NAME]. Steps still run many per call."""

BatchSource = Callable[[int, Sequence[int]], object]
"""batches(seed, position) -> the training batches of one model from `position` (a
BatchIterator's (epoch, index), restored from a checkpoint): its `next_batches(count)` stacks
`count` batches [count, batch, ...], its `position` says where it stands. Default: a
BatchIterator over dataset.train in the seed's order."""

@dataclasses.dataclass(frozen=True)
class FitConfig:
  num_steps: int
  batch_size: int
  seed: int = 0  # the order of training examples
  eval_every: int = 500
  log_every: int = 100
  checkpoint_every: int = 1000  # 0: no checkpoints (a rerun trains from the start)
  patience: int = 0  # evaluations without a better validation accuracy before stopping; 0: off
  eval_batch_size: int = 1000
  train_eval_examples: int = 10_000  # periodic train figures use this fixed subset of train
  drop_remainder: bool = True
  # Calls' batches a background thread reads ahead; 0: read each in the loop. None: 2 for data
  # read from disk (memory-mapped), 0 for arrays in memory, where handing batches between threads
  # costs more than gathering them.
  prefetch: int | None = None
  # Most steps one compiled call runs (a scan over that many batches); 1: a call per step. The
  # loop uses the largest count that divides log_every, eval_every and checkpoint_every and reads
  # at most MAX_CALL_BYTES of batches.
  max_steps_per_call: int = 100
  # Evaluations during training also score the test split, for curves of test figures over
  # training (results["curves"]); early stopping never sees them.
  test_curve: bool = False


class NonFiniteError(UserError, FloatingPointError):
  """The loss or the gradients became NaN or Inf."""


class SeedsError(UserError, ValueError):
  """Stacked seed states asked of fit with something they cannot share."""

_LOOP_PHASES = ("logging", "evaluation during training", "checkpointing")


def fit(state: TrainState, train_step, eval_step, dataset: Dataset, config: FitConfig,
        workdir: str, hooks: Sequence[Hook] = (),
        parallel: DataParallel | None = None,
        phases: Phases | None = None,
        seeds: Sequence[int] | None = None,
        watch: Watch | None = None,
        batches: BatchSource | None = None) -> tuple[TrainState, dict]:
  """Trains `state` for `config.num_steps` steps (resuming from `workdir/checkpoints` if there is
  one), then evaluates every split. Writes metrics.jsonl and results.json; returns the results.
  With `parallel`, batches are split over its mesh and the state is replicated on it. The wall
  time of each phase (the caller's `phases` so far, then this loop's) goes into results["phases"].
  The workdir is locked for the run: a second process training into it gets WorkdirBusyError.

  With `seeds`, `state` holds one model per seed stacked on a leading axis (train.seeds): seed i
  reads the batches of its own order (`seeds[i]` in place of `config.seed`), one compiled call
  steps every model (fit vmaps the single-model `train_step` and `eval_step`), and every figure
  is a list with one value per seed. Early stopping needs one model, so `patience` is refused.

  `batches` replaces the training batches (e.g. pairs for a metric loss); `eval_step` None, for a
  model the dataset's splits cannot score, leaves evaluations to `watch` and the final figures
  to the caller.
  """
  _check_options(eval_step, config, parallel, batches)
  with workdir_lock(workdir):
    return _fit(state, train_step, eval_step, dataset, config, workdir, hooks, parallel, phases,
                seeds, watch, batches)


def _fit(state: TrainState, train_step, eval_step, dataset: Dataset, config: FitConfig,
         workdir: str, hooks: Sequence[Hook], parallel: DataParallel | None,
         phases: Phases | None, seeds: Sequence[int] | None, watch: Watch | None,
         source: BatchSource | None) -> tuple[TrainState, dict]:
  phases = phases if phases is not None else Phases()
  if seeds is not None:
    _check_seeds(state, seeds, config, parallel)
    train_step = stacked_train_step(train_step)
    eval_step = None if eval_step is None else stacked_eval_step(eval_step)
  parallel = parallel or _SingleDevice()
  parallel.check_batch_size(config.batch_size)
  cache_before = compilation_cache.counts()
  with phases("checkpointing"):
    checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"))
  best = (Checkpointer(os.path.join(workdir, "best"), max_to_keep=1)
          if config.patience and dataset.val is not None else None)
  log = MetricsLog(os.path.join(workdir, "metrics.jsonl"))
  record = {"position": [0, 0] if seeds is None else [[0, 0]] * len(seeds),
            "best_val_accuracy": -1.0, "best_step": 0, "bad_evals": 0, "stopped_early": False}
  with phases("checkpoint restore"):
    restored = checkpoints.restore(state)
  resumed_from = None
  if restored is not None:
    state, record = restored
    resumed_from = _step_of(state)
  elif _step_of(state) >= config.num_steps > 0:
    raise UserError(f"the state given to fit is at step {_step_of(state)}, and num_steps "
                    f"({config.num_steps}) counts from step 0: nothing to train. Ask for "
                    f"{_step_of(state)} + the steps to train")
  log.truncate_after(resumed_from or 0)  # lines a killed run logged after its last checkpoint
  state = parallel.put_state(state)
  evaluate_split = functools.partial(evaluate, eval_step, batch_size=config.eval_batch_size,
                                     place=parallel.put_replicated)
  probes = {} if eval_step is None else _probes(dataset, config)
  step, pending = _step_of(state), []
  progress = Progress(config.num_steps, step)
  timer = StepTimer(step)
  source = source or _default_source(dataset, config, parallel.process_shard)
  models = 1 if seeds is None else len(seeds)
  batch_bytes = tree_bytes(source((seeds or [config.seed])[0], (0, 0)).next_batches(1))
  sizes = call_sizes(step, config.num_steps, steps_per_call(config, batch_bytes, hooks, models))
  batches = Prefetcher(_batch_groups(source, config, record["position"], sizes, seeds),
                       _prefetch(config, dataset), count=len(sizes), place=parallel.put_batches)
  run_steps = scanned(train_step)
  loop_start, inner_start = time.perf_counter(), _inner_seconds(phases)
  try:
    while step < config.num_steps and not record["stopped_early"]:
      group = timer.timed_data(lambda: next(batches))
      state, metrics = run_steps(state, group)
      step += jax.tree_util.tree_leaves(group)[0].shape[0]
      pending.append((step, metrics))
      timer.after_step(step, metrics)
      for hook in hooks:
        if not isinstance(hook, Periodic) or step % hook.every == 0 or step == config.num_steps:
          hook(step, state)
      last = step == config.num_steps
      logs, evals = step % config.log_every == 0 or last, step % config.eval_every == 0 or last
      saves = bool(config.checkpoint_every) and (step % config.checkpoint_every == 0 or last)
      if logs or evals or saves:
        jax.block_until_ready(metrics)  # the steps' own time, not the phases' below
      if logs:
        with phases("logging"):
          summary = _flush(pending, checkpoints, seeds)
          log.write(step, {**{f"train/{k}": v for k, v in summary.items()},
                           "steps_per_sec": progress.update(step, summary)})
      if evals:
        seconds = time.perf_counter() - loop_start - (_inner_seconds(phases) - inner_start)
        with phases("evaluation during training"):
          scores = {f"{name}/{k}": v for name, split in probes.items()
                    for k, v in evaluate_split(state, split).items()}
          if watch is not None:
            scores.update({f"watch/{k}": np.asarray(v).tolist()
                           for k, v in jax.device_get(watch(state)).items()})
          log.write(step, {**scores, "train_seconds": seconds})
          if best is not None:
            _track_best(record, scores["val/accuracy"], step, state, best, config.patience)
      if saves or record["stopped_early"]:
        with phases("checkpointing"):
          summary = _flush(pending, checkpoints, seeds)
          if summary:
            log.write(step, {f"train/{k}": v for k, v in summary.items()})
          if config.checkpoint_every:
            record["position"] = list(batches.position)
            checkpoints.save(step, state, record)
  finally:
    batches.close()
    progress.close()
    with phases("checkpointing"):
      checkpoints.close()
  train_seconds = timer.seconds()
  _add_loop_phases(phases, timer, time.perf_counter() - loop_start)
  if best is not None:
    state, _ = best.restore(state)
    state = parallel.put_state(state)
    best.close()
  with phases("final evaluation"):
    figures = {} if eval_step is None else final_figures(evaluate_split, state, dataset)
  one_model = state if seeds is None else unstack_state(state, 0)
  lines = log.read()
  results = {
      "step": step, "selected_step": _step_of(state), "stopped_early": record["stopped_early"],
      "resumed_from_step": resumed_from, "num_params": count_params(one_model.params),
      "params_fingerprint": params_fingerprint(state.params), **train_seconds, **figures,
      "curves": evaluation_curves(lines), "train_curves": training_curves(lines),
      "phases": dict(phases.seconds),
  }
  if seeds is not None:
    results["seeds"] = list(seeds)
  results["compilation_cache"] = {key: count - cache_before[key]
                                   for key, count in compilation_cache.counts().items()}
  write_json(os.path.join(workdir, "results.json"), results)
  return state, results


def _step_of(state: TrainState) -> int:
  """The step count of a state, or of stacked states (all at the same step)."""
  return int(np.asarray(state.step).reshape(-1)[0])


def _check_seeds(state: TrainState, seeds: Sequence[int], config: FitConfig,
                 parallel: DataParallel | None) -> None:
  if np.ndim(state.step) != 1 or len(state.step) != len(seeds):
    raise SeedsError(f"fit was given {len(seeds)} seeds but a state of step shape "
                     f"{np.shape(state.step)}; stack one state per seed (train.seeds)")
  if config.patience:
    raise SeedsError("early stopping (patience) picks one model's best step; stacked seeds share "
                     "their steps. Train the seeds without patience, or one at a time")
  if parallel is not None:
    raise SeedsError("stacked seeds train on one device; leave out the data-parallel mesh")


def _check_options(eval_step, config: FitConfig, parallel: DataParallel | None,
                   batches: BatchSource | None) -> None:
  if eval_step is None and config.patience:
    raise UserError("early stopping (patience) follows the validation accuracy: give fit an "
                    "eval_step, or set patience to 0")
  if batches is not None and parallel is not None:
    raise UserError("data-parallel training shards the default batches over processes; train a "
                    "custom batch source on one device")


def _default_source(dataset: Dataset, config: FitConfig, shard: tuple[int, int]) -> BatchSource:
  """BatchIterators over dataset.train: this process's shard of each batch."""
  return lambda seed, at: BatchIterator(dataset.train, config.batch_size, seed,
                                        config.drop_remainder, position=tuple(at), shard=shard)


def _batch_groups(source: BatchSource, config: FitConfig, position, sizes: list[int],
                  seeds: Sequence[int] | None) -> BatchGroups:
  """The training batches from `position`: one order (`config.seed`), or one per seed."""
  if seeds is None:
    return BatchGroups(source(config.seed, position), sizes)
  return BatchGroups([source(seed, at) for seed, at in zip(seeds, position)], sizes)


def _inner_seconds(phases: Phases) -> float:
  """Seconds so far of the phases the loop pauses training for."""
  return sum(phases.seconds.get(name, 0.0) for name in _LOOP_PHASES)


def _prefetch(config: FitConfig, dataset: Dataset) -> int:
  if config.prefetch is not None:
    return config.prefetch
  return 2 if isinstance(dataset.train.x, np.memmap) else 0


def _add_loop_phases(phases: Phases, timer: StepTimer, loop_seconds: float) -> None:
  """Splits the loop's time not yet given to a phase into the first call (compilation included),
  waiting for batches, and the training steps."""
  if timer.first_call_s is None:
    return
  inner = _inner_seconds(phases)
  waits = timer.data_s - timer.first_data_s  # the first batches' wait is in the first call
  phases.add("compile + first call", timer.first_call_s)
  phases.add("waiting for batches", waits)
  phases.add("training steps", max(loop_seconds - inner - timer.first_call_s - waits, 0.0))


def _flush(pending: list, checkpoints: Checkpointer,
           seeds: Sequence[int] | None = None) -> dict:
  """Fetches buffered step metrics (each entry: the step after a call and the call's metrics,
  stacked per step, and per seed for stacked seeds), stops on the first non-finite one, returns
  their means: floats, or per-seed lists."""
  if not pending:
    return {}
  ends, stacked = zip(*pending)
  stacked = jax.device_get(list(stacked))
  pending.clear()
  values = {k: np.concatenate([np.asarray(m[k]) for m in stacked]) for k in stacked[0]}
  steps = np.concatenate([np.arange(end - len(next(iter(m.values()))) + 1, end + 1)
                          for end, m in zip(ends, stacked)])
  finite = np.all([np.isfinite(v) for v in values.values()], axis=0).reshape(len(steps), -1)
  if not finite.all():
    row = int(np.argmin(finite.all(axis=1)))
    seed = int(np.argmin(finite[row]))
    shown = ", ".join(f"{k}={float(v.reshape(len(steps), -1)[row, seed]):.4g}"
                      for k, v in sorted(values.items()))
    where = f"step {steps[row]}" if seeds is None else (
        f"step {steps[row]} for seeds {[seeds[i] for i in np.nonzero(~finite[row])[0]]}")
    last = checkpoints.latest_step()
    kept = ("No checkpoint was written." if last is None else
            f"The last checkpoint (step {last}) in {checkpoints.directory} is intact.")
    raise NonFiniteError(
        f"training stopped: non-finite loss or gradient at {where} ({shown}). {kept} "
        "Lower the learning rate, clip gradients, or check the inputs.")
  return {k: np.mean(v, axis=0).tolist() for k, v in values.items()}


def _probes(dataset: Dataset, config: FitConfig) -> dict:
  """The splits evaluations during training score: a fixed subset of train, val, and test for
  `config.test_curve`."""
  probes = {"train_eval": _train_probe(dataset, config)}
  if dataset.val is not None:
    probes["val"] = dataset.val
  if config.test_curve:
    probes["test"] = dataset.test
  return probes


def _train_probe(dataset: Dataset, config: FitConfig):
  """A fixed subset of train for periodic train figures (cheap even for out-of-core data)."""
  n = len(dataset.train)
  if n <= config.train_eval_examples:
    return dataset.train
  positions = np.random.default_rng(config.seed).choice(n, config.train_eval_examples, replace=False)
  return dataset.train.subset(np.sort(positions))


def _track_best(record: dict, val_accuracy: float, step: int, state, best: Checkpointer,
                patience: int) -> None:
  """Early stopping on validation accuracy; the best state is kept in its own checkpoint."""
  if val_accuracy > record["best_val_accuracy"]:
    record.update(best_val_accuracy=val_accuracy, best_step=step, bad_evals=0)
    best.save(step, state, {"val_accuracy": val_accuracy})
  else:
    record["bad_evals"] += 1
    record["stopped_early"] = record["bad_evals"] >= patience


class _SingleDevice:
  """The default placement: JAX's default device; one process reads whole batches."""

  process_shard = (0, 1)

  def check_batch_size(self, batch_size: int) -> None:
    pass

  def put_state(self, state):
    return state

  def put_batches(self, batches):
    return jax.device_put(batches)  # in the prefetch thread: the copy overlaps the running step

  def put_replicated(self, arrays):
    return arrays
