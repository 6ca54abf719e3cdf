"""`UserError`: the base of every error that bad input causes (data, flags, workdir, environment).

Research scripts print such an error as one line, `error: <message>`, and exit with status 2
(`dl_jax.cli`); any other exception is a bug in our code and keeps its traceback. Each message
says what was wrong, where, and what to do.
"""


class UserError(Exception):
  """Bad input from the user; the message is the whole report."""
