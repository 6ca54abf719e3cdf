"""How every research script ends: results, or one line on stderr and a non-zero exit status.

    if __name__ == "__main__":
      define_flags()
      cli.run(main)

Bad input (any `UserError`: data, flags, workdir, checkpoints, NaN in training), a full or
read-only disk, and Ctrl-C each end in one `error: ...` line that says what to do, with exit
status 2 (130 for Ctrl-C), never a traceback. Any other exception is a bug and keeps its traceback.
"""

import contextlib
import errno
import os
import sys
import threading

from absl import app, flags

from dl_jax.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                   errno.EPERM, errno.ENOTDIR, errno.EISDIR}


def run(main) -> None:
  """`absl.app.run(main)`, with user errors, storage errors and Ctrl-C reported in one line."""
  app.run(reporting(main), flags_parser=parse_flags)


HELP_FLAGS = {"--help", "-help", "-?", "--helpshort", "-helpshort", "--helpfull", "-helpfull"}


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag (unknown, mistyped, not among its choices) reported in
  one line and exit 2 rather than absl's FATAL message and exit 1; help asked for exits 0 (absl
  exits 1 after printing it)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{e}; run with --helpshort for the flags and what they accept.")
  except SystemExit as e:
    if e.code == 1 and HELP_FLAGS & set(argv[1:]):
      sys.exit(0)
    raise


def reporting(main):
  """`main` wrapped so that the failures a user can fix exit with one line instead of a trace."""
  def wrapped(argv):
    try:
      return main(argv)
    except UserError as e:
      fail(str(e))
    except OSError as e:
      if e.errno not in _STORAGE_ERRORS:
        raise
      fail(f"cannot write {e.filename or 'a file'}: {e.strerror}; free space, or pass a "
           f"--workdir on a writable disk{_resume_hint()}")
    except KeyboardInterrupt:
      fail(f"interrupted{_resume_hint()}", EXIT_INTERRUPTED)
  return wrapped


def fail(message: str, status: int = EXIT_USER_ERROR):
  """Prints `error: <message>` as one line on stderr and exits with `status`."""
  _print_error(message)
  sys.exit(status)


def _print_error(message: str) -> None:
  print("error: " + " ".join(message.split()), file=sys.stderr, flush=True)


@contextlib.contextmanager
def deadline(seconds: float, message: str):
  """Ends the process with `error: <message>` and status 2 if the block runs past `seconds`: for
  library calls that wait in C++ and abort the process, instead of raising, when they give up."""
  def expire():
    _print_error(message)
    os._exit(EXIT_USER_ERROR)  # the main thread is blocked in C++: exit from here
  timer = threading.Timer(seconds, expire)
  timer.daemon = True
  timer.start()
  try:
    yield
  finally:
    timer.cancel()


def _resume_hint() -> str:
  """Where a rerun resumes from, for scripts that checkpoint into --workdir."""
  if "workdir" not in flags.FLAGS:
    return ""
  return (f"; what is already saved in {flags.FLAGS.workdir} is kept: run the same command "
          "again to resume from the last checkpoint")
