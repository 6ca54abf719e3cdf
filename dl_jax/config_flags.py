"""absl flags made from a config dataclass: one flag per field, overrides applied to a base config.

Each research script declares its config once, as a frozen dataclass; this module turns the fields
into typed flags (enums where the valid values are known, so a wrong value is rejected with the
choices) and builds the config from the flags the user actually set. Scripts define their flags
under `if __name__ == "__main__"`, so that tests can import several experiments into one process
without defining a flag name twice.
"""

import dataclasses
import json
import os
import sys
import typing
from typing import Any, Mapping, Sequence

from absl import flags

from dl_jax import compilation_cache
from dl_jax.settings import ConfigError, validate


def define_config_flags(config_cls: type, choices: Mapping[str, Sequence[str]] | None = None,
                        help: Mapping[str, str] | None = None) -> None:
  """Defines --<field> for every field of `config_cls`, defaulting to the dataclass default. Help
  text and choices come from the field's `setting(...)`, else from `help` and `choices`."""
  choices, help = choices or {}, help or {}
  owner = {"module_name": _script()}
  for field in dataclasses.fields(config_cls):
    name, default = field.name, field.default
    text = field.metadata.get("help") or help.get(name, name)
    field_choices = field.metadata.get("choices") or choices.get(name)
    if field_choices:
      flags.DEFINE_enum(name, default, list(field_choices), text, **owner)
    elif _is_tuple(field.type):
      flags.DEFINE_list(name, [str(v) for v in default], text, **owner)
    elif field.type is bool:
      flags.DEFINE_bool(name, default, text, **owner)
    elif field.type is int:
      flags.DEFINE_integer(name, default, text, **owner)
    elif field.type is float:
      flags.DEFINE_float(name, default, text, **owner)
    else:
      flags.DEFINE_string(name, default, text, **owner)


def define_experiment_flags(config_cls: type, default_workdir: str,
                            choices: Mapping[str, Sequence[str]] | None = None,
                            help: Mapping[str, str] | None = None) -> None:
  """--workdir, --smoke, --compilation_cache, and one flag per config field."""
  owner = {"module_name": _script()}
  flags.DEFINE_string("workdir", default_workdir, "Where config, metrics, results and plots go.",
                      **owner)
  flags.DEFINE_bool("smoke", False, "Start from the seconds-long smoke config (other flags apply).",
                    **owner)
  flags.DEFINE_string("compilation_cache", compilation_cache.default_directory(),
                      "Folder of JAX's persistent compilation cache: a second identical run loads "
                      "its compiled programs instead of compiling them. Empty: off.", **owner)
  flags.DEFINE_string("config", None, "A JSON file of config values (e.g. the config.json a run "
                      "wrote) applied over the default or --smoke config; flags given on the "
                      "command line override it.", **owner)
  define_config_flags(config_cls, choices, help)


def experiment_config(config_cls: type, smoke_config, hold_workdir: bool = True,
                      base: Any = None) -> Any:
  """The smoke or default config (or `base`), with --config's file and the flags set on the
  command line applied and every field checked (ConfigError); then takes --workdir for this process (WorkdirBusyError if another live
  process has it; `hold_workdir=False` leaves that to the caller, e.g. after joining a
  multi-process run) and turns on the compilation cache that --compilation_cache names (before
  anything compiles)."""
  from dl_jax.train.workdir_lock import hold  # the lock asks JAX which process writes

  if base is None:
    base = smoke_config() if flags.FLAGS.smoke else config_cls()
  if flags.FLAGS.config:
    base = config_from_file(config_cls, base, flags.FLAGS.config)
  config = validate(config_from_flags(config_cls, base))
  if hold_workdir:
    hold(flags.FLAGS.workdir)
  compilation_cache.enable(flags.FLAGS.compilation_cache)
  return config


def config_from_flags(config_cls: type, base: Any) -> Any:
  """`base` with every flag of `config_cls` that was set on the command line applied."""
  overrides = {}
  for field in dataclasses.fields(config_cls):
    flag = flags.FLAGS[field.name]
    if flag.present:
      value = flag.value
      if _is_tuple(field.type):
        value = _parse_list(field.name, typing.get_args(field.type)[0], value)
      overrides[field.name] = value
  return dataclasses.replace(base, **overrides)


MAX_CONFIG_BYTES = 1 << 20  # a config of a few dozen fields is a few KB


def config_from_file(config_cls: type, base: Any, path: str) -> Any:
  """`base` with the fields a JSON file sets: an object of field values, or a run's config.json
  that holds them under "config". An unknown field or a value of the wrong type is refused."""
  values = _read_config_file(path)
  names = {f.name for f in dataclasses.fields(config_cls)}
  if "config" not in names and isinstance(values.get("config"), dict):
    values = values["config"]
  unknown = sorted(set(values) - names)
  if unknown:
    raise ConfigError(f"--config={path}: {unknown} are not fields of this experiment; its fields "
                      f"are {sorted(names)}.")
  types = typing.get_type_hints(config_cls)
  return dataclasses.replace(base, **{name: _coerce(path, name, types[name], value)
                                      for name, value in values.items()})


def _read_config_file(path: str) -> dict:
  try:
    size = os.path.getsize(path)
    if size > MAX_CONFIG_BYTES:
      raise ConfigError(f"--config={path} is {size:,} bytes, larger than any config "
                        f"({MAX_CONFIG_BYTES:,}); give the JSON file of a config.")
    with open(path, "rb") as f:
      values = json.loads(f.read(MAX_CONFIG_BYTES))
  except FileNotFoundError:
    raise ConfigError(f"--config={path} does not exist; give a JSON file of config values.") \
        from None
  except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
    raise ConfigError(f"--config={path} cannot be read as JSON ({e}).") from None
  if not isinstance(values, dict):
    raise ConfigError(f"--config={path} holds a {type(values).__name__}; give a JSON object of "
                      "field values.")
  return values


def _coerce(path: str, name: str, annotation, value) -> Any:
  """A JSON value as the field's type (lists as tuples, ints as floats); else ConfigError."""
  if _is_tuple(annotation):
    element = typing.get_args(annotation)[0]
    if isinstance(value, list) and all(_fits(element, v) for v in value):
      return tuple(element(v) for v in value)
  elif _fits(annotation, value):
    return annotation(value)
  raise ConfigError(f"--config={path}: {name} = {json.dumps(value)} is not of the field's type "
                    f"{getattr(annotation, '__name__', annotation)}.")


def _fits(annotation, value) -> bool:
  if annotation is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if annotation is int:
    return isinstance(value, int) and not isinstance(value, bool)
  return isinstance(value, annotation) if isinstance(annotation, type) else False


def _script() -> str:
  """The module absl's --help lists as the program's own: the script that was run (sys.argv[0]),
  so its config flags show up there rather than under this module."""
  return sys.argv[0]


def _parse_list(name: str, element: type, values: Sequence[str]) -> tuple:
  try:
    return tuple(element(v) for v in values)
  except ValueError:
    raise ConfigError(f"--{name}={','.join(values)}: every value must be of type "
                      f"{element.__name__}, comma separated.") from None


def _is_tuple(annotation) -> bool:
  return typing.get_origin(annotation) is tuple
