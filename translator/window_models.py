"""The model a recurrent language model replaced ("Why RNNs work"): a multilayer perceptron
that predicts the next token from the last ``window`` tokens only (Bengio et al. 2003's
neural probabilistic language model, without its direct connections).

It has the interface of `translator.language_models.LanguageModel` (both are a `TextModel`),
so the same training (``model.window: N`` in a language-model config; the truncated-BPTT
streams carry the last ``window - 1`` tokens as "state", so a window reaches across batch
boundaries as the recurrent state does), loading and sampling serve both.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from translator.checks import check_positive_int, check_rate
from translator.embeddings import TokenEmbedding
from translator.language_models import TextModel
from translator.models import dtype_policy_of
from translator.special_ids import PAD_ID


@keras.saving.register_keras_serializable(package="translator")
class WindowLanguageModel(TextModel):
    """Embedding of each of the last ``window`` tokens, concatenated -> ``num_layers`` dense
    ReLU layers of ``units`` -> softmax layer over the vocabulary.

    Call: ``model(token_ids, state=None, training=False, return_state=False)`` with int
    [batch, time] returns logits [batch, time, vocabulary_size]: those at position t predict
    token t + 1 from tokens t - window + 1 .. t. ``state`` is ``{"history": int32 [batch,
    window - 1]}``, the tokens before position 0 (None: none, all padding); with
    ``return_state=True`` the state after the last position comes back too, and passed back
    continues the text exactly where it stopped.

    Masking: a window position that reaches before the start of the text (padding, id 0 in the
    history) contributes a zero vector, never a learned padding embedding; real tokens are
    never padding in a contiguous text.
    """

    def __init__(self, vocabulary_size, window=32, embedding_dim=16, units=512, num_layers=2, dropout=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        for name, value in (("vocabulary_size", vocabulary_size), ("window", window),
                            ("embedding_dim", embedding_dim), ("units", units), ("num_layers", num_layers)):
            check_positive_int(name, value)
        check_rate("dropout", dropout)
        self.settings = {"vocabulary_size": vocabulary_size, "window": window, "embedding_dim": embedding_dim,
                         "units": units, "num_layers": num_layers, "dropout": dropout}
        self.window = window
        with dtype_policy_of(self):
            self.embedding = TokenEmbedding(vocabulary_size, embedding_dim, mask_zero=False, name="embedding")
            self.hidden_layers = [keras.layers.Dense(units, activation="relu", name=f"hidden_{index + 1}")
                                  for index in range(num_layers)]
            self.dropout_layer = keras.layers.Dropout(dropout)
            # The softmax layer computes in float32 even under mixed precision.
            self.output_layer = keras.layers.Dense(vocabulary_size, name="output", dtype="float32")
        self.tokenizer = None  # set by `load`
        self._samplers = {}

    @classmethod
    def from_settings(cls, model_config: dict, vocabulary_size: int, dtype: str = "float32"):
        """Build from the ``model:`` section of a config (``window``, ``units``, ``decoder_layers``
        as the number of hidden layers, ``embedding_dim``, ``dropout``)."""
        model = cls(vocabulary_size, window=model_config["window"], embedding_dim=model_config["embedding_dim"],
                    units=model_config["units"], num_layers=model_config["decoder_layers"],
                    dropout=model_config["dropout"], dtype=dtype)
        model.build_for_shapes()
        return model

    def initial_state(self, batch_size):
        return {"history": tf.fill([batch_size, self.window - 1], tf.constant(PAD_ID, tf.int32))}

    def call(self, token_ids, state=None, training=False, return_state=False):
        token_ids = tf.cast(token_ids, tf.int32)
        if state is None:
            state = self.initial_state(tf.shape(token_ids)[0])
        ids = tf.concat([tf.cast(state["history"], tf.int32), token_ids], axis=1)  # [batch, window - 1 + time]
        embedded = self.embedding(ids) * ops.cast(ops.not_equal(ids, PAD_ID), self.compute_dtype)[..., None]
        windows = tf.signal.frame(embedded, self.window, 1, axis=1)  # [batch, time, window, embedding]
        hidden = tf.reshape(windows, tf.concat([tf.shape(windows)[:2], [self.window * self.embedding.embedding_dim]],
                                               0))
        for layer in self.hidden_layers:
            hidden = self.dropout_layer(layer(hidden), training=training)
        logits = self.output_layer(hidden)
        if return_state:
            return logits, {"history": ids[:, tf.shape(ids)[1] - (self.window - 1):]}
        return logits

    def step(self, previous_token_ids, cache, training=False):
        """One token: int [batch] -> (logits [batch, vocabulary], new cache, None), as
        `translator.search.sample` steps a model."""
        logits, cache = self(previous_token_ids[:, None], cache, training=training, return_state=True)
        return logits[:, 0], cache, None
