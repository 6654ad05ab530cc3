"""The sequence-to-sequence model: source embedding, RecurrentEncoder, RecurrentDecoder.

Sutskever et al. (2014) without attention, Cho et al. (2014) with the context fed at every
step, Bahdanau et al. (2015) and Luong et al. (2015) with attention: all are the same model
with other settings (see ``configs/reference.yaml``).

Training uses teacher forcing: the decoder reads ``<sos> y1 .. yn`` and is scored on
``y1 .. yn <eos>``; the loss skips padding. Translation uses ``encode`` once, then the
decoder's ``step`` token by token (``translator.decoding.search``), from the same weights: a saved
``.keras`` file is all that decoding needs, with no inference model to rebuild.
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from translator.models.decoders import RecurrentDecoder
from translator.models.embeddings import TokenEmbedding
from translator.models.encoders import RecurrentEncoder
from translator.special_ids import PAD_ID


@contextlib.contextmanager
def dtype_policy_of(model: keras.Model):
    """Inside, new layers and lazily built weights follow `model`'s dtype policy (for example
    ``mixed_bfloat16``), which Keras saves with the model and restores when loading it."""
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(model.dtype_policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)


def computing_in(model: keras.Model, dtype: str) -> keras.Model:
    """`model` itself if its weights and computation are already `dtype` ("float32" or
    "bfloat16"); otherwise a copy whose weights are cast to `dtype` once, with its decoder's
    step kernels fused (`RecurrentDecoder.fuse_for_inference`). For decoding: under
    ``mixed_bfloat16`` every step would cast every float32 weight again. "int8": a float32
    copy whose decoder multiplies int8 weights (`translator.models.quantization`)."""
    if dtype == "int8":
        from translator.models.quantization import quantize_decoder

        copy = computing_in(model, "float32")
        if copy is model:  # a float32 model: a copy of its own, fused, so the model is left as it was
            copy = type(model).from_config(model.get_config())
            copy.set_weights(model.get_weights())
            copy.fuse_for_inference()
        quantize_decoder(copy.decoder)
        return copy
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32', 'bfloat16' or 'int8'; got {dtype!r}")
    policy = model.dtype_policy
    if policy.variable_dtype == dtype and policy.compute_dtype == dtype:
        return model
    with _orthogonal_initializer_in_float32():
        copy = type(model).from_config({**model.get_config(), "dtype": dtype})
    copy.set_weights([ops.cast(weight, dtype) for weight in model.get_weights()])
    if isinstance(copy, Seq2Seq):
        copy.fuse_for_inference()
    elif isinstance(getattr(copy, "decoder", None), RecurrentDecoder):
        copy.decoder.fuse_for_inference()
    return copy


@contextlib.contextmanager
def _orthogonal_initializer_in_float32():
    """Keras's orthogonal initializer (recurrent kernels) runs a QR decomposition, which
    TensorFlow cannot do in bfloat16: inside, it draws in float32 and casts. (The values are
    overwritten at once by `computing_in`.)"""
    orthogonal = keras.initializers.Orthogonal
    original = orthogonal.__call__

    def call(self, shape, dtype=None):
        return ops.cast(original(self, shape, dtype="float32"), dtype or "float32")

    orthogonal.__call__ = call
    try:
        yield
    finally:
        orthogonal.__call__ = original


class ConfiguredModel(keras.Model):
    """A model whose config is its constructor's ``self.settings``; loading rebuilds it and
    creates every weight with ``build_for_shapes()`` before Keras restores the values."""

    def get_config(self):
        return {**super().get_config(), **self.settings}

    @classmethod
    def from_config(cls, config):
        model = cls(**config)
        model.build_for_shapes()
        return model


@keras.saving.register_keras_serializable(package="translator")
class Seq2Seq(ConfiguredModel):
    """An RNN encoder-decoder.

    Call: ``model((source_ids, target_input_ids), training=False)`` with int [batch, source_time]
    and [batch, target_time] ids (0 = padding) returns logits [batch, target_time, target_vocabulary].
    ``output_mask=`` bool [batch, target_time] returns those of the True positions only,
    [count, target_vocabulary] (see `RecurrentDecoder`): what a loss over real tokens needs.

    Masking: source padding is masked in the encoder (it never changes final states or
    outputs) and in the attention (weight 0); target padding only produces logits at padded
    positions, which ``sequence_loss`` ignores.
    """

    def __init__(self, source_vocabulary_size, target_vocabulary_size, cell="lstm", embedding_dim=256,
                 units=512, encoder_layers=1, decoder_layers=1, bidirectional=False, reverse_source=False,
                 attention=None, feed_context=False, tie_embeddings=False, dropout=0.0, encoder_units=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.settings = {
            "source_vocabulary_size": source_vocabulary_size, "target_vocabulary_size": target_vocabulary_size,
            "cell": cell, "embedding_dim": embedding_dim, "units": units, "encoder_layers": encoder_layers,
            "decoder_layers": decoder_layers, "bidirectional": bidirectional, "reverse_source": reverse_source,
            "attention": attention, "feed_context": feed_context, "tie_embeddings": tie_embeddings,
            "dropout": dropout, "encoder_units": encoder_units,
        }
        # Every layer inside computes with the model's own dtype policy (e.g. ``dtype=
        # "mixed_bfloat16"``), which is saved with the model and restored when it is loaded.
        with dtype_policy_of(self):
            self.source_embedding = TokenEmbedding(source_vocabulary_size, embedding_dim, name="source_embedding")
            self.embedding_dropout = keras.layers.Dropout(dropout)
            self.encoder = RecurrentEncoder(cell=cell, units=encoder_units or units, num_layers=encoder_layers,
                                            bidirectional=bidirectional, dropout=dropout,
                                            reverse_source=reverse_source, name="encoder")
            self.decoder = RecurrentDecoder(vocabulary_size=target_vocabulary_size, embedding_dim=embedding_dim,
                                            cell=cell, units=units, num_layers=decoder_layers, dropout=dropout,
                                            attention=attention, feed_context=feed_context,
                                            tie_embeddings=tie_embeddings, name="decoder")

    @classmethod
    def from_settings(cls, model_config: dict, source_vocabulary_size: int, target_vocabulary_size: int,
                      dtype: str = "float32"):
        """Build from the ``model:`` section of an experiment config (and the training precision)."""
        model = cls(source_vocabulary_size, target_vocabulary_size, dtype=dtype, **model_config)
        model.build_for_shapes()
        return model

    def build_for_shapes(self):
        """Create every weight by running a tiny batch through the model."""
        source = ops.convert_to_tensor([[4, 5, 0]], dtype="int32")
        target = ops.convert_to_tensor([[2, 4]], dtype="int32")
        with dtype_policy_of(self):  # weights made lazily follow it too
            self((source, target), training=False)

    def encode(self, source_ids, training=False) -> dict:
        """Run the encoder; return the decoder's cache (its initial state, memory and mask)."""
        mask = ops.not_equal(source_ids, PAD_ID)
        if self.encoder.input_table is not None and not training:  # `fuse_for_inference`
            projected = ops.take(self.encoder.input_table, source_ids, axis=0)
            outputs, final_states = self.encoder(projected, mask=mask, inputs_projected=True)
        else:
            embedded = self.embedding_dropout(self.source_embedding(source_ids), training=training)
            outputs, final_states = self.encoder(embedded, mask=mask, training=training)
        return self.decoder.initial_state(final_states, outputs, mask)

    def take_encoder(self, other: Seq2Seq, freeze: bool = False) -> None:
        """Copy ``other``'s source embedding and encoder weights into this model (a model of
        the same source vocabulary and encoder settings, for another target language: "swap
        out the decoder while reusing the encoder"); ``freeze`` keeps them fixed in training."""
        keys = ("source_vocabulary_size", "cell", "embedding_dim", "encoder_layers", "bidirectional",
                "reverse_source")
        differing = [key for key in keys if self.settings[key] != other.settings[key]]
        if (self.settings["encoder_units"] or self.settings["units"]) != \
                (other.settings["encoder_units"] or other.settings["units"]):
            differing.append("encoder width (encoder_units or units)")
        if differing:
            raise ValueError(f"the encoder to take differs in {', '.join(differing)}; its model and this one "
                             f"must share the source vocabulary and every encoder setting")
        for mine, theirs in ((self.source_embedding, other.source_embedding), (self.encoder, other.encoder)):
            mine.set_weights(theirs.get_weights())
            mine.trainable = not freeze

    def fuse_for_inference(self):
        """Precompute the encoder's first-layer input side for every source token and the
        decoder's step kernels (`RecurrentEncoder.fuse_for_inference`,
        `RecurrentDecoder.fuse_for_inference`). For a decoding copy (`computing_in`)."""
        self.encoder.fuse_for_inference(self.source_embedding.embeddings)
        self.decoder.fuse_for_inference()

    def call(self, inputs, training=False, return_attention=False, output_mask=None):
        source_ids, target_input_ids = inputs
        cache = self.encode(source_ids, training=training)
        return self.decoder(target_input_ids, cache, training=training, return_attention=return_attention,
                            output_mask=output_mask)



def sequence_loss(logits, target_ids, label_smoothing: float = 0.0):
    """Summed token cross-entropy over the real (non-zero) targets, and their count.

    Label smoothing (Szegedy et al. 2016) mixes the one-hot target with the uniform
    distribution: loss = (1 - e) * NLL + e * mean over the vocabulary of -log p.
    Returns ``(loss_sum, token_count)``; the mean is their ratio (kept apart so that replicas
    and batches of different sizes can be averaged exactly).
    """
    logits = ops.cast(logits, "float32")
    target_ids = ops.cast(target_ids, "int32")
    nll = _token_cross_entropy(logits, target_ids, float(label_smoothing))
    mask = ops.cast(ops.not_equal(target_ids, PAD_ID), "float32")
    return ops.sum(nll * mask), ops.sum(mask)


def _token_cross_entropy(logits, target_ids, label_smoothing):
    """Per-token (smoothed) cross-entropy [...], with a hand-written gradient.

    Same value as ``-log_softmax(logits)[target]`` (smoothed as above), in few passes over
    the logits, the largest tensor of a step with an 8k vocabulary: one softmax (its largest
    probability gives the normalizer, logsumexp = max logit - log max p, well conditioned as
    max p >= 1 / V), reused by the gradient, softmax - target distribution, where the target's
    share is subtracted at the target positions only (no one-hot tensor). On a 2-core CPU, 150
    ms for a [4096, 8000] forward and backward against 238 with an explicit logsumexp.
    """
    import tensorflow as tf

    shape = tf.shape(logits)
    vocabulary = shape[-1]
    flat_logits = tf.reshape(logits, [-1, vocabulary])
    flat_targets = tf.reshape(target_ids, [-1])

    @tf.custom_gradient
    def cross_entropy(logits):
        probabilities = tf.nn.softmax(logits)
        log_normalizer = tf.reduce_max(logits, axis=-1) - tf.math.log(tf.reduce_max(probabilities, axis=-1))
        loss = log_normalizer - tf.gather(logits, flat_targets, batch_dims=1)
        if label_smoothing:
            mean_logit = tf.reduce_mean(logits, axis=-1)
            loss = (1.0 - label_smoothing) * loss + label_smoothing * (log_normalizer - mean_logit)

        def gradient(upstream):
            upstream = upstream[:, None]
            result = probabilities * upstream
            if label_smoothing:
                result -= (label_smoothing / tf.cast(vocabulary, logits.dtype)) * upstream
            targets = tf.stack([tf.range(tf.shape(flat_targets)[0]), flat_targets], 1)
            return tf.tensor_scatter_nd_sub(result, targets, (1.0 - label_smoothing) * upstream[:, 0])

        return loss, gradient

    return tf.reshape(cross_entropy(flat_logits), shape[:-1])


def count_parameters(model: keras.Model) -> int:
    return int(sum(int(ops.size(weight)) for weight in model.trainable_weights))

