"""Recurrent source encoder: stacked (bi)directional LSTM / GRU / simple RNN.

Implements the encoders of
- Sutskever et al. (2014), "Sequence to Sequence Learning with Neural Networks":
  a deep LSTM whose final states start the decoder, reading the source
  reversed (`reverse_source=True`);
- Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder
  for Statistical Machine Translation": the GRU encoder whose final hidden
  state is the summary vector c ("R" in `RecurrentDecoder(feed_context=True)`);
- Bahdanau et al. (2015), "Neural Machine Translation by Jointly Learning to
  Align and Translate": a bidirectional RNN whose per-position outputs are the
  annotations the attention reads.

Padding id is 0 and padding only ever sits at the end of a row.

This module is the maths (Keras's recurrent layers); on a CPU, and from a table of
every token's input side when decoding, the layers run through the encoder's
`EncoderEngine` (`translator.models.engine`), with the same weights and numbers.
"""

import types

import keras
import tensorflow as tf
from keras import ops

from translator.checks import check_bool, check_choice, check_positive_int, check_rate
from translator.models.engine import EncoderEngine
from translator.models.recurrence import use_fused_loop

RECURRENT_LAYERS = {
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
    "rnn": keras.layers.SimpleRNN,
}
# How many state tensors each cell carries: [h, c] for LSTM, [h] otherwise.
STATE_COUNTS = {"lstm": 2, "gru": 1, "rnn": 1}


def reverse_real_tokens(sequence, mask=None):
    """Reverses the real (unpadded) part of every row, leaving padding at the end.

    ``[a b c 0 0] -> [c b a 0 0]`` (Sutskever et al. 2014, section 3.3). Works
    for ids [batch, time] and for vectors [batch, time, features]: TensorFlow's
    ``reverse_sequence``, whose gradient is the same reversal (a gather's would
    be a scatter-add).

    Args:
        sequence: tensor [batch, time] or [batch, time, features].
        mask: bool [batch, time], True on real tokens, which must all come
            before the padding. None means no padding (plain reversal).

    Returns:
        Tensor shaped like `sequence`.
    """
    if mask is None:
        return ops.flip(sequence, axis=1)
    lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
    return tf.reverse_sequence(sequence, lengths, seq_axis=1, batch_axis=0)


@keras.saving.register_keras_serializable(package="translator")
class RecurrentEncoder(keras.layers.Layer):
    """Stacked recurrent encoder over embedded source tokens.

    Args:
        cell: 'lstm', 'gru' or 'rnn' (Keras LSTM, GRU, SimpleRNN layers).
        units: hidden width of each direction of each layer.
        num_layers: number of stacked recurrent layers (default 1).
        bidirectional: wrap each layer in `keras.layers.Bidirectional`
            (outputs and states are then 2 * units wide).
        dropout: dropout rate applied between layers (not after the last
            one), only when ``training=True``.
        reverse_source: reverse the real tokens of every row before the RNN
            (Sutskever et al. 2014). The returned outputs stay in that reversed
            order; attention does not care about order and the mask stays valid
            because padding is still at the end.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        embedded: float [batch, time, embedding_dim].
        mask: bool [batch, time], True on real tokens, padding only at the end
            of each row. Filled in automatically from a `TokenEmbedding` output.
            None means every position is real.
        training: whether dropout is active.
        inputs_projected: `embedded` is instead rows of the table made by
            `fuse_for_inference`: the first layer's input side, [batch, time, width].

    Returns:
        ``(outputs, final_states)``:
        - outputs: [batch, time, units * (2 if bidirectional else 1)], exactly 0
          at padding positions (and carrying the input mask as Keras mask);
        - final_states: a list with one entry per layer (bottom first), each a
          list of tensors [batch, width]: ``[h, c]`` for LSTM, ``[h]`` for GRU
          and RNN. For a bidirectional layer the forward and backward states
          are concatenated on the last axis (width 2 * units).

    Masking:
        The mask is passed to every Keras recurrent layer, which skips padded
        steps: the state is carried unchanged over them, so the final states
        are the states after each row's last real token and the backward
        direction of a bidirectional layer starts at the last real token.
        Outputs at padding positions are then multiplied by 0. Hence a sentence
        padded to any length gives the same outputs on its real positions and
        the same final states.
    """

    def __init__(
        self,
        cell,
        units,
        num_layers=1,
        bidirectional=False,
        dropout=0.0,
        reverse_source=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("cell", cell, tuple(RECURRENT_LAYERS))
        check_positive_int("units", units)
        check_positive_int("num_layers", num_layers)
        check_bool("bidirectional", bidirectional)
        check_rate("dropout", dropout)
        check_bool("reverse_source", reverse_source)
        self.cell = cell
        self.units = units
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.reverse_source = reverse_source
        self.output_width = units * (2 if bidirectional else 1)
        self.supports_masking = True  # the outputs keep the source mask

        self.recurrent_layers = []
        templates = []
        for index in range(num_layers):
            layer = RECURRENT_LAYERS[cell](
                units, return_sequences=True, return_state=True, name=f"{cell}_{index}"
            )
            if bidirectional:
                templates.append(layer)
                layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{cell}_{index}")
            self.recurrent_layers.append(layer)
        # `Bidirectional` copies its layer through Keras serialization. Inside `load_model`
        # that copy is looked up by the template's id(), so a template freed before the next
        # one is made can hand its id (and its copy) on, and the load fails or shares layers.
        # Kept alive, the templates keep their ids apart (in a namespace, which neither Keras's
        # tracking nor its saving looks into: they hold no weights).
        self._bidirectional_templates = types.SimpleNamespace(layers=templates)
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.engine = EncoderEngine(self, reverse_real_tokens)  # the fast CPU path (translator/models/engine.py)

    def build(self, embedded_shape):
        shape = tuple(embedded_shape)
        for layer in self.recurrent_layers:
            layer.build(shape)
            shape = shape[:-1] + (self.output_width,)

    @property
    def input_table(self):
        """Every token's first-layer input side, made by `fuse_for_inference` (else None)."""
        return self.engine.input_table

    def fuse_for_inference(self, embeddings):
        """Make the engine's table of the first layer's input side for every row of
        `embeddings` [vocabulary, embedding_dim] (`EncoderEngine.fuse_for_inference`): then
        ``call(ops.take(encoder.input_table, ids, axis=0), inputs_projected=True)``. Only for a
        copy that decodes and is not trained further (`translator.models.seq2seq.computing_in`)."""
        self.engine.fuse_for_inference(embeddings)

    def call(self, embedded, mask=None, training=None, inputs_projected=False):
        if mask is not None:
            mask = ops.cast(mask, "bool")
        if self.reverse_source:
            embedded = reverse_real_tokens(embedded, mask)
        state_count = STATE_COUNTS[self.cell]

        outputs = embedded
        final_states = []
        for index, layer in enumerate(self.recurrent_layers):
            if index > 0 and self.dropout > 0:
                outputs = self.dropout_layer(outputs, training=training)
            projected = inputs_projected and index == 0  # any device: only the engine reads those
            if projected or use_fused_loop():
                zeros = ops.zeros((ops.shape(outputs)[0], self.units), dtype=outputs.dtype)
                outputs, states = self.engine.run_layer(layer, outputs, mask, [zeros] * state_count,
                                                        training=bool(training) and not projected,
                                                        inputs_projected=projected)
            else:
                outputs, *states = layer(outputs, mask=mask, training=training)
            if self.bidirectional:  # [forward..., backward...] -> [concat(f, b), ...]
                forward, backward = states[:state_count], states[state_count:]
                states = [ops.concatenate(pair, axis=-1) for pair in zip(forward, backward)]
            if mask is not None:
                outputs = outputs * ops.expand_dims(ops.cast(mask, outputs.dtype), -1)
            final_states.append(list(states))
        return outputs, final_states

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cell": self.cell,
                "units": self.units,
                "num_layers": self.num_layers,
                "bidirectional": self.bidirectional,
                "dropout": self.dropout,
                "reverse_source": self.reverse_source,
            }
        )
        return config
