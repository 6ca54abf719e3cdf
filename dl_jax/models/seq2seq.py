"""A sequence-to-sequence translator: a bidirectional RNN encoder and an attention RNN decoder.

Training feeds the true previous token (teacher forcing); `greedy_decode` feeds back its own argmax;
`beam_decode` keeps the `beam_size` most probable prefixes. All run the same decoder step under
`nn.scan`, so they cannot drift apart.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

CELLS = {"gru": nn.GRUCell, "lstm": nn.OptimizedLSTMCell}
ATTENTIONS = ("bahdanau", "luong_dot", "luong_general")
MASKED = -1e9  # a finite -inf: a fully padded source still gives finite (uniform) weights


def _hidden(carry):
  """The hidden state h of a GRU carry (h) or an LSTM carry (c, h)."""
  return carry[1] if isinstance(carry, tuple) else carry


def _carry_from_hidden(cell: str, hidden):
  return (jnp.zeros_like(hidden), hidden) if cell == "lstm" else hidden


def attend(scores: jax.Array, mask: jax.Array, memory: jax.Array) -> jax.Array:
  """Context [B, D]: the softmax of `scores` [B, Ts] over unmasked positions, applied to memory."""
  weights = jax.nn.softmax(jnp.where(mask, scores, MASKED), axis=-1)
  return jnp.einsum("bs,bsd->bd", weights, memory)


class DecoderStep(nn.Module):
  """One decoder step: (carry, previous token) -> (carry, logits [B, V]).

  Bahdanau: additive scores v.tanh(W q + U h_j) with q the previous hidden state; the context
  enters the RNN with the token. Luong: the RNN steps first with the token and the previous
  attentional state (input feeding), then scores its new hidden state by a dot product with the
  encoder states (dot) or with their projection (general). Both emit tanh(W [h; context]).
  """

  vocab_size: int
  embed_dim: int
  size: int
  cell: str
  attention: str
  dropout_rate: float

  @nn.compact
  def __call__(self, carry, token, memory, keys, mask, train: bool):
    rnn_carry, attentional = carry
    emb = nn.Embed(self.vocab_size, self.embed_dim, name="embed")(token)
    emb = nn.Dropout(self.dropout_rate, deterministic=not train)(emb)
    if self.attention == "bahdanau":
      query = nn.Dense(keys.shape[-1], use_bias=False, name="query")(_hidden(rnn_carry))
      scores = nn.Dense(1, use_bias=False, name="score")(jnp.tanh(keys + query[:, None]))[..., 0]
      context = attend(scores, mask, memory)
      rnn_carry, hidden = CELLS[self.cell](self.size, name="rnn")(
          rnn_carry, jnp.concatenate([emb, context], -1))
    else:
      rnn_carry, hidden = CELLS[self.cell](self.size, name="rnn")(
          rnn_carry, jnp.concatenate([emb, attentional], -1))
      context = attend(jnp.einsum("bd,bsd->bs", hidden, keys), mask, memory)
    attentional = jnp.tanh(nn.Dense(self.size, name="combine")(
        jnp.concatenate([hidden, context], -1)))
    attentional = nn.Dropout(self.dropout_rate, deterministic=not train)(attentional)
    return (rnn_carry, attentional), nn.Dense(self.vocab_size, name="logits")(attentional)


def _teacher_forced(step: DecoderStep, carry, token, memory, keys, mask, train):
  return step(carry, token, memory, keys, mask, train)


def _greedy(step: DecoderStep, state, memory, keys, mask, pad_id, eos_id):
  """Feeds back the argmax; once <eos> is emitted every later token is <pad>."""
  carry, token, done = state
  carry, logits = step(carry, token, memory, keys, mask, False)
  token = jnp.where(done, pad_id, jnp.argmax(logits, -1).astype(token.dtype))
  return (carry, token, done | (token == eos_id)), token


def _beam(step: DecoderStep, state, memory, keys, mask, pad_id, eos_id, beam_size):
  """Extends every beam [B*K] by every token, keeps each source's K best total log-probabilities.

  A finished beam (it emitted <eos>) may only continue with <pad>, at no cost, so its score stays
  the log-probability of its sequence up to and including <eos>.
  """
  carry, token, done, scores, history, t = state
  carry, logits = step(carry, token, memory, keys, mask, False)
  vocab = logits.shape[-1]
  logp = jax.nn.log_softmax(logits)
  pad_only = jnp.where(jnp.arange(vocab) == pad_id, 0.0, MASKED)
  logp = jnp.where(done[:, None], pad_only, logp)
  total = (scores[:, None] + logp).reshape(-1, beam_size * vocab)  # [B, K*V]
  scores, choice = jax.lax.top_k(total, beam_size)  # [B, K]
  parent = (jnp.arange(total.shape[0])[:, None] * beam_size + choice // vocab).reshape(-1)
  token = (choice % vocab).reshape(-1).astype(token.dtype)
  carry = jax.tree_util.tree_map(lambda a: a[parent], carry)
  history = history[parent].at[:, t].set(token)
  done = done[parent] | (token == eos_id)
  return (carry, token, done, scores.reshape(-1), history, t + 1), None


def output_lengths(tokens: jax.Array, eos_id: int) -> jax.Array:
  """Tokens up to and including the first <eos>; the whole row where there is none."""
  is_eos = tokens == eos_id
  return jnp.where(jnp.any(is_eos, -1), jnp.argmax(is_eos, -1) + 1, tokens.shape[-1])


def _length_penalized(scores: jax.Array, tokens: jax.Array, eos_id: int, alpha: float):
  """Scores / ((5 + length) / 6)^alpha (Wu et al. 2016); alpha 0 leaves log-probabilities as they
  are, which favours short outputs."""
  return scores / ((5.0 + output_lengths(tokens, eos_id)) / 6.0) ** alpha


class Seq2Seq(nn.Module):
  """Source tokens [B, Ts] -> target logits [B, Tt, V] (teacher forcing) or tokens (greedy).

  Token ids `pad_id` in the source are masked out of attention and of the encoder's summary.
  `luong_dot` needs decoder_size == 2 * encoder_size (the encoder is bidirectional).
  """

  vocab_size: int
  embed_dim: int = 64
  encoder_size: int = 128
  decoder_size: int = 256
  cell: str = "gru"
  attention: str = "bahdanau"
  dropout_rate: float = 0.0
  pad_id: int = 0
  bos_id: int = 1
  eos_id: int = 2

  def setup(self):
    if self.cell not in CELLS:
      raise ValueError(f"unknown cell {self.cell!r}; choose one of {sorted(CELLS)}")
    if self.attention not in ATTENTIONS:
      raise ValueError(f"unknown attention {self.attention!r}; choose one of {list(ATTENTIONS)}")
    if self.attention == "luong_dot" and self.decoder_size != 2 * self.encoder_size:
      raise ValueError(f"luong_dot scores decoder states against encoder states, so "
                       f"decoder_size ({self.decoder_size}) must equal 2 * encoder_size "
                       f"({2 * self.encoder_size}); use luong_general to project instead.")
    cell = CELLS[self.cell]
    self.source_embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.encoder = nn.Bidirectional(nn.RNN(cell(self.encoder_size)),
                                    nn.RNN(cell(self.encoder_size)))
    self.bridge = nn.Dense(self.decoder_size)
    if self.attention != "luong_dot":
      self.keys = nn.Dense(self.decoder_size, use_bias=False)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.step = DecoderStep(self.vocab_size, self.embed_dim, self.decoder_size, self.cell,
                            self.attention, self.dropout_rate)

  def encode(self, src: jax.Array, train: bool = False):
    """Encoder states [B, Ts, 2E], attention keys, the source mask and the decoder's first carry."""
    mask = src != self.pad_id
    emb = self.dropout(self.source_embed(src), deterministic=not train)
    memory = self.encoder(emb, seq_lengths=jnp.sum(mask, -1))
    keys = self.keys(memory) if self.attention != "luong_dot" else memory
    counts = jnp.maximum(jnp.sum(mask, -1, keepdims=True), 1)
    summary = jnp.sum(memory * mask[..., None], 1) / counts
    hidden = jnp.tanh(self.bridge(summary))
    carry = (_carry_from_hidden(self.cell, hidden), jnp.zeros_like(hidden))
    return memory, keys, mask, carry

  def __call__(self, src: jax.Array, tgt_in: jax.Array, train: bool = False) -> jax.Array:
    """Logits [B, Tt, V] for each next token given the true previous ones `tgt_in` [B, Tt]."""
    memory, keys, mask, carry = self.encode(src, train)
    scan = nn.scan(functools.partial(_teacher_forced, train=train), variable_broadcast="params",
                   split_rngs={"params": False, "dropout": True},
                   in_axes=(1, nn.broadcast, nn.broadcast, nn.broadcast), out_axes=1)
    _, logits = scan(self.step, carry, tgt_in, memory, keys, mask)
    return logits

  def greedy_decode(self, src: jax.Array, max_len: int) -> jax.Array:
    """Tokens [B, max_len]: the argmax at each step, then <eos>, then <pad> to the end."""
    memory, keys, mask, carry = self.encode(src)
    first = jnp.full(src.shape[:1], self.bos_id, jnp.int32)
    state = (carry, first, jnp.zeros(src.shape[:1], bool))
    greedy = functools.partial(_greedy, pad_id=self.pad_id, eos_id=self.eos_id)
    scan = nn.scan(greedy, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=(nn.broadcast,) * 3, length=max_len, out_axes=1)
    _, tokens = scan(self.step, state, memory, keys, mask)
    return tokens

  def beam_decode(self, src: jax.Array, max_len: int, beam_size: int = 4,
                  length_penalty: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """(tokens [B, max_len], log-probabilities [B]) of the best of `beam_size` beams.

    Beams are compared by total log-probability while they grow; the final pick divides by the
    length penalty. beam_size 1 is greedy decoding. Output format as `greedy_decode`.
    """
    if beam_size < 1:
      raise ValueError(f"beam_size must be at least 1, got {beam_size}.")
    batch, k = src.shape[0], beam_size
    memory, keys, mask, carry = jax.tree_util.tree_map(
        lambda a: jnp.repeat(a, k, axis=0), self.encode(src))
    # only the first beam of each source is alive at the start, so the K beams begin distinct
    scores = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, MASKED), batch)
    state = (carry, jnp.full((batch * k,), self.bos_id, jnp.int32),
             jnp.zeros((batch * k,), bool), scores, jnp.zeros((batch * k, max_len), jnp.int32),
             jnp.zeros((), jnp.int32))
    beam = functools.partial(_beam, pad_id=self.pad_id, eos_id=self.eos_id, beam_size=k)
    scan = nn.scan(beam, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=(nn.broadcast,) * 3, length=max_len)
    (_, _, _, scores, tokens, _), _ = scan(self.step, state, memory, keys, mask)
    tokens, scores = tokens.reshape(batch, k, max_len), scores.reshape(batch, k)
    best = jnp.argmax(_length_penalized(scores, tokens, self.eos_id, length_penalty), axis=-1)
    pick = lambda a: jnp.take_along_axis(a, best.reshape((batch, 1) + (1,) * (a.ndim - 2)), 1)[:, 0]
    return pick(tokens), pick(scores)
