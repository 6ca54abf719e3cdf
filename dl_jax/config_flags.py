"""absl flags made from a config dataclass: one flag per field, overrides applied to a base config.

Each research script declares its config once, as a frozen dataclass; this module turns the fields
into typed flags (enums where the valid values are known, so a wrong value is rejected with the
choices) and builds the config from the flags the user actually set. Scripts define their flags
under `if __name__ == "__main__"`, so that tests can import several experiments into one process
without defining a flag name twice.
"""

import dataclasses
import typing
from typing import Any, Mapping, Sequence

from absl import flags

from dl_jax import compilation_cache


def define_config_flags(config_cls: type, choices: Mapping[str, Sequence[str]] | None = None,
                        help: Mapping[str, str] | None = None) -> None:
  """Defines --<field> for every field of `config_cls`, defaulting to the dataclass default."""
  choices, help = choices or {}, help or {}
  for field in dataclasses.fields(config_cls):
    name, default, text = field.name, field.default, help.get(field.name, field.name)
    if name in choices:
      flags.DEFINE_enum(name, default, list(choices[name]), text)
    elif _is_tuple(field.type):
      flags.DEFINE_list(name, [str(v) for v in default], text)
    elif field.type is bool:
      flags.DEFINE_bool(name, default, text)
    elif field.type is int:
      flags.DEFINE_integer(name, default, text)
    elif field.type is float:
      flags.DEFINE_float(name, default, text)
    else:
      flags.DEFINE_string(name, default, text)


def define_experiment_flags(config_cls: type, default_workdir: str,
                            choices: Mapping[str, Sequence[str]] | None = None,
                            help: Mapping[str, str] | None = None) -> None:
  """--workdir, --smoke, --compilation_cache, and one flag per config field."""
  flags.DEFINE_string("workdir", default_workdir, "Where config, metrics, results and plots go.")
  flags.DEFINE_bool("smoke", False, "Start from the seconds-long smoke config (other flags apply).")
  flags.DEFINE_string("compilation_cache", compilation_cache.default_directory(),
                      "Folder of JAX's persistent compilation cache: a second identical run loads "
                      "its compiled programs instead of compiling them. Empty: off.")
  define_config_flags(config_cls, choices, help)


def experiment_config(config_cls: type, smoke_config) -> Any:
  """The smoke or default config, with the flags set on the command line applied; turns on the
  compilation cache that --compilation_cache names (before anything compiles)."""
  compilation_cache.enable(flags.FLAGS.compilation_cache)
  base = smoke_config() if flags.FLAGS.smoke else config_cls()
  return config_from_flags(config_cls, base)


def config_from_flags(config_cls: type, base: Any) -> Any:
  """`base` with every flag of `config_cls` that was set on the command line applied."""
  overrides = {}
  for field in dataclasses.fields(config_cls):
    flag = flags.FLAGS[field.name]
    if flag.present:
      value = flag.value
      if _is_tuple(field.type):
        element = typing.get_args(field.type)[0]
        value = tuple(element(v) for v in value)
      overrides[field.name] = value
  return dataclasses.replace(base, **overrides)


def _is_tuple(annotation) -> bool:
  return typing.get_origin(annotation) is tuple
