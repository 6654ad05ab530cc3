"""Vanishing gradients, measured on the toolkit's own layers (the seeds' primer and "Why RNNs
work": a simple RNN forgets what it read long ago; LSTM and GRU gates let the gradient through).

Two measurements, both on a `Classifier` (embedding -> `RecurrentEncoder` -> final state ->
softmax layer) reading fixed-length sequences without padding:

- `gradient_norms_by_distance`: the norm of the gradient of the loss, computed at the last
  step, with respect to the embedded input ``d`` steps before it, averaged over a batch. A
  gradient that shrinks geometrically with ``d`` is the vanishing gradient.
- `first_token_task`: sequences whose label is their first token, followed by ``d`` random
  distractors from the same alphabet. Accuracy above chance (1 / symbols) at distance ``d``
  means the cell carried the first token across ``d`` steps.
"""

from __future__ import annotations

import numpy as np

from translator.special_ids import EOS_ID

FIRST_SYMBOL = EOS_ID + 1  # symbols are ids FIRST_SYMBOL, +1, ...: never padding or a special id


def first_token_task(count: int, distance: int, symbols: int = 8, seed: int = 0):
    """``(token_ids [count, distance + 1] int32, labels [count] int32)``: each row is a random
    symbol followed by ``distance`` random symbols; its label is the index of the first one."""
    generator = np.random.default_rng(seed)
    ids = generator.integers(FIRST_SYMBOL, FIRST_SYMBOL + symbols, size=(count, distance + 1)).astype("int32")
    return ids, ids[:, 0] - FIRST_SYMBOL


def task_classifier(cell: str, symbols: int = 8, units: int = 32, embedding_dim: int = 16):
    """The toolkit's classifier for `first_token_task`: one unidirectional layer of ``cell``
    ("rnn", "lstm" or "gru"), its final state read by the softmax layer."""
    from translator.models.classifiers import Classifier

    model = Classifier(FIRST_SYMBOL + symbols, [str(index) for index in range(symbols)], cell=cell,
                       embedding_dim=embedding_dim, units=units, bidirectional=False, pooling="final")
    model.build_for_shapes()
    return model


def gradient_norms_by_distance(model, token_ids, labels) -> np.ndarray:
    """``norms[d]``: the mean over the batch of || d loss / d x_{T-1-d} ||, for d = 0 .. T-1, where
    x_t is the embedded input at step t and the loss is the cross-entropy of the label,
    predicted from the final state (after step T-1). Rows must hold no padding."""
    import tensorflow as tf

    token_ids = tf.convert_to_tensor(token_ids, tf.int32)
    embedded = tf.convert_to_tensor(model.embedding(token_ids))
    with tf.GradientTape() as tape:
        tape.watch(embedded)
        _, final_states = model.encoder(embedded, mask=tf.ones_like(token_ids, tf.bool), training=False)
        logits = model.output_layer(final_states[-1][0])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            tf.convert_to_tensor(labels, tf.int32), tf.cast(logits, tf.float32)))
    gradients = tape.gradient(loss, embedded)  # [batch, time, embedding]
    norms = tf.reduce_mean(tf.norm(tf.cast(gradients, tf.float32), axis=-1), axis=0)
    return norms.numpy()[::-1]


def train_on_first_token(model, distance: int, symbols: int = 8, examples: int = 4000, epochs: int = 10,
                         batch_size: int = 64, learning_rate: float = 0.003, seed: int = 0) -> float:
    """Train `model` (from `task_classifier`) on `first_token_task` at ``distance`` and return
    its accuracy on 1,000 held-out sequences (chance: 1 / symbols)."""
    import keras

    train_ids, train_labels = first_token_task(examples, distance, symbols, seed)
    test_ids, test_labels = first_token_task(1000, distance, symbols, seed + 1)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train_ids, train_labels, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True)
    predicted = model.predict_ids(test_ids.tolist(), batch_size=256).argmax(axis=1)
    return float(np.mean(predicted == test_labels))
