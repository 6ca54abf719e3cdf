import dataclasses
import threading
import time

import numpy as np
import optax
import pytest

from dl_jax.data import BatchIterator, Split
from dl_jax.data.prefetch import Prefetcher
from dl_jax.models import MLP
from dl_jax.train import (FitConfig, classification_loss, classification_metrics,
                          create_train_state, fit, make_eval_step, make_train_step)


def _iterator(n=53, batch_size=8, seed=1, position=(0, 0)) -> BatchIterator:
  # x carries the example's own index so a batch says which examples it holds
  split = Split(np.arange(n, dtype=np.float32)[:, None], np.arange(n, dtype=np.int32) % 7)
  return BatchIterator(split, batch_size, seed, position=position)


def _reader_threads() -> list[threading.Thread]:
  return [t for t in threading.enumerate() if t.name == "batch-prefetch"]


@pytest.mark.parametrize("size", [0, 1, 3])
def test_same_batches_in_the_same_order_with_the_consumers_position(size):
  plain = _iterator(position=(2, 4))
  with Prefetcher(_iterator(position=(2, 4)), size) as prefetched:
    assert prefetched.position == (2, 4)
    for _ in range(20):  # six batches an epoch: crosses three epoch boundaries
      np.testing.assert_array_equal(next(prefetched)["x"], next(plain)["x"])
      # where the consumer is, however far the reader has gone ahead
      assert prefetched.position == plain.position
  assert not _reader_threads()


def test_count_limits_the_batches_read():
  prefetched = Prefetcher(_iterator(), size=4, count=5)
  assert len(list(prefetched)) == 5
  assert prefetched.position == (0, 5) and not _reader_threads()


class _FailingIterator:
  """Two batches, then an error, as a reader might meet a truncated file."""

  def __init__(self):
    self.position, self._inner = (0, 0), _iterator()

  def __next__(self):
    if self.position[1] == 2:
      raise OSError("disk read failed at batch 2")
    self.position = (0, self.position[1] + 1)
    return next(self._inner)


@pytest.mark.parametrize("size", [0, 2])
def test_an_error_in_the_reader_is_raised_in_the_consumer_after_the_good_batches(size):
  prefetched = Prefetcher(_FailingIterator(), size)
  next(prefetched), next(prefetched)
  with pytest.raises(OSError, match="disk read failed at batch 2"):
    next(prefetched)
  assert prefetched.position == (0, 2) and not _reader_threads()


def test_closing_stops_a_reader_blocked_on_a_full_queue():
  with pytest.raises(KeyboardInterrupt):
    with Prefetcher(_iterator(), size=2) as prefetched:
      next(prefetched)
      time.sleep(0.2)  # the reader fills the queue and waits for room
      assert len(_reader_threads()) == 1
      raise KeyboardInterrupt  # as Ctrl-C in the training loop would
  assert not _reader_threads()


def _fit(blob_dataset, workdir, num_steps, prefetch, hooks=()):
  model = MLP(widths=(16,), num_outputs=blob_dataset.num_classes, dropout_rate=0.2)
  state = create_train_state(model, optax.adam(1e-2), blob_dataset.train.gather([0])["x"], 0)
  config = FitConfig(num_steps=num_steps, batch_size=32, eval_every=20, log_every=10,
                     checkpoint_every=20, prefetch=prefetch)
  return fit(state, make_train_step(classification_loss(model)),
             make_eval_step(classification_metrics(model)), blob_dataset, config, str(workdir),
             hooks)[1]


def test_fit_with_prefetch_is_bit_identical_to_reading_in_the_loop_and_resumes_exactly(
    blob_dataset, tmp_path):
  # 7 batches an epoch: the checkpoint at step 20 lies mid-epoch, with the reader batches ahead
  in_loop = _fit(blob_dataset, tmp_path / "in_loop", 50, prefetch=0)
  prefetched = _fit(blob_dataset, tmp_path / "prefetched", 50, prefetch=4)

  def interrupt(step, state):
    if step == 25:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    _fit(blob_dataset, tmp_path / "resumed", 50, prefetch=4, hooks=[interrupt])
  assert not _reader_threads()
  resumed = _fit(blob_dataset, tmp_path / "resumed", 50, prefetch=4)
  assert resumed["resumed_from_step"] == 20
  assert in_loop["params_fingerprint"] == prefetched["params_fingerprint"]
  assert resumed["params_fingerprint"] == prefetched["params_fingerprint"]
  # by default fit reads ahead for data on disk only
  from dl_jax.train.fit import _prefetch
  default = FitConfig(num_steps=1, batch_size=1)
  assert _prefetch(default, blob_dataset) == 0
  mapped = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, (4, 2))
  on_disk = dataclasses.replace(blob_dataset, train=dataclasses.replace(blob_dataset.train, x=mapped))
  assert _prefetch(default, on_disk) == 2
  assert _prefetch(dataclasses.replace(default, prefetch=3), blob_dataset) == 3
