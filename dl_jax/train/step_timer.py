"""The training loop's clock: the first call (compilation included) apart from the steady-state
rate, and the time spent waiting for batches."""

import time

import jax


class StepTimer:
  """Separates the first call (compilation included) from the steady-state rate, and counts the
  time the loop waits for its next batches: reading and placing them, or, with a prefetch
  thread, only what that thread has not read yet."""

  def __init__(self, start_step: int):
    self.start_step, self.t0 = start_step, time.perf_counter()
    self.first_call_s, self.t1, self.steps, self.data_s = None, None, 0, 0.0
    self.first_data_s, self.first_steps = 0.0, 0

  def timed_data(self, read_batches):
    start = time.perf_counter()
    batches = read_batches()
    self.data_s += time.perf_counter() - start
    if self.first_call_s is None:
      self.first_data_s = self.data_s
    return batches

  def after_step(self, step: int, metrics) -> None:
    self.steps = step - self.start_step
    if self.first_call_s is None:
      jax.block_until_ready(metrics)
      self.t1 = time.perf_counter()
      self.first_call_s, self.first_steps = self.t1 - self.t0, self.steps

  def seconds(self) -> dict[str, float]:
    if self.first_call_s is None:
      return {"train_seconds": 0.0}
    end = time.perf_counter()
    rest = self.steps - self.first_steps
    return {"train_seconds": end - self.t0, "first_call_seconds": self.first_call_s,
            "first_call_steps": self.first_steps,
            "steps_per_sec": rest / (end - self.t1) if rest else None,
            "data_seconds": self.data_s, "data_share": self.data_s / (end - self.t0)}
