"""Seeded samplers for metric learning: same/different pairs, triplets and N-way one-shot episodes.

Everything is drawn as positions into a split (gather them with `Split.gather`), from classes
chosen uniformly, so pairs are balanced whatever the class frequencies. The same seed gives the
same draw; a training stream seeds step `t` with (seed, t), so a resumed run sees the same batches.
"""

from typing import Sequence

import numpy as np

from dl_jax.data.split import Split


class ClassIndex:
  """Positions of each of `classes` in `labels`, for drawing examples of a given class fast."""

  def __init__(self, labels: np.ndarray, classes=None):
    labels = np.asarray(labels)
    self.classes = np.unique(labels) if classes is None else np.asarray(sorted(set(classes)))
    if len(self.classes) < 2:
      raise ValueError(f"pairs need at least 2 classes; got {self.classes.tolist()}.")
    self.members = [np.flatnonzero(labels == c) for c in self.classes]
    small = {int(c): len(m) for c, m in zip(self.classes, self.members) if len(m) < 2}
    if small:
      raise ValueError(f"classes {small} (class: examples) have fewer than 2 examples; a "
                       "same-class pair needs 2. Drop those classes or use a larger split.")
    self.counts = np.array([len(m) for m in self.members])
    self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
    self.flat = np.concatenate(self.members)  # class 0's positions, then class 1's, ...
    self.rank = np.zeros(len(labels), np.int64)  # a position's index among its class's members
    self.rank[self.flat] = np.concatenate([np.arange(n) for n in self.counts])

  def draw(self, rng: np.random.Generator, which: np.ndarray, exclude=None) -> np.ndarray:
    """One position per entry of `which` (class numbers 0..K-1), each a uniform member of its
    class; with `exclude` (positions), a member other than the excluded one."""
    counts = self.counts[which]
    if exclude is None:
      picks = rng.integers(counts)
    else:  # uniform over the other count-1 members: skip past the excluded member's rank
      picks = (self.rank[exclude] + 1 + rng.integers(counts - 1)) % counts
    return self.flat[self.starts[which] + picks]

  def two_classes(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` ordered pairs of distinct class numbers, uniform over all such pairs."""
    k = len(self.classes)
    first = rng.integers(k, size=n)
    return first, (first + 1 + rng.integers(k - 1, size=n)) % k


def sample_pairs(index: ClassIndex, num_pairs: int, rng: np.random.Generator) -> dict:
  """{'a', 'b': positions, 'same': bool}: exactly num_pairs // 2 same-class pairs (two different
  examples of one class), the rest from two different classes, in shuffled order."""
  _check_count(num_pairs, "num_pairs", 2)
  positives = num_pairs // 2
  same_class = rng.integers(len(index.classes), size=positives)
  first, second = index.two_classes(rng, num_pairs - positives)
  a = index.draw(rng, np.concatenate([same_class, first]))
  b_same = index.draw(rng, same_class, exclude=a[:positives])
  b = np.concatenate([b_same, index.draw(rng, second)])
  same = np.arange(num_pairs) < positives
  order = rng.permutation(num_pairs)
  return {"a": a[order], "b": b[order], "same": same[order]}


def sample_triplets(index: ClassIndex, num_triplets: int, rng: np.random.Generator) -> dict:
  """{'anchor', 'positive', 'negative'}: the positive another example of the anchor's class, the
  negative an example of a different class."""
  _check_count(num_triplets, "num_triplets", 1)
  anchor_class, negative_class = index.two_classes(rng, num_triplets)
  anchor = index.draw(rng, anchor_class)
  return {"anchor": anchor, "positive": index.draw(rng, anchor_class, exclude=anchor),
          "negative": index.draw(rng, negative_class)}


def sample_episodes(index: ClassIndex, num_episodes: int, ways: int, queries: int,
                    rng: np.random.Generator) -> dict:
  """N-way one-shot episodes: per episode `ways` classes, one support example each and `queries`
  other examples each to classify. Returns {'support': [E, ways], 'query': [E, ways * queries],
  'query_label': [E, ways * queries] (the column of the query's class in 'support')}."""
  _check_count(num_episodes, "num_episodes", 1)
  if not 2 <= ways <= len(index.classes):
    raise ValueError(f"ways={ways} must be between 2 and the {len(index.classes)} classes.")
  _check_count(queries, "queries", 1)
  chosen = np.stack([rng.permutation(len(index.classes))[:ways] for _ in range(num_episodes)])
  per_episode = [_episode(index, row, queries, rng) for row in chosen]
  return {key: np.stack([e[key] for e in per_episode]) for key in per_episode[0]}


def _episode(index: ClassIndex, classes: np.ndarray, queries: int, rng: np.random.Generator):
  """One episode: each class's support and queries are distinct examples of that class."""
  support, query = [], []
  for c in classes:
    members = index.members[c]
    if len(members) < queries + 1:
      raise ValueError(f"class {index.classes[c]} has {len(members)} examples; an episode with "
                       f"{queries} queries needs {queries + 1}.")
    drawn = rng.choice(members, queries + 1, replace=False)
    support.append(drawn[0])
    query.append(drawn[1:])
  return {"support": np.array(support), "query": np.concatenate(query),
          "query_label": np.repeat(np.arange(len(classes)), queries)}


def per_class_subset(index: ClassIndex, per_class: int, rng: np.random.Generator) -> np.ndarray:
  """Sorted positions of `per_class` examples of each class, drawn without replacement (a small
  training set for data-efficiency experiments)."""
  _check_count(per_class, "per_class", 2)
  if per_class > index.counts.min():
    raise ValueError(f"per_class={per_class} exceeds the {index.counts.min()} examples of the "
                     "smallest class.")
  return np.sort(np.concatenate([rng.choice(m, per_class, replace=False) for m in index.members]))


class PairBatches:
  """Training batches of pairs ({'x_a', 'x_b', 'same'}) or triplets ({'x_a', 'x_p', 'x_n'}) of
  `split`'s examples of `classes`; step t is drawn from the generator seeded with (seed, t).
  As a batch source of `fit` it reads on from `position` (0, t): batch t next."""

  KINDS = ("pairs", "triplets")

  def __init__(self, split: Split, batch_size: int, seed: int, classes=None, kind: str = "pairs",
               position: Sequence[int] = (0, 0)):
    if kind not in self.KINDS:
      raise ValueError(f"unknown kind {kind!r}; choose one of {self.KINDS}.")
    _check_count(batch_size, "batch_size", 2)
    self.split, self.batch_size, self.seed, self.kind = split, batch_size, seed, kind
    self.index = ClassIndex(split.labels, classes)
    self.next_step = int(position[1])

  @property
  def position(self) -> tuple[int, int]:
    return 0, self.next_step

  def next_batches(self, count: int) -> dict[str, np.ndarray]:
    """The next `count` batches, stacked [count, batch, ...]."""
    batches = [self.batch(self.next_step + i) for i in range(count)]
    self.next_step += count
    return {key: np.stack([b[key] for b in batches]) for key in batches[0]}

  def batch(self, step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, step])
    if self.kind == "pairs":
      pairs = sample_pairs(self.index, self.batch_size, rng)
      return {"x_a": self._x(pairs["a"]), "x_b": self._x(pairs["b"]), "same": pairs["same"]}
    triplets = sample_triplets(self.index, self.batch_size, rng)
    return {"x_a": self._x(triplets["anchor"]), "x_p": self._x(triplets["positive"]),
            "x_n": self._x(triplets["negative"])}

  def _x(self, positions: np.ndarray) -> np.ndarray:
    return self.split.gather(positions)["x"]


def _check_count(value: int, name: str, minimum: int) -> None:
  if int(value) != value or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
