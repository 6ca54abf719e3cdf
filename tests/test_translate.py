import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.data import translation
from dl_jax.data.translation import BOS, EOS, PAD, UNK, number_words, translation_data
from dl_jax.models.seq2seq import Seq2Seq, output_lengths
from dl_jax.train import TrainState, make_train_step
from dl_jax.train.sequence import masked_token_loss, sequence_loss, sequence_metrics
from experiments import translate as translate_experiment

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def french():
  return translation_data("fr", num_train=1500, num_val=100, num_test=200, seed=3)


def _strings(data, split):
  sources, targets = data.texts[split]
  return set(sources) | set(targets)


def test_pairs_are_num2words_in_each_language():
  assert number_words([97], "en") == ["ninety-seven"]
  assert number_words([97], "fr") == ["quatre-vingt-dix-sept"]
  assert number_words([97], "de") == ["siebenundneunzig"]
  assert number_words([97], "es") == ["noventa y siete"]


def test_splits_hold_the_words_of_their_numbers(french):
  sources, targets = french.texts["test"]
  assert sources == number_words(french.numbers["test"], "en")
  assert targets == number_words(french.numbers["test"], "fr")
  assert french.vocab.decode(french.dataset.test.y) == targets
  assert french.vocab.decode(french.dataset.test.x) == sources
  assert french.dataset.metadata["num_train"] == 1500 and french.dropped == {"train": 0, "val": 0}


def test_held_out_numbers_and_strings_never_appear_in_training(french):
  train, val, test = (set(french.numbers[s].tolist()) for s in ("train", "val", "test"))
  assert len(test) == 200 and not test & train and not test & val and not val & train
  assert all(0 <= n < translation.NUM_NUMBERS for n in train | val | test)
  assert not _strings(french, "test") & (_strings(french, "train") | _strings(french, "val"))
  assert not _strings(french, "val") & _strings(french, "train")


def test_pairs_whose_strings_match_held_out_ones_are_dropped(monkeypatch):
  def colliding_words(numbers, lang):  # numbers with equal last two digits share their words
    return [f"{lang}{n % 100}" for n in numbers]

  monkeypatch.setattr(translation, "number_words", colliding_words)
  data = translation_data("de", num_train=300, num_val=20, num_test=20, seed=0)
  assert data.dropped["train"] > 0 and data.dropped["val"] > 0
  assert len(data.dataset.train) == 300 - data.dropped["train"]
  assert not _strings(data, "test") & (_strings(data, "train") | _strings(data, "val"))
  assert not _strings(data, "val") & _strings(data, "train")


def test_the_split_is_seeded():
  a, b, c = (translation.held_out_numbers(50, 10, 10, seed) for seed in (0, 0, 1))
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not np.array_equal(a[2], c[2])


def test_vocabulary_round_trip_and_layout(french):
  german = translation_data("de", num_train=300, num_val=10, num_test=10, seed=0)
  for data in (french, german):
    texts = data.texts["train"][0] + data.texts["train"][1]
    ids = data.vocab.encode(texts, 80)
    assert ids.dtype == np.int32 and ids.shape == (len(texts), 80)
    assert data.vocab.decode(ids) == texts
  row = french.vocab.encode(["quatre-vingt-dix-sept"], 8)[0]
  assert [french.vocab.symbols[t] for t in row[1:5]] == ["quatre-", "vingt-", "dix-", "sept"]
  assert list(row[[0, 5, 6, 7]]) == [BOS, EOS, PAD, PAD]
  assert german.vocab.tokenize("zwei") == [german.vocab.ids[c] for c in "zwei"]  # characters
  assert french.vocab.tokenize("!") == [UNK]
  with pytest.raises(ValueError, match="needs max_len >= 6, got 5"):
    french.vocab.encode(["quatre-vingt-dix-sept"], 5)


def test_loss_ignores_padding():
  logits = jax.random.normal(KEY, (2, 5, 7))
  targets = jnp.array([[4, 5, EOS, PAD, PAD], [6, EOS, PAD, PAD, PAD]])
  changed = logits.at[0, 3:].set(100.0).at[1, 2:].set(-50.0)
  np.testing.assert_array_equal(masked_token_loss(logits, targets, PAD),
                                masked_token_loss(changed, targets, PAD))
  assert float(masked_token_loss(logits, targets.at[0, 3].set(4), PAD)[0]) != pytest.approx(
      float(masked_token_loss(logits, targets, PAD)[0]))
  assert np.isfinite(masked_token_loss(logits, jnp.zeros_like(targets), PAD)).all()


@pytest.mark.parametrize("attention, cell", [("bahdanau", "gru"), ("luong_dot", "lstm"),
                                             ("luong_general", "gru")])
def test_source_padding_is_masked(attention, cell):
  # the same sources with 4 more <pad> columns must give the same logits
  model = Seq2Seq(12, embed_dim=8, encoder_size=8, decoder_size=16, cell=cell, attention=attention)
  src = jnp.array([[BOS, 5, 6, 7, EOS], [BOS, 8, EOS, PAD, PAD]])
  tgt_in = jnp.array([[BOS, 9, 10], [BOS, 11, EOS]])
  longer = jnp.pad(src, ((0, 0), (0, 4)))
  variables = model.init(KEY, src, tgt_in)
  logits = model.apply(variables, src, tgt_in)
  assert logits.shape == (2, 3, 12)
  np.testing.assert_allclose(model.apply(variables, longer, tgt_in), logits, atol=1e-5)


def test_dot_attention_needs_matching_sizes():
  with pytest.raises(ValueError, match=r"decoder_size \(32\) must equal 2 \* encoder_size \(16\)"):
    Seq2Seq(10, encoder_size=8, decoder_size=32, attention="luong_dot").init(
        KEY, jnp.ones((1, 3), jnp.int32), jnp.ones((1, 2), jnp.int32))


def test_a_batch_of_class_labels_gets_a_sentence():
  loss_fn = sequence_loss(Seq2Seq(10))  # the check runs before the model: no parameters needed
  batch = {"x": np.zeros((4, 5), np.int32), "y": np.zeros(4, np.int32)}
  with pytest.raises(ValueError, match=r"targets \(4,\); expected token ids of shapes"):
    loss_fn(None, {}, batch, {})


def _copy_task(n, seed):
  """Sources of 1 to 4 random tokens (ids 4..9); the target repeats them."""
  rng = np.random.default_rng(seed)
  x = np.full((n, 6), PAD, np.int32)
  for row, length in enumerate(rng.integers(1, 5, n)):
    x[row, :length + 2] = [BOS, *rng.integers(4, 10, length), EOS]
  return {"x": x, "y": x.copy()}


def test_greedy_decoding_of_a_trained_toy_model():
  model = Seq2Seq(10, embed_dim=16, encoder_size=16, decoder_size=32)
  train, test = _copy_task(128, 0), _copy_task(64, 1)
  params = model.init(KEY, train["x"], train["y"][:, :-1])["params"]
  decode = jax.jit(lambda p, x: model.apply({"params": p}, x, 5, method="greedy_decode"))
  # an untrained model's greedy output still stops: nothing but <pad> after the first <eos>
  for row in np.asarray(decode(params, test["x"])):
    stop = np.flatnonzero(row == EOS)
    assert stop.size == 0 or np.all(row[stop[0] + 1:] == PAD)
  state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(2e-2),
                            key=jax.random.PRNGKey(0), model_state={})  # donated by the step
  train_step = make_train_step(sequence_loss(model))
  for _ in range(200):
    state, _ = train_step(state, train)
  decoded = np.asarray(decode(state.params, test["x"]))
  right = np.all(decoded == test["y"][:, 1:], axis=1)  # tokens, <eos>, then only <pad>
  assert right.mean() >= 0.95
  scores = jax.jit(sequence_metrics(model))(state.params, {}, test)
  np.testing.assert_array_equal(scores["exact_match"], right)
  np.testing.assert_array_equal(scores["accuracy"], right)


def _sequence_log_prob(model, params, src, tokens):
  """Teacher-forced log-probability of each decoded row, up to and including its first <eos>."""
  tgt_in = np.concatenate([np.full((len(src), 1), BOS, np.int32), tokens[:, :-1]], axis=1)
  logp = jax.nn.log_softmax(model.apply({"params": params}, src, tgt_in))
  per_token = np.take_along_axis(np.asarray(logp), tokens[..., None], -1)[..., 0]
  keep = np.arange(tokens.shape[1]) < np.asarray(output_lengths(tokens, EOS))[:, None]
  return np.sum(per_token * keep, axis=1)


def test_beam_search_finds_likelier_outputs_than_greedy():
  model = Seq2Seq(10, embed_dim=8, encoder_size=8, decoder_size=16)
  src = _copy_task(32, 2)["x"]
  params = model.init(KEY, src, src[:, :-1])["params"]
  beam = jax.jit(lambda p, x, k: model.apply({"params": p}, x, 6, k, method="beam_decode"),
                 static_argnums=2)
  greedy = np.asarray(model.apply({"params": params}, src, 6, method="greedy_decode"))
  np.testing.assert_array_equal(beam(params, src, 1)[0], greedy)  # one beam is greedy search
  tokens, scores = (np.asarray(a) for a in beam(params, src, 4))
  for row in tokens:  # same output format: nothing but <pad> after the first <eos>
    stop = np.flatnonzero(row == EOS)
    assert stop.size == 0 or np.all(row[stop[0] + 1:] == PAD)
  # the score is the sequence's own log-probability, and never below greedy search's
  np.testing.assert_allclose(scores, _sequence_log_prob(model, params, src, tokens), atol=1e-4)
  greedy_scores = _sequence_log_prob(model, params, src, greedy)
  assert np.all(scores >= greedy_scores - 1e-4) and np.any(scores > greedy_scores + 1e-3)
  with pytest.raises(ValueError, match="beam_size must be at least 1"):
    beam(params, src, 0)


@pytest.mark.parametrize("language", ["fr", "de"])
def test_smoke_config_runs_end_to_end(language, tmp_path):
  config = dataclasses.replace(translate_experiment.smoke_config(), language=language)
  results = translate_experiment.EXPERIMENT.execute(config, str(tmp_path))
  saved = json.load(open(tmp_path / "results.json"))
  assert saved["held_out"] == results["held_out"]
  assert results["held_out"]["exact_match"] == results["test"]["exact_match"]
  assert results["held_out"]["string_exact_match"] >= results["held_out"]["exact_match"]
  assert results["held_out"]["num_numbers"] == 50 and results["step"] == 30
  assert 0.0 <= saved["held_out"]["beam"]["string_exact_match"] <= 1.0
  for split in ("train", "val", "test"):
    assert 0.0 <= results[split]["exact_match"] <= results[split]["token_accuracy"] <= 1.0
  samples = results["samples"]
  assert len(samples) == config.num_samples
  assert all(s["correct"] == (s["prediction"] == s["target"]) for s in samples)
  flags = [s["correct"] for s in samples]
  assert flags == sorted(flags) and flags.count(False) >= len(flags) // 2  # mistakes first
  assert samples[0]["target"] == number_words([samples[0]["number"]], language)[0]
  assert "prediction:" in (tmp_path / "samples.txt").read_text()
  assert json.load(open(tmp_path / "config.json"))["config"]["language"] == language
