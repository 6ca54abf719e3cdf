"""Translate English number words into French, German or Spanish with an attention seq2seq model.

    python -m experiments.translate                        # English -> French, the default below
    python -m experiments.translate --language=de --attention=luong_general --cell=lstm
    python -m experiments.translate --smoke --language=es

The default: a bidirectional GRU encoder 2x128 and a GRU decoder 256 with Bahdanau attention
(0.98M parameters), trained with teacher forcing on 20,000 numbers (Adam 3e-3, 200 warmup steps
then cosine decay, clipping at 1; batch 128, 1000 steps). It is judged by exact match on 2,000
held-out numbers whose strings never occur in training, decoded greedily and by beam search.
Tokens are words with a character fallback; German compounds are spelled in characters, so German
targets are much longer and each step costs more.
Its figures: docs/experiments/translate.md (generated from the last default tour).
"""

import dataclasses
import os
from typing import Iterator

import jax
import numpy as np
import optax

from dl_jax import optim
from dl_jax.data.translation import LANGUAGES, Translation, translation_data
from dl_jax.lab.experiment import Experiment
from dl_jax.lab.records import Record, Recorder
from dl_jax.models.seq2seq import ATTENTIONS, CELLS, Seq2Seq
from dl_jax.settings import at_least, positive_finite, setting
from dl_jax.train import (FitConfig, TrainState, create_train_state, fit, make_eval_step,
                          make_train_step)
from dl_jax.train.sequence import sequence_loss, sequence_metrics
from dl_jax.train.writers import is_writer, write_config


@dataclasses.dataclass(frozen=True)
class TranslateConfig:
  language: str = setting("fr", "Target language of the English number words.",
                          choices=list(LANGUAGES))
  num_train: int = setting(20_000, "Training numbers (drawn without replacement).",
                           check=at_least(1))
  num_val: int = setting(1_000, "Validation numbers; 0: no validation split.", check=at_least(0))
  num_test: int = setting(2_000, "Held-out test numbers: never in train or val, nor any of their "
                          "strings.", check=at_least(1))
  min_word_count: int = setting(10, "Training occurrences a word needs to be one token; rarer "
                                "words are spelled in characters.")
  embed_dim: int = setting(64, "Length of the token embeddings.")
  encoder_size: int = setting(128, "Units of the bidirectional encoder, per direction.")
  decoder_size: int = setting(256, "Units of the decoder cell.")
  cell: str = setting("gru", "Recurrent cell of encoder and decoder.", choices=sorted(CELLS))
  attention: str = setting("bahdanau", "Attention of the decoder over the encoder states.",
                           choices=list(ATTENTIONS))
  dropout: float = setting(0.0, "Dropout rate in the model.")
  learning_rate: float = setting(3e-3, "Peak learning rate of Adam (warm-up, then cosine decay).")
  warmup_steps: int = setting(200, "Linear warm-up steps.")
  clip_norm: float = setting(1.0, "Gradients are clipped to this global norm.",
                             check=positive_finite)
  batch_size: int = setting(128, "Training pairs per step.")
  steps: int = setting(1000, "Training steps.")
  eval_every: int = setting(250, "Steps between evaluations.")
  eval_batch_size: int = setting(1000, "Examples per evaluation and decoding batch.")
  log_every: int = setting(100, "Steps between metrics lines.")
  checkpoint_every: int = setting(1000, "Steps between checkpoints.")
  patience: int = setting(0, "Evaluations without a better validation accuracy before stopping; "
                          "0: off.")
  num_samples: int = setting(20, "Sample translations to print and save, mistakes first.",
                             check=at_least(0))
  beam_size: int = setting(4, "Beam width of a second decoding of the held-out numbers; 1: greedy "
                           "only.")
  length_penalty: float = setting(0.0, "Exponent of beam search's length normalization: it picks "
                                  "by log-prob / ((5 + len) / 6)^this.")
  seed: int = setting(0, "Seed of the number draw, initialization, data order and dropout.")


def smoke_config() -> TranslateConfig:
  """Seconds on a laptop CPU: what the tests run end to end."""
  return TranslateConfig(num_train=400, num_val=50, num_test=50, min_word_count=3, embed_dim=16,
                         encoder_size=16, decoder_size=32, batch_size=32, steps=30, warmup_steps=5,
                         eval_every=15, eval_batch_size=50, log_every=10, checkpoint_every=30,
                         num_samples=6)


def make_model(config: TranslateConfig, vocab_size: int) -> Seq2Seq:
  return Seq2Seq(vocab_size, embed_dim=config.embed_dim, encoder_size=config.encoder_size,
                 decoder_size=config.decoder_size, cell=config.cell, attention=config.attention,
                 dropout_rate=config.dropout)


def init_state(model: Seq2Seq, config: TranslateConfig, example: dict) -> TrainState:
  """Parameters from the run's 'params' stream; Adam with warmup, cosine decay and clipping."""
  schedule = optim.make_schedule("warmup_cosine", config.learning_rate, config.steps,
                                 config.warmup_steps)
  tx = optax.chain(optax.clip_by_global_norm(config.clip_norm),
                   optim.make_optimizer("adam", schedule))
  return create_train_state(model, tx, (example["x"], example["y"][:, :-1]), config.seed)


def run(config: TranslateConfig, workdir: str) -> dict:
  """Trains and evaluates; writes config.json, metrics.jsonl and samples.txt; returns results."""
  data = translation_data(config.language, config.num_train, config.num_val, config.num_test,
                          config.seed, config.min_word_count)
  model = make_model(config, data.vocab.size)
  state = init_state(model, config, data.dataset.train.gather(np.arange(1)))
  write_config(workdir, {"config": dataclasses.asdict(config), "dataset": data.dataset.metadata,
                         "vocab_size": data.vocab.size, "dropped_pairs": data.dropped})
  fit_config = FitConfig(num_steps=config.steps, batch_size=config.batch_size, seed=config.seed,
                         eval_every=config.eval_every, log_every=config.log_every,
                         checkpoint_every=config.checkpoint_every, patience=config.patience,
                         eval_batch_size=config.eval_batch_size, train_eval_examples=2_000)
  train_step = make_train_step(sequence_loss(model))
  eval_step = make_eval_step(sequence_metrics(model))
  state, results = fit(state, train_step, eval_step, data.dataset, fit_config, workdir)
  predictions = translate(model, state.params, data, config.eval_batch_size)
  targets = data.texts["test"][1]
  string_match = lambda texts: float(np.mean([p == t for p, t in zip(texts, targets)]))
  results["config"] = dataclasses.asdict(config)
  results["held_out"] = {
      "exact_match": results["test"]["exact_match"],
      "token_accuracy": results["test"]["token_accuracy"],
      # the same strings spelled with other tokens (characters for a word) count as right here
      "string_exact_match": string_match(predictions),
      "num_numbers": len(targets)}
  if config.beam_size > 1:
    beamed = translate(model, state.params, data, config.eval_batch_size, config.beam_size,
                       config.length_penalty)
    results["held_out"]["beam"] = {"beam_size": config.beam_size,
                                   "length_penalty": config.length_penalty,
                                   "string_exact_match": string_match(beamed)}
  results["samples"] = sample_translations(data, predictions, config.num_samples)
  _write_samples(os.path.join(workdir, "samples.txt"), results["samples"])
  return results


def records(results: dict, variant: str) -> Iterator[Record]:
  """Every figure of this experiment as a long-form record (the tour's claims query these)."""
  rec, seed, held_out = Recorder("translate", variant), results["config"]["seed"], results["held_out"]
  dataset = "number words"
  for split in ("train", "val", "test"):
    if split in results:
      yield rec.single(results[split]["exact_match"], dataset=dataset, arm="seq2seq", split=split,
                       metric="exact_match", seed=seed)
  yield rec.single(held_out["num_numbers"], dataset=dataset, arm="seq2seq", split="held_out",
                   metric="num_numbers", seed=seed)
  decoders = {"greedy": held_out} | ({"beam": held_out["beam"]} if "beam" in held_out else {})
  for decoder, figures in decoders.items():
    yield rec.single(figures["string_exact_match"], dataset=dataset, arm=f"seq2seq, {decoder}",
                     split="held_out", metric="exact_match", seed=seed)


def translate(model: Seq2Seq, params, data: Translation, batch_size: int, beam_size: int = 1,
              length_penalty: float = 0.0) -> list[str]:
  """Translations of the held-out (test) sources, as strings: greedy, or beam search."""
  sources, max_len = data.dataset.test.x, data.dataset.test.y.shape[1] - 1
  if beam_size == 1:
    decode = jax.jit(lambda p, x: model.apply({"params": p}, x, max_len, method="greedy_decode"))
  else:
    decode = jax.jit(lambda p, x: model.apply({"params": p}, x, max_len, beam_size,
                                              length_penalty, method="beam_decode")[0])
  tokens = [np.asarray(decode(params, sources[i:i + batch_size]))
            for i in range(0, len(sources), batch_size)]
  return data.vocab.decode(np.concatenate(tokens))


def sample_translations(data: Translation, predictions: list[str], count: int) -> list[dict]:
  """`count` held-out translations, mistakes first: half of them, or more if few are right."""
  sources, targets = data.texts["test"]
  rows = [{"number": int(n), "english": s, "target": t, "prediction": p, "correct": p == t}
          for n, s, t, p in zip(data.numbers["test"], sources, targets, predictions)]
  right = [r for r in rows if r["correct"]]
  wrong = [r for r in rows if not r["correct"]][:max(count // 2, count - len(right))]
  return wrong + right[:count - len(wrong)]


def _write_samples(path: str, samples: list[dict]) -> None:
  lines = [f"{'ok ' if r['correct'] else 'BAD'} {r['number']:>7}  {r['english']}\n"
           f"{'':12}target:     {r['target']}\n{'':12}prediction: {r['prediction']}"
           for r in samples]
  if is_writer():
    with open(path, "w") as f:
      f.write("\n".join(lines) + "\n")


# ---- command line ------------------------------------------------------------------------------


def summary(results: dict) -> str:
  """What the command prints: figures per split, the held-out strings, the samples."""
  lines = [f"{name:>5}: exact match {r['exact_match']:.4f}  token accuracy "
           f"{r['token_accuracy']:.4f}  loss {r['loss']:.4f}"
           for name, r in ((n, results[n]) for n in ("train", "val", "test") if n in results)]
  lines.append(f"  gap: train-test exact match {results['gap']['train_test_accuracy']:+.4f}")
  if "beam" in results["held_out"]:
    beam = results["held_out"]["beam"]
    lines.append(f"held-out strings right: greedy {results['held_out']['string_exact_match']:.4f}"
                 f", beam search (size {beam['beam_size']}) {beam['string_exact_match']:.4f}")
  for r in results["samples"]:
    lines.append(f"{'ok ' if r['correct'] else 'BAD'} {r['english']} -> {r['prediction']}"
                 + ("" if r["correct"] else f"   (want {r['target']})"))
  return "\n".join(lines)


# The tour's budget: the default config with these fields changed (every compared arm >= 5 seeds).
TOUR = dict(num_train=10_000, encoder_size=64, decoder_size=128, steps=400, eval_every=200,
            checkpoint_every=400)

EXPERIMENT = Experiment(
    name="translate", config=TranslateConfig, run=run, records=records, summary=summary,
    variants={"smoke": smoke_config, "tour": TOUR})


if __name__ == "__main__":
  EXPERIMENT.command()
