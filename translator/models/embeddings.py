"""Token embeddings, with an optional tied output projection.

A lookup table from token ids to vectors, as used by every encoder-decoder since
Sutskever et al. (2014), "Sequence to Sequence Learning with Neural Networks".
`TokenEmbedding.attend` reuses the same table as the output projection
(``logits = hidden @ embeddings^T``), the weight tying of Press & Wolf (2017),
"Using the Output Embedding to Improve Language Models", and Inan et al. (2017).

Padding id is always 0.
"""

import keras
from keras import ops

from translator.checks import check_bool, check_positive_int
from translator.special_ids import PAD_ID


@keras.saving.register_keras_serializable(package="translator")
class TokenEmbedding(keras.layers.Layer):
    """Maps token ids to dense vectors; id 0 is padding.

    Args:
        vocabulary_size: number of token ids, including the padding id 0.
        embedding_dim: width of each token vector.
        mask_zero: whether the layer produces a Keras mask (``ids != 0``) for
            the layers after it. Default True. The decoder turns it off for its
            target embedding, because it is causal and ignores padding (see
            `RecurrentDecoder`).
        **kwargs: standard `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        token_ids: integer tensor of any shape, usually [batch, time]. Float
            tensors are cast to int32 (Keras builds saved models with float
            placeholders).

    Returns:
        Float tensor of shape ``token_ids.shape + (embedding_dim,)``.

    Masking:
        Padding ids (0) are looked up like any other id (row 0 of the table is
        a normal trainable row); the layer does not zero them. Instead
        `compute_mask(token_ids)` returns the boolean tensor ``token_ids != 0``
        (True = real token), which Keras attaches to the output and hands to
        the next layer's ``mask`` argument (e.g. `RecurrentEncoder`). With
        ``mask_zero=False`` no mask is produced.

    `attend(hidden)` maps [..., embedding_dim] to [..., vocabulary_size] logits
    through the transposed table (no bias; add one outside).
    """

    def __init__(self, vocabulary_size, embedding_dim, mask_zero=True, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("vocabulary_size", vocabulary_size)
        check_positive_int("embedding_dim", embedding_dim)
        check_bool("mask_zero", mask_zero)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.mask_zero = mask_zero
        # As Keras's Embedding: look up in the stored dtype, then cast the rows only (under
        # mixed precision, autocasting would cast the whole table at every call, and its
        # gradient would be summed into the table in bfloat16).
        self.autocast = False

    def build(self, input_shape=None):
        # The table does not depend on the input shape.
        # N(0, 1), as PyTorch's nn.Embedding, not Keras's default U(-0.05, 0.05): with the
        # small default the recurrent layers barely see their input at first, and a GRU
        # attention model on Multi30k de-en reached validation loss 5.16 after one epoch
        # against 3.78 with N(0, 1) (configs/demo.yaml, 2-core CPU).
        self.embeddings = self.add_weight(
            shape=(self.vocabulary_size, self.embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="embeddings",
        )

    def call(self, token_ids):
        token_ids = _as_integer_ids(token_ids)
        return ops.cast(ops.take(self.embeddings, token_ids, axis=0), self.compute_dtype)

    def compute_mask(self, token_ids, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(_as_integer_ids(token_ids), PAD_ID)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def attend(self, hidden):
        """Logits ``hidden @ embeddings^T``: [..., embedding_dim] -> [..., vocabulary_size]."""
        return ops.matmul(hidden, ops.transpose(ops.cast(self.embeddings, hidden.dtype)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "mask_zero": self.mask_zero,
            }
        )
        return config


def _as_integer_ids(token_ids):
    if keras.backend.is_int_dtype(token_ids.dtype):
        return token_ids
    return ops.cast(token_ids, "int32")
