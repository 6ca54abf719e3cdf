"""What a result was measured on: Python, package versions, the machine and JAX's devices."""

import importlib.metadata
import os
import platform

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint", "numpy", "scipy",
            "scikit-learn", "mnist1d", "mlxtend", "num2words", "matplotlib", "markdown-it-py")


def cpu_model() -> str:
  """The CPU's model name (first core of /proc/cpuinfo on Linux; else what `platform` knows)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def describe_cpu(machine: dict) -> str:
  """'2 cores of <CPU model>' from a result's machine record (older records lack the model)."""
  return (f"{machine['cpu_count']} cores of "
          f"{machine.get('cpu') or machine.get('processor') or 'an unnamed CPU'}")


def machine_record() -> dict:
  """The machine a result was measured on: platform, architecture, CPU model and core count."""
  return {"platform": platform.platform(), "processor": platform.machine(), "cpu": cpu_model(),
          "cpu_count": os.cpu_count()}


def environment() -> dict:
  """Package versions, Python, the machine and JAX's devices: saved beside every result."""
  def version(package):
    try:
      return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      return None
  return {"packages": {p: version(p) for p in PACKAGES}, "python": platform.python_version(),
          "machine": machine_record(),
          "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
          "process_count": jax.process_count()}
