"""Number-word translation: English number words -> French, German or Spanish, made by num2words.

Tokens are words (with the separators that follow them, 'vingt-', 'mille ', 'thousand, ') where the
training text repeats them, and single characters otherwise. English, French and Spanish number
words use fewer than 100 such words, so a sentence of up to ~70 characters becomes at most 13
tokens, and a training step on 2 CPU cores runs ~10x faster than on characters (sequential RNN
steps are where the time goes). German writes each number as
one compound never repeated ('neunhundertneunundneunzigtausend...'), so it falls back to
characters: slower, but a number never seen still translates, with no <unk> in its target.
One vocabulary, built from the training pairs, serves both languages (the model embeds each side
separately).

Numbers are drawn uniformly from 0 .. 999,999. The test split is held out by number AND by string:
no training or validation pair shares a source or target string with a test pair, and no training
pair shares one with a validation pair, so both measure translation of numbers never seen.
"""

import collections
import dataclasses
import functools
import re

import numpy as np

from dl_jax.data.dataset import Dataset, make_dataset
from dl_jax.data.split import Split

LANGUAGES = ("fr", "de", "es")
SOURCE_LANGUAGE = "en"
NUM_NUMBERS = 1_000_000  # numbers 0 .. 999,999
PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
WORD = re.compile(r"\w+\W*|\W+")  # a word and the separators after it, or leading separators


def number_words(numbers: np.ndarray, lang: str) -> list[str]:
  """The words for each number in language `lang` ('en', 'fr', 'de' or 'es')."""
  from num2words import num2words

  return [num2words(int(n), lang=lang) for n in numbers]


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Token strings <-> ids; ids 0..3 are <pad>, <bos>, <eos>, <unk>, then characters, then words."""

  symbols: tuple[str, ...]

  @classmethod
  def from_texts(cls, texts, min_word_count: int = 10) -> "Vocabulary":
    """Every character of `texts`, and every word that occurs at least `min_word_count` times."""
    counts = collections.Counter(w for text in texts for w in WORD.findall(text))
    chars = sorted(set("".join(texts)))
    words = sorted(w for w, n in counts.items() if n >= min_word_count and len(w) > 1)
    return cls(SPECIALS + tuple(chars) + tuple(words))

  @property
  def size(self) -> int:
    return len(self.symbols)

  @functools.cached_property
  def ids(self) -> dict[str, int]:
    return {s: i for i, s in enumerate(self.symbols)}

  def tokenize(self, text: str) -> list[int]:
    """Ids of the words of `text` that are in the vocabulary, and of the characters of the rest."""
    ids = []
    for word in WORD.findall(text):
      ids.extend([self.ids[word]] if word in self.ids else [self.ids.get(c, UNK) for c in word])
    return ids

  def encode(self, texts: list[str], max_len: int) -> np.ndarray:
    """int32 [N, max_len]: <bos> tokens <eos> then <pad>; unknown characters become <unk>."""
    out = np.full((len(texts), max_len), PAD, np.int32)
    for row, text in enumerate(texts):
      ids = [BOS, *self.tokenize(text), EOS]
      if len(ids) > max_len:
        raise ValueError(f"{text!r} is {len(ids)} tokens with <bos> and <eos>; it needs "
                         f"max_len >= {len(ids)}, got {max_len}.")
      out[row, :len(ids)] = ids
    return out

  def decode(self, tokens: np.ndarray) -> list[str]:
    """Strings from rows of ids: a leading <bos> is skipped, reading stops at <eos> or <pad>."""
    texts = []
    for row in np.asarray(tokens):
      row = row[1:] if len(row) and row[0] == BOS else row
      pieces = []
      for token in row:
        if token in (EOS, PAD):
          break
        pieces.append(self.symbols[token])
      texts.append("".join(pieces))
    return texts


@dataclasses.dataclass(frozen=True, eq=False)
class Translation:
  """The Dataset (x: source tokens, y: target tokens) with its vocabulary, numbers and strings."""

  dataset: Dataset
  vocab: Vocabulary
  numbers: dict[str, np.ndarray]
  texts: dict[str, tuple[list[str], list[str]]]  # split -> (sources, targets)
  dropped: dict[str, int]  # split -> pairs removed because a string matched a held-out one


def held_out_numbers(num_train: int, num_val: int, num_test: int, seed: int):
  """Disjoint, seeded (train, val, test) numbers drawn uniformly without replacement."""
  total = num_train + num_val + num_test
  if total > NUM_NUMBERS:
    raise ValueError(f"asked for {total} distinct numbers; there are only {NUM_NUMBERS}.")
  drawn = np.random.default_rng(seed).choice(NUM_NUMBERS, total, replace=False)
  return drawn[:num_train], drawn[num_train:num_train + num_val], drawn[num_train + num_val:]


def translation_data(lang: str = "fr", num_train: int = 20_000, num_val: int = 1_000,
                     num_test: int = 2_000, seed: int = 0,
                     min_word_count: int = 10) -> Translation:
  """English -> `lang` number words as token Splits; test holds numbers never seen in training.

  Words seen fewer than `min_word_count` times in the training pairs are spelled in characters.
  """
  if lang not in LANGUAGES:
    raise ValueError(f"unknown language {lang!r}; choose one of {list(LANGUAGES)}")
  numbers = dict(zip(("train", "val", "test"),
                     held_out_numbers(num_train, num_val, num_test, seed)))
  texts = {name: (number_words(n, SOURCE_LANGUAGE), number_words(n, lang))
           for name, n in numbers.items()}
  dropped = {}
  for name, held in (("val", ("test",)), ("train", ("val", "test"))):
    unseen = {s for h in held for side in texts[h] for s in side}
    keep = [i for i, pair in enumerate(zip(*texts[name])) if not set(pair) & unseen]
    dropped[name] = len(numbers[name]) - len(keep)
    numbers[name] = numbers[name][keep]
    texts[name] = tuple([side[i] for i in keep] for side in texts[name])
  vocab = Vocabulary.from_texts(texts["train"][0] + texts["train"][1], min_word_count)
  splits = _encode_splits(texts, vocab)
  dataset = make_dataset(f"numbers_en_{lang}", f"num2words en -> {lang}, seed {seed}",
                         splits["train"], splits["test"], num_classes=vocab.size)
  dataset = dataclasses.replace(dataset, val=splits["val"] if len(splits["val"]) else None)
  return Translation(dataset, vocab, numbers, texts, dropped)


def _encode_splits(texts: dict, vocab: Vocabulary) -> dict[str, Split]:
  """One source length and one target length for all splits, so every batch has one shape."""
  source_len, target_len = (
      max(len(vocab.tokenize(t)) for pair in texts.values() for t in pair[side]) + 2
      for side in (0, 1))
  return {name: Split(vocab.encode(sources, source_len), vocab.encode(targets, target_len))
          for name, (sources, targets) in texts.items()}
