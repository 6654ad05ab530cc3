"""Writes the golden models and outputs that tests/test_golden.py holds the code to.

Run once, before a change that claims to keep every output (a restructuring):

    python tests/golden/make_golden.py

It trains five tiny models on generated tasks (a few seconds each; their predictions are
confident, so the outputs do not hang on rounding), saves them as ``*.keras`` beside this file
and writes ``expected.json``: greedy and beam-5 translations with their scores, teacher-forcing
loss and gradient norm, a language-model sample with a fixed seed, and a classifier's
probabilities. Rerunning it after a change would only record the new behaviour: the point of
the files is that they were written by the code before.
"""

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from translator.decoding.search import beam_search, greedy_search
from translator.models.classifiers import Classifier, classification_loss
from translator.models.language_models import LanguageModel
from translator.models.seq2seq import Seq2Seq, computing_in, sequence_loss
from translator.special_ids import EOS_ID, PAD_ID, SOS_ID

HERE = Path(__file__).resolve().parent
VOCABULARY = 16  # ids 4..15 are "words"
TRANSLATION_MODELS = {
    # Sutskever et al.: deep LSTM, no attention, reversed source (the whole-sequence path).
    "lstm_plain": dict(cell="lstm", embedding_dim=16, units=32, encoder_layers=2, decoder_layers=2,
                       reverse_source=True, dropout=0.1),
    # Bahdanau + Cho's context at every step, bidirectional encoder through bridges.
    "lstm_bahdanau": dict(cell="lstm", embedding_dim=16, units=32, encoder_layers=2, decoder_layers=2,
                          bidirectional=True, attention="bahdanau", feed_context=True, dropout=0.1),
    # The recipe's shape: BiGRU (2 x 16) + Luong general, input feeding, tied embeddings.
    "gru_luong": dict(cell="gru", embedding_dim=16, units=32, encoder_units=16, bidirectional=True,
                      attention="luong_general", tie_embeddings=True, dropout=0.1),
}


def task(rng, count):
    """Source: 2-9 random words; target: the words reversed, each word w mapped to 19 - w."""
    pairs = []
    for _ in range(count):
        words = rng.integers(4, VOCABULARY, size=rng.integers(2, 10)).tolist()
        pairs.append((words, [VOCABULARY + 3 - w for w in reversed(words)]))
    return pairs


def pad(rows):
    width = max(len(row) for row in rows)
    return np.array([row + [PAD_ID] * (width - len(row)) for row in rows], dtype=np.int32)


def teacher_forcing_batch(pairs):
    source = pad([s for s, _ in pairs])
    target_input = pad([[SOS_ID] + t for _, t in pairs])
    target_output = pad([t + [EOS_ID] for _, t in pairs])
    return source, target_input, target_output


def loss_and_gradient_norm(model, batch):
    """Teacher forcing on the training path (``training=True``) of a float32 copy without
    dropout: the label-smoothed loss and the gradients' global norm."""
    config = {**model.get_config(), "dtype": "float32", "dropout": 0.0}
    copy = type(model).from_config(config)
    copy.set_weights([ops.cast(weight, "float32") for weight in model.get_weights()])
    source, target_input, target_output = batch
    with tf.GradientTape() as tape:
        mask = ops.not_equal(target_output, PAD_ID)
        logits = copy((source, target_input), training=True, output_mask=mask)
        total, count = sequence_loss(logits, tf.boolean_mask(target_output, mask), label_smoothing=0.1)
        loss = total / count
    gradients = tape.gradient(loss, copy.trainable_variables)
    return float(loss), float(tf.linalg.global_norm(gradients))


def train_translation(name, settings, rng):
    keras.utils.set_random_seed(1234)
    model = Seq2Seq(VOCABULARY, VOCABULARY, dtype="mixed_bfloat16", **settings)
    model.build_for_shapes()
    optimizer = keras.optimizers.Adam(0.01)
    training_pairs = task(rng, 3000)

    @tf.function
    def train_step(source, target_input, target_output):
        with tf.GradientTape() as tape:
            mask = ops.not_equal(target_output, PAD_ID)
            logits = model((source, target_input), training=True, output_mask=mask)
            total, count = sequence_loss(logits, tf.boolean_mask(target_output, mask))
            loss = total / count
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    for _epoch in range(6):
        for start in range(0, len(training_pairs), 64):
            loss = train_step(*teacher_forcing_batch(training_pairs[start:start + 64]))
    print(f"{name}: training loss {float(loss):.4f}")
    model.save(HERE / f"{name}.keras")
    return model


def held_out_pairs():
    return task(np.random.default_rng(99), 40)


def translation_outputs(model, pairs):
    decoding = computing_in(model, "float32")  # a fused float32 copy, as `Translator.load` makes
    source = tf.constant(pad([s for s, _ in pairs]))
    greedy, greedy_scores = greedy_search(decoding, source, return_scores=True)
    beams, beam_scores, _ = beam_search(decoding, source, beam_size=5, length_penalty=0.6)
    loss, norm = loss_and_gradient_norm(model, teacher_forcing_batch(pairs))
    return {
        "sources": [s for s, _ in pairs],
        "greedy": greedy.numpy().tolist(), "greedy_scores": greedy_scores.numpy().tolist(),
        "beam5": beams.numpy().tolist(), "beam5_scores": beam_scores.numpy().tolist(),
        "teacher_forcing_loss": loss, "gradient_norm": norm,
    }


def train_language_model(rng):
    """A 2-layer LSTM on a counting pattern with noise: 4 5 6 .. 15 4 5 .., a random word now and then."""
    keras.utils.set_random_seed(1234)
    model = LanguageModel(VOCABULARY, cell="lstm", embedding_dim=16, units=32, num_layers=2,
                          dtype="mixed_bfloat16")
    model.build_for_shapes()
    stream = [4 + (i % 12) if rng.random() > 0.1 else int(rng.integers(4, VOCABULARY)) for i in range(64 * 41)]
    windows = np.array(stream, dtype=np.int32).reshape(64, 41)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(windows[:, :-1], windows[:, 1:], epochs=60, batch_size=16, verbose=0)
    model.save(HERE / "language_model.keras")
    return model


def language_model_outputs(model):
    """40 tokens sampled (temperature 1, seed [7, 11]) after two primes by the fused float32 copy."""
    decoding = computing_in(model, "float32")
    prime = tf.constant([[4, 5, 6], [10, 11, 12]], tf.int32)
    sample = decoding.sample_ids(prime, tf.constant(40), tf.constant(1.0), tf.constant(0),
                                 tf.constant([7, 11], tf.int32))
    return {"sample": sample.numpy().tolist()}


def train_classifier(rng):
    """Three classes: does the text hold more 4s, more 5s, or neither (with masking-relevant padding)."""
    keras.utils.set_random_seed(1234)
    model = Classifier(VOCABULARY, ["fours", "fives", "neither"], cell="gru", embedding_dim=16, units=16,
                       pooling="attention")
    model.build_for_shapes()

    def example():
        words = rng.integers(4, VOCABULARY, size=rng.integers(1, 12)).tolist()
        fours, fives = words.count(4), words.count(5)
        return words, 0 if fours > fives else 1 if fives > fours else 2

    examples = [example() for _ in range(3000)]
    optimizer = keras.optimizers.Adam(0.01)

    @tf.function
    def train_step(ids, labels):
        with tf.GradientTape() as tape:
            loss = ops.mean(classification_loss(model(ids, training=True), labels))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    for _epoch in range(8):
        for start in range(0, len(examples), 64):
            chunk = examples[start:start + 64]
            loss = train_step(pad([ids for ids, _ in chunk]), np.array([label for _, label in chunk], np.int32))
    print(f"classifier: training loss {float(loss):.4f}")
    model.save(HERE / "classifier.keras")
    return model, [example()[0] for _ in range(40)] + [[]]


def classifier_outputs(model, texts):
    return {"texts": texts, "probabilities": model.predict_ids(texts).tolist()}


def main():
    rng = np.random.default_rng(1234)
    expected = {}
    for name, settings in TRANSLATION_MODELS.items():
        model = train_translation(name, settings, rng)
        expected[name] = translation_outputs(model, held_out_pairs())
    expected["language_model"] = language_model_outputs(train_language_model(rng))
    expected["classifier"] = classifier_outputs(*train_classifier(rng))
    (HERE / "expected.json").write_text(json.dumps(expected) + "\n", encoding="utf-8")
    print(f"wrote {HERE}/expected.json")


if __name__ == "__main__":
    main()
