"""Recurrent target decoder: embedding, stacked cells, optional attention, output layer.

One layer covers the classic RNN decoders:
- Sutskever et al. (2014), "Sequence to Sequence Learning with Neural Networks":
  a deep LSTM started from the encoder's final states (`attention=None`);
- Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder
  for Statistical Machine Translation": the encoder summary R is fed to every
  step and to the output layer, s_t = f(s_{t-1}, y_{t-1}, R)
  (`feed_context=True`);
- Bahdanau et al. (2015), "Neural Machine Translation by Jointly Learning to
  Align and Translate": c_t = attn(s_{t-1}, memory), s_t = f(s_{t-1},
  [y_{t-1}; c_t]), output = proj(tanh(W [s_t; c_t])) (`attention="bahdanau"`);
- Luong et al. (2015), "Effective Approaches to Attention-based Neural Machine
  Translation": s_t = f(s_{t-1}, [y_{t-1}; h~_{t-1}]) (input feeding, sec. 3.3),
  c_t = attn(s_t, memory), h~_t = tanh(W_c [c_t; s_t]), output = proj(h~_t)
  (`attention="luong_dot"` or `"luong_general"`).

Decoding works from an explicit, flat, batch-major cache (`initial_state`), so
greedy and beam search can call `step` inside a `tf.function` and reorder the
cache with ``ops.take(x, indices, axis=0)``.

This module is the maths: on a CPU the same equations run through the decoder's
`DecoderEngine` (`translator.models.engine`: fused kernels, a faster training loop), with
the same weights and numbers.
"""

import keras
import tensorflow as tf
from keras import ops

from translator.checks import check_bool, check_choice, check_positive_int, check_rate
from translator.models.attention import BahdanauAttention, LuongAttention
from translator.models.embeddings import TokenEmbedding
from translator.models.encoders import RECURRENT_LAYERS, STATE_COUNTS
from translator.models.engine import DecoderEngine
from translator.models.quantization import Int8Kernel, columns
from translator.models.quantization import multiply as quantized_or_float_product
from translator.models.recurrence import fold_bias, take_positions, use_fused_loop, with_ones

ATTENTION_TYPES = (None, "luong_dot", "luong_general", "bahdanau")


@keras.saving.register_keras_serializable(package="translator")
class RecurrentDecoder(keras.layers.Layer):
    """Stacked recurrent decoder producing vocabulary logits.

    Args:
        vocabulary_size: target vocabulary size (id 0 is padding).
        embedding_dim: width of the target embedding the decoder owns.
        cell: 'lstm', 'gru' or 'rnn'.
        units: hidden width of every decoder layer.
        num_layers: number of stacked recurrent layers (default 1).
        dropout: rate of the dropout on the target embedding and between
            recurrent layers (not after the last), only when training.
        attention: None, 'luong_dot', 'luong_general' or 'bahdanau'.
            'luong_dot' needs the memory (encoder outputs) to be `units` wide.
        feed_context: concatenate the encoder summary R (the top encoder
            layer's final h) to the cell input at every step and to the input
            of the output layer (Cho et al. 2014). With attention, R joins the
            attentional layer's input: tanh(W [s_t; c_t; R]) for Bahdanau,
            tanh(W_c [c_t; s_t; R]) for Luong.
        tie_embeddings: compute logits as ``h @ E^T + b`` with the target
            embedding table E (`TokenEmbedding.attend`) and a bias b of size
            vocabulary_size. When the last hidden width differs from
            embedding_dim, a linear layer without bias ("tied_projection")
            first maps it to embedding_dim.
        **kwargs: standard `keras.layers.Layer` arguments.

    Initial state (`initial_state(encoder_final_states, memory, memory_mask)`):
        Returns the cache, a flat dict of batch-major tensors:
        - ``hidden_state_{i}`` [batch, units] for every layer i (0 = bottom),
          and ``cell_state_{i}`` for LSTM;
        - ``attentional_vector`` [batch, units], h~_{t-1} (zeros at the start),
          with Luong attention only;
        - ``memory`` [batch, source_time, memory_dim], ``projected_memory``
          (the attention's `precompute(memory)`) and ``memory_mask`` (bool
          [batch, source_time]), with attention only;
        - ``encoder_context`` [batch, R width], with feed_context only.
        States come from the encoder layer by layer: decoder layer i reads
        encoder layer min(i, encoder_layers - 1), so a shallower encoder's top
        layer starts the extra decoder layers; a decoder LSTM fed by a GRU/RNN
        encoder starts both h and c from the encoder's h. If the encoder has
        exactly num_layers layers with the same kind of state, all `units`
        wide, the states are copied unchanged (Sutskever et al. 2014).
        Otherwise (other depth, other cell, or a bidirectional encoder whose
        states are 2 * units wide) every state passes through a learned
        bridge, Dense(units, tanh), one per decoder state, owned by the
        decoder. With ``encoder_final_states=None`` (a language model) pass
        ``batch_size``: states start at zero.

    Call arguments (teacher forcing, `decoder(target_input_ids, cache)`):
        target_input_ids: int [batch, time], the shifted target (y_0..y_{T-1}).
        cache: the dict from `initial_state`.
        training: whether dropout is active.
        return_attention: also return the attention weights.
        output_mask: optional bool [batch, time]: the logits of the positions
            where it is True only, [count, vocabulary_size] in row-major order
            (as ``tf.boolean_mask`` takes them). A training loss over the real
            target tokens then pays nothing for padding in the output
            projection, the largest product of a step.

    Returns:
        logits [batch, time, vocabulary_size] ([count, vocabulary_size] with
        ``output_mask``); with ``return_attention=True`` ``(logits, weights)``
        with weights [batch, time, source_time] (None without attention).

    `step(previous_token_ids, cache, training=False)` advances one token:
    previous_token_ids int [batch] -> ``(logits [batch, vocabulary_size],
    new_cache, weights [batch, source_time] or None)``. It is pure tensor code
    (traceable in `tf.function`). The teacher-forcing call runs the same step
    computation with the same weights: with attention, in a `tf.while_loop`
    over time (unknown length allowed); without attention, no step depends on
    the previous step's output layer, so the stacked Keras RNN layers run over
    the whole sequence at once (cuDNN on GPU) from the cache's states. Both
    agree with calling `step` T times.

    Masking:
        Target padding is not masked: the decoder is causal, so padding after
        the end of a target never changes the logits at the real positions
        (the logits at padded positions are meaningless and must be masked by
        the loss). The target embedding produces no Keras mask. Source padding
        is masked in the attention through ``memory_mask`` (weight exactly 0),
        and never reaches the initial states because the encoder's final
        states skip it.
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim,
        cell,
        units,
        num_layers=1,
        dropout=0.0,
        attention=None,
        feed_context=False,
        tie_embeddings=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("vocabulary_size", vocabulary_size)
        check_positive_int("embedding_dim", embedding_dim)
        check_choice("cell", cell, tuple(RECURRENT_LAYERS))
        check_positive_int("units", units)
        check_positive_int("num_layers", num_layers)
        check_rate("dropout", dropout)
        check_choice("attention", attention, ATTENTION_TYPES)
        check_bool("feed_context", feed_context)
        check_bool("tie_embeddings", tie_embeddings)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.cell = cell
        self.units = units
        self.num_layers = num_layers
        self.dropout = dropout
        self.attention = attention
        self.feed_context = feed_context
        self.tie_embeddings = tie_embeddings

        self.embedding = TokenEmbedding(
            vocabulary_size, embedding_dim, mask_zero=False, name="target_embedding"
        )
        self.dropout_layer = keras.layers.Dropout(dropout)
        # Keras RNN layers: `step` uses their `.cell`, the no-attention path the whole layer.
        self.recurrent_layers = [
            RECURRENT_LAYERS[cell](
                units, return_sequences=True, return_state=True, name=f"{cell}_{index}"
            )
            for index in range(num_layers)
        ]
        # One bridge per decoder state; built (and used) only when states cannot be copied.
        self.bridge_layers = [
            keras.layers.Dense(units, activation="tanh", name=f"bridge_{key}")
            for key in self._state_keys()
        ]
        self.attention_layer = None
        self.attentional_layer = None
        if attention == "bahdanau":
            self.attention_layer = BahdanauAttention(units, name="attention")
        elif attention in ("luong_dot", "luong_general"):
            score = attention.split("_")[1]
            self.attention_layer = LuongAttention(units, score=score, name="attention")
        if attention is not None:
            self.attentional_layer = keras.layers.Dense(
                units, activation="tanh", use_bias=False, name="attentional_layer"
            )
        self.output_layer = None
        if not tie_embeddings:
            self.output_layer = keras.layers.Dense(vocabulary_size, name="output_projection")
        self.tied_projection = None  # created in build() when tying needs it
        self.output_bias = None  # created in build() when tying
        self._encoder_state_widths = None  # recorded for get_build_config()
        self.engine = DecoderEngine(self)  # the fast CPU path (translator/models/engine.py)

    # ------------------------------------------------------------------ cache layout

    def _layer_state_keys(self, index):
        names = ("hidden_state", "cell_state")[: STATE_COUNTS[self.cell]]  # [h, c] or [h]
        return [f"{name}_{index}" for name in names]

    def _state_keys(self):
        return [key for index in range(self.num_layers) for key in self._layer_state_keys(index)]

    def _recurrent_keys(self):
        """Cache entries that change from step to step."""
        keys = self._state_keys()
        if self.attention in ("luong_dot", "luong_general"):
            keys.append("attentional_vector")
        return keys

    # ------------------------------------------------------------------ building

    def build(self, target_input_ids_shape, cache_shape):
        needed = ["memory"] if self.attention is not None else []
        needed += ["encoder_context"] if self.feed_context else []
        for key in needed:
            if key not in cache_shape:
                raise ValueError(f"the cache has no '{key}'; make it with initial_state()")
        memory_width = cache_shape["memory"][-1] if self.attention else 0
        context_width = cache_shape["encoder_context"][-1] if self.feed_context else 0

        self.embedding.build()
        input_width = self.embedding_dim + context_width
        if self.attention == "bahdanau":
            input_width += memory_width  # c_t
        elif self.attention is not None:
            input_width += self.units  # h~_{t-1}, input feeding
        for index, layer in enumerate(self.recurrent_layers):
            layer.build((None, None, input_width if index == 0 else self.units))

        pre_output_width = self.units + context_width
        if self.attention is not None:
            self.attention_layer.build((None, self.units), (None, None, memory_width))
            self.attentional_layer.build((None, self.units + memory_width + context_width))
            pre_output_width = self.units

        if self.tie_embeddings:
            if pre_output_width != self.embedding_dim:
                self.tied_projection = keras.layers.Dense(
                    self.embedding_dim, use_bias=False, name="tied_projection"
                )
                self.tied_projection.build((None, pre_output_width))
            self.output_bias = self.add_weight(
                shape=(self.vocabulary_size,), initializer="zeros", name="output_bias"
            )
        else:
            self.output_layer.build((None, pre_output_width))

    def get_build_config(self):
        if not self.built:
            return None
        return {
            "cache_shape": self._build_shapes_dict["cache_shape"],
            "encoder_state_widths": self._encoder_state_widths,
        }

    def build_from_config(self, config):
        if not config:
            return
        if config.get("encoder_state_widths"):  # builds the bridge layers, if any are used
            widths = config["encoder_state_widths"]
            self._initial_rnn_states([[ops.zeros((1, w)) for w in layer] for layer in widths])
        self.build(None, config["cache_shape"])

    # ------------------------------------------------------------------ initial state

    def initial_state(
        self, encoder_final_states=None, memory=None, memory_mask=None, batch_size=None
    ):
        """Builds the decoding cache (see the class docstring for its keys).

        Args:
            encoder_final_states: `RecurrentEncoder`'s final states (a list per
                layer of [h, c] or [h]); None for a decoder without encoder.
            memory: encoder outputs [batch, source_time, memory_dim]; needed
                with attention.
            memory_mask: bool [batch, source_time], True on real source
                tokens; None means no padding.
            batch_size: only with ``encoder_final_states=None``.
        """
        if self.attention is not None and memory is None:
            raise ValueError(f"attention={self.attention!r} needs memory; got None")
        if self.feed_context and encoder_final_states is None:
            raise ValueError("feed_context=True needs encoder_final_states; got None")
        cache = self._initial_rnn_states(encoder_final_states, batch_size)
        if self.attention in ("luong_dot", "luong_general"):
            cache["attentional_vector"] = ops.zeros_like(cache["hidden_state_0"])
        if self.attention is not None:
            if memory_mask is None:
                memory_mask = ops.ones_like(memory[:, :, 0], dtype="bool")
            cache["memory"] = memory
            cache["memory_mask"] = ops.cast(memory_mask, "bool")
        if self.feed_context:
            cache["encoder_context"] = encoder_final_states[-1][0]
        if not self.built:
            self.build(None, {key: tuple(value.shape) for key, value in cache.items()})
        if self.attention is not None:
            cache["projected_memory"] = self.attention_layer.precompute(memory)
        return cache

    def _initial_rnn_states(self, encoder_final_states, batch_size=None):
        if encoder_final_states is None:
            if batch_size is None:
                raise ValueError("initial_state needs encoder_final_states or batch_size")
            zeros = ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
            return {key: zeros for key in self._state_keys()}
        encoder_final_states = [list(states) for states in encoder_final_states]
        if not encoder_final_states or not all(encoder_final_states):
            raise ValueError("encoder_final_states must be a non-empty list of non-empty lists")
        state_count = STATE_COUNTS[self.cell]
        copy = len(encoder_final_states) == self.num_layers and all(
            len(states) == state_count and all(state.shape[-1] == self.units for state in states)
            for states in encoder_final_states
        )
        if not copy and not self.built:
            self._encoder_state_widths = [
                [int(state.shape[-1]) for state in states] for states in encoder_final_states
            ]
        cache = {}
        for index in range(self.num_layers):
            source = encoder_final_states[min(index, len(encoder_final_states) - 1)]
            for position, key in enumerate(self._layer_state_keys(index)):
                state = source[position] if position < len(source) else source[0]
                if not copy:
                    state = self.bridge_layers[index * state_count + position](state)
                cache[key] = state
        return cache

    # ------------------------------------------------------------------ one step

    def advance(self, embedded, state, cache, training, run_layer=None, attend=None):
        """One decoder step from the embedded previous token y_{t-1} [batch, embedding_dim].

        `state` holds the `_recurrent_keys()` entries, `cache` the constant ones. Returns
        ``(hidden, context, new_state, weights)``: the top layer's s_t, the attention context
        c_t (None without attention), the new recurrent state and the attention weights (or
        None). ``run_layer(index, inputs, states) -> (h, new_states)`` and ``attend(query,
        cache) -> (context, weights)`` default to the Keras cell and the attention layer; the
        engine passes its own (same numbers), and ``embedded=None`` when it adds the
        embedding's share of the first layer itself.
        """
        run_layer = run_layer or (lambda index, inputs, states:
                                  self.recurrent_layers[index].cell(inputs, states, training=training))
        attend = attend or self.attend
        context = weights = None
        fed = []  # what joins the embedding at the first layer's input
        if self.attention == "bahdanau":  # attend with the previous top state s_{t-1}
            context, weights = attend(state[f"hidden_state_{self.num_layers - 1}"], cache)
            fed.append(context)
        elif self.attention is not None:  # Luong input feeding: h~_{t-1}
            fed.append(state["attentional_vector"])
        if self.feed_context:  # Cho et al.: the encoder summary R at every step
            fed.append(cache["encoder_context"])

        pieces = fed if embedded is None else [embedded] + fed
        hidden = ops.concatenate(pieces, axis=-1) if pieces else None
        new_state = {}
        for index in range(self.num_layers):
            keys = self._layer_state_keys(index)
            if index > 0 and self.dropout > 0:
                hidden = self.dropout_layer(hidden, training=training)
            hidden, states = run_layer(index, hidden, [state[key] for key in keys])
            new_state.update(zip(keys, states))

        if self.attention in ("luong_dot", "luong_general"):  # attend with the new top state s_t
            context, weights = attend(hidden, cache)
            new_state["attentional_vector"] = self.pre_output(hidden, context, cache)
        return hidden, context, new_state, weights

    def attend(self, query, cache):
        """(context c_t, weights) of one query over the memory."""
        return self.attention_layer(query, cache["memory"], cache["memory_mask"],
                                    projected_memory=cache["projected_memory"])

    def pre_output(self, hidden, context, cache):
        """The vector the output projection reads, for one step [batch, ...] or all steps
        [batch, time, ...]: the attentional layer for Bahdanau, tanh(W [s_t; c_t; R]), and
        Luong, tanh(W_c [c_t; s_t; R]); [s_t; R] without attention."""
        pieces = []
        if self.feed_context:
            encoder_context = cache["encoder_context"]
            if len(hidden.shape) == 3:  # R repeated over time: [batch, 1, width] * [batch, time, 1]
                encoder_context = ops.expand_dims(encoder_context, 1) * ops.ones_like(hidden[:, :, :1])
            pieces = [encoder_context]
        if self.attention == "bahdanau":
            return self.attentional_layer(ops.concatenate([hidden, context] + pieces, axis=-1))
        if self.attention is not None:
            return self.attentional_layer(ops.concatenate([context, hidden] + pieces, axis=-1))
        return ops.concatenate([hidden] + pieces, axis=-1)

    def project(self, pre_output, output=None):
        """Logits: the output layer, or ``h @ E^T + b`` with the target embedding E when tied
        (after the tied projection, if any); with `output` (`restricted_output`), only those
        pieces' logits."""
        if self.tied_projection is not None:
            pre_output = self.tied_projection(pre_output)
        if output is not None:
            return quantized_or_float_product(with_ones(pre_output), output)
        if not self.tie_embeddings:
            return self.output_layer(pre_output)
        kernel, bias = self.output_kernel_and_bias()
        return ops.matmul(pre_output, ops.cast(kernel, pre_output.dtype)) + ops.cast(bias, pre_output.dtype)

    def output_kernel_and_bias(self):
        """The output projection's kernel [width, vocabulary] and bias: the Dense layer's, or
        the transposed target embedding with its own bias when tied."""
        if self.tie_embeddings:
            return ops.transpose(ops.convert_to_tensor(self.embedding.embeddings)), self.output_bias
        return self.output_layer.kernel, self.output_layer.bias

    def restricted_output(self, pieces):
        """The output projection of `pieces` only (int32 [n] target ids, for a lexical shortlist:
        `translator.decoding.shortlists`): ``[kernel; bias]`` of their columns, [width + 1, n], for
        ``step(..., output=...)``. Taken once per batch, not at every step."""
        if self.engine.kernels is not None:
            kernel = self.engine.kernels["output"]
            return columns(kernel, pieces) if isinstance(kernel, Int8Kernel) else ops.take(kernel, pieces, axis=1)
        kernel, bias = self.output_kernel_and_bias()
        return fold_bias(ops.take(kernel, pieces, axis=1), ops.take(bias, pieces, axis=0))

    def embed(self, token_ids, training):
        embedded = self.embedding(token_ids)
        if self.dropout > 0:
            embedded = self.dropout_layer(embedded, training=training)
        return embedded

    def fuse_for_inference(self):
        """Make the engine's decoding kernels from the weights as they are now (see
        `DecoderEngine.fuse_for_inference`): only for a copy that decodes and is not trained
        further (`translator.models.seq2seq.computing_in`)."""
        self.engine.fuse_for_inference()

    def step(self, previous_token_ids, cache, training=False, output=None):
        """Advances one token: int [batch] -> (logits [batch, vocab], new_cache, weights); with
        `output` (`restricted_output`), the logits of its pieces only, [batch, pieces]."""
        if (self.engine.kernels is not None and not training) or use_fused_loop():
            return self.engine.step(previous_token_ids, cache, training, output)
        embedded = self.embed(previous_token_ids, training)
        hidden, context, new_state, weights = self.advance(embedded, cache, cache, training)
        if "attentional_vector" in new_state:  # Luong: h~_t
            pre_output = new_state["attentional_vector"]
        else:
            pre_output = self.pre_output(hidden, context, cache)
        return self.project(pre_output, output), {**cache, **new_state}, weights

    # ------------------------------------------------------------------ whole sequence

    def call(self, target_input_ids, cache, training=None, return_attention=False, return_state=False,
             output_mask=None):
        embedded = self.embed(target_input_ids, training)
        weights = None
        if self.attention is None:
            pre_outputs, state = self._decode_whole_sequence(embedded, cache, training)
        elif use_fused_loop():
            pre_outputs, weights, state = self.engine.decode_step_by_step(embedded, cache, training)
        else:
            pre_outputs, weights, state = self._decode_step_by_step(embedded, cache, training)
        if output_mask is not None:  # the output projection for the chosen positions only
            pre_outputs = take_positions(pre_outputs, output_mask)
        logits = self.engine.project(pre_outputs) if use_fused_loop() else self.project(pre_outputs)
        outputs = (logits,)
        if return_attention:
            outputs += (weights,)
        if return_state:
            outputs += ({**cache, **state},)
        return outputs[0] if len(outputs) == 1 else outputs

    def _decode_whole_sequence(self, embedded, cache, training):
        """No attention: run each recurrent layer over all steps at once (the Keras layer, i.e.
        cuDNN, on a GPU; the engine's loop on a CPU)."""
        hidden = embedded
        if self.feed_context:  # R repeated over time: [batch, 1, width] * [batch, time, 1]
            context = ops.expand_dims(cache["encoder_context"], 1)
            hidden = ops.concatenate([embedded, context * ops.ones_like(embedded[:, :, :1])], axis=-1)
        state = {}
        for index, layer in enumerate(self.recurrent_layers):
            if index > 0 and self.dropout > 0:
                hidden = self.dropout_layer(hidden, training=training)
            keys = self._layer_state_keys(index)
            initial_state = [cache[key] for key in keys]
            if use_fused_loop():
                hidden, final_states = self.engine.run_layer(index, hidden, initial_state, training)
            else:
                hidden, *final_states = layer(hidden, initial_state=initial_state, training=training)
            state.update(zip(keys, final_states))
        return self.pre_output(hidden, None, cache), state

    def _decode_step_by_step(self, embedded, cache, training):
        """With attention: `advance` at every step, in a tf.while_loop over time (the length
        may be unknown). Returns pre-outputs [batch, time, width], weights, the last state."""
        steps = ops.shape(embedded)[1]
        inputs = tf.TensorArray(embedded.dtype, size=steps).unstack(ops.transpose(embedded, (1, 0, 2)))

        def advance(time, state, carried):
            return self.advance(inputs.read(time), state, cache, training), carried

        pre_outputs, weights, state, _ = self.step_loop(advance, steps, cache, {})
        return pre_outputs, weights, state

    def step_loop(self, advance, steps, cache, carried):
        """The loop over time of `_decode_step_by_step`: ``advance(time, state, carried) ->
        ((hidden, context, new_state, weights), carried)`` at every step, ``carried`` being
        what the caller keeps from step to step (the engine's records). Returns ``(pre_outputs
        [batch, time, width], weights [batch, time, source_time], state, carried)``."""
        bahdanau = self.attention == "bahdanau"
        outputs = tf.TensorArray(self.compute_dtype, size=steps)  # s_t (Bahdanau) or h~_t (Luong)
        contexts = tf.TensorArray(self.compute_dtype, size=steps)  # c_t (Bahdanau)
        all_weights = tf.TensorArray(self.compute_dtype, size=steps)
        state = {key: cache[key] for key in self._recurrent_keys()}

        def body(time, state, outputs, contexts, all_weights, carried):
            (hidden, context, state, weights), carried = advance(time, state, carried)
            if bahdanau:
                outputs = outputs.write(time, hidden)
                contexts = contexts.write(time, context)
            else:
                outputs = outputs.write(time, state["attentional_vector"])
            all_weights = all_weights.write(time, weights)
            return time + 1, state, outputs, contexts, all_weights, carried

        if not bahdanau:  # nothing is written to `contexts`
            contexts = tf.zeros([0])
        _, state, outputs, contexts, all_weights, carried = tf.while_loop(
            lambda time, *_: time < steps,
            body,
            (tf.constant(0), state, outputs, contexts, all_weights, carried),
            maximum_iterations=steps,  # lets XLA (jit_compile=True) size the TensorArrays
        )
        outputs = ops.transpose(outputs.stack(), (1, 0, 2))
        if bahdanau:  # the attentional layer, which no later step reads: once after the loop
            outputs = self.pre_output(outputs, ops.transpose(contexts.stack(), (1, 0, 2)), cache)
        return outputs, ops.transpose(all_weights.stack(), (1, 0, 2)), state, carried

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "cell": self.cell,
                "units": self.units,
                "num_layers": self.num_layers,
                "dropout": self.dropout,
                "attention": self.attention,
                "feed_context": self.feed_context,
                "tie_embeddings": self.tie_embeddings,
            }
        )
        return config
