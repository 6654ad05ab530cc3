"""Search: greedy and beam search invariants, on a hand-built model and on real Seq2Seq models."""

import numpy as np
import pytest
import tensorflow as tf

from translator.decoding.search import (
    GreedyTranslator,
    beam_search,
    greedy_search,
    strip_special,
    vocabulary_top_k,
)

EOS, A, B, C, D = 3, 4, 5, 6, 7


class BigramModel:
    """A hand-built "model" whose next-token probabilities depend only on the previous token.

    From <sos>: A 0.6, B 0.4. After A: C 0.35, D 0.35, <eos> 0.30. After B: <eos> 1.0.
    After C or D: <eos> 1.0. Greedy follows A (0.6) and ends with A C <eos> (0.21), but the
    most probable sequence is B <eos> (0.4).
    """

    def __init__(self):
        table = np.full((8, 8), 1e-9)
        table[2, [A, B]] = [0.6, 0.4]
        table[A, [C, D, EOS]] = [0.35, 0.35, 0.30]
        table[B, EOS] = table[C, EOS] = table[D, EOS] = 1.0
        table[EOS, EOS] = table[0, EOS] = 1.0
        self.log_table = tf.constant(np.log(table / table.sum(1, keepdims=True)), tf.float32)
        self.decoder = self

    def encode(self, source_ids, training=False):
        return {"position": tf.zeros([tf.shape(source_ids)[0], 1])}

    def step(self, previous_ids, cache, training=False):
        return tf.gather(self.log_table, previous_ids), {"position": cache["position"] + 1}, None


def test_beam_search_finds_the_best_sequence_that_greedy_misses():
    model, source = BigramModel(), tf.constant([[9, 9, 9]])
    assert strip_special(greedy_search(model, source).numpy()) == [[A, C]]
    sequences, scores, _ = beam_search(model, source, beam_size=2, length_penalty=0.0)
    best, second = strip_special(sequences[0].numpy())
    assert best == [B] and second in ([A, C], [A, D])  # C and D tie at 0.21
    np.testing.assert_allclose(scores[0, 0].numpy(), np.log(0.4), rtol=1e-5)
    assert scores[0, 0] > scores[0, 1]


def test_beam_size_one_is_greedy_on_the_hand_built_model():
    model, source = BigramModel(), tf.constant([[9, 9]])
    sequences, _, _ = beam_search(model, source, beam_size=1, length_penalty=0.0)
    assert strip_special(sequences[:, 0].numpy()) == strip_special(greedy_search(model, source).numpy())


def random_model(**settings):
    import keras

    from translator.models.seq2seq import Seq2Seq

    keras.utils.set_random_seed(3)
    return Seq2Seq.from_settings({"embedding_dim": 16, "units": 24, "attention": "bahdanau", **settings}, 30, 30)


def sources(count=12, seed=0):
    generator = np.random.RandomState(seed)
    rows = [generator.randint(4, 30, size=generator.randint(1, 9)).tolist() for _ in range(count)]
    width = max(map(len, rows))
    return np.array([row + [0] * (width - len(row)) for row in rows], dtype=np.int32)


@pytest.mark.parametrize("settings", [{"attention": "bahdanau"}, {"attention": "luong_general", "cell": "gru"},
                                      {"attention": None, "encoder_layers": 2, "decoder_layers": 2}])
def test_beam_size_one_equals_greedy_on_real_models(settings):
    model, batch = random_model(**settings), sources()
    greedy = strip_special(greedy_search(model, batch, 1.5, 5).numpy())
    sequences, _, _ = beam_search(model, batch, beam_size=1, length_penalty=0.6, max_length_ratio=1.5,
                                  max_length_offset=5)
    assert strip_special(sequences[:, 0].numpy()) == greedy


def test_n_best_lists_are_sorted_by_score_and_end_with_eos():
    model, batch = random_model(), sources()
    sequences, scores, _ = beam_search(model, batch, beam_size=4)
    scores = scores.numpy()
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    for row in sequences.numpy().reshape(-1, sequences.shape[-1]):
        real = row[row != 0]
        assert real[-1] == EOS and (real[:-1] != EOS).all()


@pytest.mark.parametrize("beam_size", [0, 1, 4])  # 0: greedy_search, which drops finished rows
def test_the_batch_never_changes_a_translation(beam_size):
    model, batch = random_model(), sources(16, seed=1)

    def translate(rows):
        if beam_size == 0:
            return strip_special(greedy_search(model, rows).numpy())
        sequences, _, _ = beam_search(model, rows, beam_size=beam_size)
        return strip_special(sequences[:, 0].numpy())

    together = translate(batch)
    alone = [translate(row[None, : max(1, int((row != 0).sum()))])[0] for row in batch]
    reordered = translate(batch[::-1])[::-1]
    assert together == alone == reordered


def test_done_sentences_leave_the_beam_with_their_whole_result():
    """Sentences that are done leave the batch on the way: every n-best list, score and
    attention matrix is the one the sentence gets alone, and the outputs have one row per
    source, padded to the steps the batch took."""
    model, batch = random_model(), sources(16, seed=4)
    search = tf.function(lambda ids: beam_search(model, ids, beam_size=3, return_attention=True))
    sequences, scores, attention = (x.numpy() for x in search(batch))
    steps = [int((row != 0).sum()) for row in sequences[:, 0]]
    assert len(set(steps)) > 3 and sequences.shape[:2] == (16, 3) and attention.shape[:3] == sequences.shape
    for index, row in enumerate(batch):
        alone = [x.numpy()[0] for x in search(row[None, : max(1, int((row != 0).sum()))])]
        time, source_time = alone[0].shape[1], alone[2].shape[2]
        np.testing.assert_array_equal(sequences[index, :, :time], alone[0])
        assert not sequences[index, :, time:].any()
        np.testing.assert_allclose(scores[index], alone[1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(attention[index, :, :time, :source_time], alone[2], atol=1e-5)


@pytest.mark.parametrize("vocabulary", [8000, 8003, 4000])  # 4000 < 8 * 2k blocks: tf.math.top_k itself
def test_vocabulary_top_k_is_top_k_ties_included(vocabulary):
    generator = np.random.default_rng(vocabulary)
    logits = np.round(generator.normal(size=(40, vocabulary)) * 2) / 2  # many ties
    logits[0, :] = 1.0  # all tied: the lowest indices win
    for k in (1, 10):
        expected = tf.math.top_k(logits.astype(np.float32), k=k)
        values, indices = vocabulary_top_k(tf.constant(logits, tf.float32), k)
        np.testing.assert_array_equal(values.numpy(), expected.values.numpy())
        np.testing.assert_array_equal(indices.numpy(), expected.indices.numpy())
    assert indices.numpy()[0].tolist() == list(range(10))


def test_greedy_scores_are_the_log_probabilities_of_its_output():
    model, batch = random_model(attention=None), sources(24, seed=2)
    sequences, scores = tf.function(lambda ids: greedy_search(model, ids, 1.5, 5, return_scores=True))(batch)
    _, beam_scores, _ = beam_search(model, batch, beam_size=1, length_penalty=0.0, max_length_ratio=1.5,
                                    max_length_offset=5)
    np.testing.assert_allclose(scores.numpy(), beam_scores.numpy()[:, 0], rtol=1e-4, atol=1e-4)
    # Sentences end at different steps, so rows leave the batch on the way: the output is
    # still one row per source, 0 after the first <eos>.
    lengths = (sequences.numpy() != 0).sum(axis=1)
    assert len(set(lengths)) > 2 and sequences.shape[0] == len(batch)


def test_greedy_respects_the_length_limit_of_each_sentence():
    class Endless(BigramModel):
        def step(self, previous_ids, cache, training=False):  # never ends on its own
            logits = tf.one_hot(tf.fill(tf.shape(previous_ids), A), 8) * 10.0
            return logits, cache, None

    endless = Endless()
    endless.decoder = endless
    source = tf.constant([[9, 0, 0, 0], [9, 9, 9, 9]])
    outputs = greedy_search(endless, source, max_length_ratio=1.0, max_length_offset=2).numpy()
    assert [list(row[row != 0]) for row in outputs] == [[A, A, EOS], [A] * 5 + [EOS]]


def test_greedy_translator_compiles_once_for_any_shape():
    model = random_model()
    translator = GreedyTranslator(model)
    translator(sources(3))
    translator(sources(7, seed=5))
    assert translator._search.experimental_get_tracing_count() == 1
