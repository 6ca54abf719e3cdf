"""Deploying a pruned MLP: its on-disk size stored dense or sparse, and its inference speed with
a dense (BLAS) or a sparse (scipy.sparse CSR) forward pass, measured rather than assumed.

A ReLU MLP is a list of (kernel [in, out], bias [out]) layers; these functions take that list
(`mlp_layers(params)`) so the same weights run through every implementation.
"""

import io
import time
from typing import Callable, Sequence

import numpy as np
import scipy.sparse

from dl_jax.structured_pruning import dense_layers

Layers = Sequence[tuple[np.ndarray, np.ndarray]]


def mlp_layers(params) -> list[tuple[np.ndarray, np.ndarray]]:
  """[(kernel, bias), ...] of an MLP's params as float32 numpy arrays, in layer order."""
  return [(np.asarray(params[n]["kernel"], np.float32), np.asarray(params[n]["bias"], np.float32))
          for n in dense_layers(params)]


def dense_forward(layers: Layers, x: np.ndarray) -> np.ndarray:
  """Logits of a ReLU MLP with dense matrix products."""
  h = x.reshape(len(x), -1)
  for i, (kernel, bias) in enumerate(layers):
    h = h @ kernel + bias
    if i < len(layers) - 1:
      h = np.maximum(h, 0)
  return h


def to_csr(layers: Layers) -> list[tuple[scipy.sparse.csr_matrix, np.ndarray]]:
  """Each kernel transposed ([out, in]) as CSR, so a layer is one sparse x dense product."""
  return [(scipy.sparse.csr_matrix(kernel.T), bias) for kernel, bias in layers]


def sparse_forward(csr_layers, x: np.ndarray) -> np.ndarray:
  """Logits of a ReLU MLP whose kernels are CSR: h^T <- W^T h^T, touching only nonzero weights."""
  h = x.reshape(len(x), -1).T
  for i, (kernel_t, bias) in enumerate(csr_layers):
    h = kernel_t @ h + bias[:, None]
    if i < len(csr_layers) - 1:
      h = np.maximum(h, 0)
  return h.T


def _index_dtype(limit: int):
  return np.uint16 if limit <= np.iinfo(np.uint16).max else np.int32


def savez_bytes(arrays: dict[str, np.ndarray], compressed: bool = True) -> int:
  """Bytes that np.savez(_compressed) writes for `arrays`: the on-disk size of a model file."""
  buffer = io.BytesIO()
  (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
  return buffer.getbuffer().nbytes


def dense_arrays(layers: Layers) -> dict[str, np.ndarray]:
  return {f"{k}{i}": a for i, layer in enumerate(layers) for k, a in zip(("w", "b"), layer)}


def sparse_arrays(layers: Layers) -> dict[str, np.ndarray]:
  """CSR triplets of each kernel (float32 values, the narrowest integer index type) + biases."""
  arrays = {}
  for i, (kernel_t, bias) in enumerate(to_csr(layers)):
    arrays.update({f"values{i}": kernel_t.data.astype(np.float32),
                   f"columns{i}": kernel_t.indices.astype(_index_dtype(kernel_t.shape[1])),
                   f"row_starts{i}": kernel_t.indptr.astype(_index_dtype(kernel_t.nnz)),
                   f"b{i}": bias})
  return arrays


def model_sizes(layers: Layers) -> dict[str, int]:
  """On-disk bytes: dense raw, dense compressed, and CSR compressed."""
  return {"dense_bytes": savez_bytes(dense_arrays(layers), compressed=False),
          "dense_compressed_bytes": savez_bytes(dense_arrays(layers)),
          "sparse_compressed_bytes": savez_bytes(sparse_arrays(layers))}


def examples_per_second(forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                        min_seconds: float = 0.2, repeats: int = 5) -> float:
  """Median over `repeats` timings (each at least `min_seconds` of calls) of examples per second;
  one warm-up call first (compilation, caches). Call results are blocked on, so asynchronous
  dispatch (jax) cannot flatter the figure."""
  np.asarray(forward(x))
  rates = []
  for _ in range(repeats):
    calls, start = 0, time.perf_counter()
    while True:
      np.asarray(forward(x))
      calls += 1
      elapsed = time.perf_counter() - start
      if elapsed >= min_seconds:
        break
    rates.append(calls * len(x) / elapsed)
  return float(np.median(rates))
