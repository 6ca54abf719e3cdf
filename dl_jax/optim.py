"""optax optimizers and learning-rate schedules by name."""

import optax

from dl_jax.catalog import OPTIMIZERS, SCHEDULES


def make_schedule(name: str, learning_rate: float, total_steps: int,
                  warmup_steps: int = 0) -> optax.Schedule:
  """A learning rate as a function of the step."""
  if name == "constant":
    return optax.constant_schedule(learning_rate)
  if name == "cosine":
    return optax.cosine_decay_schedule(learning_rate, decay_steps=max(total_steps, 1))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps=warmup_steps, decay_steps=max(total_steps, warmup_steps + 1))
  raise ValueError(f"unknown schedule {name!r}; choose one of {list(SCHEDULES)}")


def make_optimizer(name: str, schedule: optax.Schedule, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """`weight_decay` is decoupled (applied by the optimizer, not added to the loss); adamw only."""
  if weight_decay and name != "adamw":
    raise ValueError(f"weight_decay is decoupled and only used by adamw, not {name!r}; "
                     "use an L2 penalty in the loss for the others")
  if name == "sgd":
    return optax.sgd(schedule)
  if name == "momentum":
    return optax.sgd(schedule, momentum=momentum)
  if name == "adam":
    return optax.adam(schedule)
  if name == "adamw":
    return optax.adamw(schedule, weight_decay=weight_decay)
  raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
