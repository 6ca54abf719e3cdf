"""The one error type the data layer raises for bad input."""


class DataError(ValueError):
  """A dataset file or array is missing, corrupt or inconsistent.

  The message names the file (or dataset) and says what was wrong and what to do.
  """
