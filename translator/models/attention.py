"""Attention over the encoder outputs ("memory") for one decoder query.

- `BahdanauAttention`: additive scores, Bahdanau et al. (2015), "Neural Machine
  Translation by Jointly Learning to Align and Translate":
  score(q, m) = v^T tanh(W_q q + W_m m).
- `LuongAttention`: multiplicative scores, Luong et al. (2015), "Effective
  Approaches to Attention-based Neural Machine Translation", section 3.1:
  dot: score(q, m) = q . m; general: score(q, m) = q . (W m).

Both layers take one query per row, [batch, query_dim], score it against the
memory [batch, source_time, memory_dim], and return the context vector (the
weighted sum of the memory rows) and the weights. The memory-side projection
does not depend on the query, so `precompute(memory)` computes it once per
sentence and a decoder step passes it back as ``projected_memory=``.
"""

import keras
from keras import ops


def masked_softmax(scores, mask=None):
    """Softmax over the last axis that gives exactly 0 where `mask` is False.

    Masked scores are replaced by a large negative number (not -inf, whose
    arithmetic gives NaN when a whole row is masked) before the softmax, and
    the weights are multiplied by the mask afterwards, so a fully masked row
    gives all-zero weights instead of NaN.
    """
    if mask is None:
        return ops.softmax(scores, axis=-1)
    mask = ops.cast(mask, "bool")
    large_negative = -1e4 if keras.backend.standardize_dtype(scores.dtype) == "float16" else -1e9
    scores = ops.where(mask, scores, ops.full_like(scores, large_negative))
    weights = ops.softmax(scores, axis=-1)
    return weights * ops.cast(mask, weights.dtype)


def _weighted_sum(weights, memory):
    """[batch, source_time] x [batch, source_time, memory_dim] -> [batch, memory_dim]."""
    return ops.einsum("bs,bsm->bm", weights, memory)


@keras.saving.register_keras_serializable(package="translator")
class LuongAttention(keras.layers.Layer):
    """Multiplicative (Luong) attention, 'dot' or 'general' score.

    Args:
        units: width of the query (the decoder's hidden size). 'general'
            projects the memory to this width with W (no bias); 'dot' needs
            the memory to have this width already.
        score: 'dot' (score = q . m) or 'general' (score = q . W m).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        query: [batch, units].
        memory: [batch, source_time, memory_dim].
        memory_mask: bool [batch, source_time], True on real source tokens.
        projected_memory: optional result of `precompute(memory)`.

    Returns:
        ``(context, weights)``: context [batch, memory_dim] and weights
        [batch, source_time].

    Masking:
        Positions where ``memory_mask`` is False (source padding) get a score
        of -1e9 (-1e4 in float16) before the softmax and their weight is then
        multiplied by 0, so their weight is exactly 0 and the weights of the
        real positions sum to 1. A row with no real position gets all-zero
        weights and a zero context (never NaN). When ``memory_mask`` is not
        given, Keras fills it from the memory's Keras mask (e.g. the outputs of
        `RecurrentEncoder`); failing that, every position is attended.
    """

    def __init__(self, units, score="dot", **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer; got {units!r}")
        if score not in ("dot", "general"):
            raise ValueError(f"score must be one of 'dot', 'general'; got {score!r}")
        self.units = units
        self.score = score
        self.memory_projection = None
        if score == "general":
            self.memory_projection = keras.layers.Dense(
                units, use_bias=False, name="memory_projection"
            )

    def build(self, query_shape, memory_shape):
        query_dim, memory_dim = query_shape[-1], memory_shape[-1]
        if query_dim is not None and query_dim != self.units:
            raise ValueError(
                f"LuongAttention(units={self.units}) got a query of width {query_dim}; "
                f"the query width must equal units"
            )
        if self.score == "dot":
            if memory_dim is not None and memory_dim != self.units:
                raise ValueError(
                    "LuongAttention(score='dot') needs the memory width to equal the query "
                    f"width (units={self.units}); got memory width {memory_dim}. "
                    "Use score='general' to project the memory."
                )
        else:
            self.memory_projection.build(tuple(memory_shape))

    def precompute(self, memory):
        """The memory-side part of the score: W m for 'general', m itself for 'dot'."""
        if self.score == "general":
            return self.memory_projection(memory)
        return memory

    def call(self, query, memory, memory_mask=None, projected_memory=None):
        if projected_memory is None:
            projected_memory = self.precompute(memory)
        weights = self.alignment(query, projected_memory, memory_mask)
        return _weighted_sum(weights, memory), weights

    def alignment(self, query, projected_memory, memory_mask=None):
        """The weights alone, [batch, source_time], from `precompute(memory)` (for a caller
        that takes the weighted sum of the memory itself)."""
        return masked_softmax(ops.einsum("bq,bsq->bs", query, projected_memory), memory_mask)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "score": self.score})
        return config


@keras.saving.register_keras_serializable(package="translator")
class BahdanauAttention(keras.layers.Layer):
    """Additive (Bahdanau) attention: score = v^T tanh(W_q q + W_m m).

    Args:
        units: width of the hidden layer of the scoring network (W_q, W_m
            project to it; v maps it to one score). No biases, as in the paper.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        query: [batch, query_dim] (any width).
        memory: [batch, source_time, memory_dim].
        memory_mask: bool [batch, source_time], True on real source tokens.
        projected_memory: optional result of `precompute(memory)` (W_m m).

    Returns:
        ``(context, weights)``: context [batch, memory_dim] and weights
        [batch, source_time].

    Masking:
        Positions where ``memory_mask`` is False (source padding) get a score
        of -1e9 (-1e4 in float16) before the softmax and their weight is then
        multiplied by 0, so their weight is exactly 0 and the weights of the
        real positions sum to 1. A row with no real position gets all-zero
        weights and a zero context (never NaN). When ``memory_mask`` is not
        given, Keras fills it from the memory's Keras mask (e.g. the outputs of
        `RecurrentEncoder`); failing that, every position is attended.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer; got {units!r}")
        self.units = units
        self.query_projection = keras.layers.Dense(units, use_bias=False, name="query_projection")
        self.memory_projection = keras.layers.Dense(units, use_bias=False, name="memory_projection")
        self.score_vector = keras.layers.Dense(1, use_bias=False, name="score_vector")

    def build(self, query_shape, memory_shape):
        self.query_projection.build(tuple(query_shape))
        self.memory_projection.build(tuple(memory_shape))
        self.score_vector.build((None, None, self.units))

    def precompute(self, memory):
        """W_m m: [batch, source_time, memory_dim] -> [batch, source_time, units] (float32
        under mixed_bfloat16: see `alignment`)."""
        projected = self.memory_projection(memory)
        if self.dtype_policy.compute_dtype == "bfloat16" and self.dtype_policy.variable_dtype == "float32":
            return ops.cast(projected, "float32")
        return projected

    def call(self, query, memory, memory_mask=None, projected_memory=None):
        if projected_memory is None:
            projected_memory = self.precompute(memory)
        weights = self.alignment(query, projected_memory, memory_mask)
        return _weighted_sum(weights, memory), weights

    def alignment(self, query, projected_memory, memory_mask=None):
        """The weights alone, [batch, source_time], from `precompute(memory)` (for a caller
        that takes the weighted sum of the memory itself).

        The score (tanh, v, softmax) runs in the dtype of `projected_memory`, the weights
        come back in the compute dtype. Under mixed_bfloat16, i.e. in training, that is
        float32 (`precompute`), as for the recurrent gates (`translator.recurrence.gates`):
        TensorFlow's bfloat16 tanh and its gradient are slow on a CPU. A bfloat16 copy for
        decoding (forward only) stays in bfloat16, which is faster there (README, "Why the
        fast path looks as it does")."""
        query = ops.cast(self.query_projection(query), projected_memory.dtype)
        hidden = ops.tanh(ops.expand_dims(query, 1) + projected_memory)  # [batch, source_time, units]
        vector = ops.cast(self.score_vector.kernel, hidden.dtype)  # [units, 1]
        scores = ops.reshape(ops.matmul(ops.reshape(hidden, (-1, self.units)), vector), ops.shape(hidden)[:2])
        return ops.cast(masked_softmax(scores, memory_mask), self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config
