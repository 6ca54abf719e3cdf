"""The one error type the data layer raises for bad input."""

from dl_jax.errors import UserError


class DataError(UserError, ValueError):
  """A dataset file or array is missing, corrupt or inconsistent.

  The message names the file (or dataset) and says what was wrong and what to do.
  """
