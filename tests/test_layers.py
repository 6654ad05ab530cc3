"""Tests of the recurrent layer library: embeddings, encoder, attention, decoder."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from translator.models import recurrence
from translator.models.attention import BahdanauAttention, LuongAttention, masked_softmax
from translator.models.decoders import RecurrentDecoder
from translator.models.embeddings import TokenEmbedding
from translator.models.encoders import RecurrentEncoder, reverse_real_tokens

SOURCE_VOCABULARY = 13
TARGET_VOCABULARY = 17
EMBEDDING_DIM = 6
UNITS = 8

# Two source sentences of 5 and 3 real tokens, and two targets of 5 and 3 real tokens.
SOURCE_TOKENS = [[3, 4, 5, 6, 7], [8, 9, 10]]
TARGET_TOKENS = [[1, 4, 5, 6, 2], [1, 7, 8]]


def pad(rows, length):
    ids = np.zeros((len(rows), length), dtype="int32")
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
    return ids


def numpy(x):
    return ops.convert_to_numpy(x)


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(1234)


def encode(cell="lstm", num_layers=1, bidirectional=False, source_length=7, **encoder_kwargs):
    """Embeds and encodes SOURCE_TOKENS; returns (embedding, encoder, ids, outputs, states)."""
    embedding = TokenEmbedding(SOURCE_VOCABULARY, EMBEDDING_DIM)
    encoder = RecurrentEncoder(
        cell, UNITS, num_layers=num_layers, bidirectional=bidirectional, **encoder_kwargs
    )
    ids = pad(SOURCE_TOKENS, source_length)
    outputs, states = encoder(embedding(ids), mask=ids != 0)
    return embedding, encoder, ids, outputs, states


# ---------------------------------------------------------------------- embeddings


def test_token_embedding_mask_shape_and_attend():
    embedding = TokenEmbedding(SOURCE_VOCABULARY, EMBEDDING_DIM)
    ids = pad(SOURCE_TOKENS, 6)
    vectors = embedding(ids)
    assert tuple(vectors.shape) == (2, 6, EMBEDDING_DIM)
    np.testing.assert_array_equal(numpy(embedding.compute_mask(ids)), ids != 0)
    table = embedding.embeddings.numpy()
    np.testing.assert_allclose(numpy(vectors), table[ids], atol=0)
    logits = numpy(embedding.attend(vectors))
    assert logits.shape == (2, 6, SOURCE_VOCABULARY)
    np.testing.assert_allclose(logits, table[ids] @ table.T, rtol=1e-5, atol=1e-6)
    assert TokenEmbedding(5, 3, mask_zero=False).compute_mask(ids) is None


def test_embedding_mask_reaches_the_encoder_automatically():
    embedding = TokenEmbedding(SOURCE_VOCABULARY, EMBEDDING_DIM)
    encoder = RecurrentEncoder("gru", UNITS)
    ids = pad(SOURCE_TOKENS, 7)
    implicit_outputs, implicit_states = encoder(embedding(ids))
    explicit_outputs, explicit_states = encoder(embedding(ids), mask=ids != 0)
    np.testing.assert_allclose(numpy(implicit_outputs), numpy(explicit_outputs), atol=1e-6)
    np.testing.assert_allclose(
        numpy(implicit_states[0][0]), numpy(explicit_states[0][0]), atol=1e-6
    )
    assert np.all(numpy(implicit_outputs)[1, 3:] == 0)


# ---------------------------------------------------------------------- reverse_real_tokens


def test_reverse_real_tokens_on_ids():
    ids = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 2], [11, 0, 0, 0, 0]], dtype="int32")
    expected = np.array([[5, 4, 3, 0, 0], [2, 9, 8, 7, 6], [11, 0, 0, 0, 0]])
    np.testing.assert_array_equal(numpy(reverse_real_tokens(ids, ids != 0)), expected)


def test_reverse_real_tokens_on_embeddings_and_under_tf_function():
    ids = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 2]], dtype="int32")
    embedding = TokenEmbedding(SOURCE_VOCABULARY, EMBEDDING_DIM)
    reversed_ids = numpy(reverse_real_tokens(ids, ids != 0))
    np.testing.assert_array_equal(
        numpy(reverse_real_tokens(embedding(ids), ids != 0)), numpy(embedding(reversed_ids))
    )
    traced = tf.function(
        reverse_real_tokens,
        input_signature=[
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None, None], tf.bool),
        ],
    )
    np.testing.assert_array_equal(numpy(traced(ids, ids != 0)), reversed_ids)


# ---------------------------------------------------------------------- encoder


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_encoder_shapes_and_zero_outputs_at_padding(cell, bidirectional):
    _, _, ids, outputs, states = encode(cell, num_layers=2, bidirectional=bidirectional)
    width = UNITS * (2 if bidirectional else 1)
    outputs = numpy(outputs)
    assert outputs.shape == (2, 7, width)
    assert np.all(outputs[ids == 0] == 0.0)
    assert np.all(np.abs(outputs[ids != 0]).sum(axis=-1) > 0)
    assert len(states) == 2
    for layer_states in states:
        assert len(layer_states) == (2 if cell == "lstm" else 1)
        for state in layer_states:
            assert tuple(state.shape) == (2, width)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(
    "num_layers, bidirectional, reverse_source",
    [(1, False, False), (2, False, True), (2, True, False)],
    ids=["single", "stacked-reversed", "stacked-bidirectional"],
)
def test_encoder_padding_length_invariance(cell, num_layers, bidirectional, reverse_source):
    embedding = TokenEmbedding(SOURCE_VOCABULARY, EMBEDDING_DIM)
    encoder = RecurrentEncoder(
        cell, UNITS, num_layers, bidirectional=bidirectional, reverse_source=reverse_source
    )
    results = {}
    for length in (7, 12):
        ids = pad(SOURCE_TOKENS, length)
        results[length] = encoder(embedding(ids), mask=ids != 0)
    (short_outputs, short_states), (long_outputs, long_states) = results[7], results[12]
    np.testing.assert_allclose(
        numpy(long_outputs)[:, :7], numpy(short_outputs), rtol=1e-5, atol=1e-6
    )
    assert np.all(numpy(long_outputs)[:, 7:] == 0)
    for short_layer, long_layer in zip(short_states, long_states):
        for short, long in zip(short_layer, long_layer):
            np.testing.assert_allclose(numpy(long), numpy(short), rtol=1e-5, atol=1e-6)


def test_encoder_reverse_source_equals_reversing_the_ids_first():
    embedding = TokenEmbedding(SOURCE_VOCABULARY, EMBEDDING_DIM)
    plain = RecurrentEncoder("lstm", UNITS)
    reversing = RecurrentEncoder("lstm", UNITS, reverse_source=True)
    ids = pad(SOURCE_TOKENS, 6)
    reversing(embedding(ids), mask=ids != 0)
    plain(embedding(ids), mask=ids != 0)
    plain.set_weights(reversing.get_weights())
    reversed_ids = numpy(reverse_real_tokens(ids, ids != 0))
    expected_outputs, expected_states = plain(embedding(reversed_ids), mask=reversed_ids != 0)
    outputs, states = reversing(embedding(ids), mask=ids != 0)
    np.testing.assert_allclose(numpy(outputs), numpy(expected_outputs), atol=1e-6)
    np.testing.assert_allclose(numpy(states[0][0]), numpy(expected_states[0][0]), atol=1e-6)


# ---------------------------------------------------------------------- attention


def make_attention(kind, units):
    if kind == "bahdanau":
        return BahdanauAttention(units)
    return LuongAttention(units, score=kind.split("_")[1])


@pytest.mark.parametrize("kind", ["luong_dot", "luong_general", "bahdanau"])
def test_attention_weights_are_a_distribution_over_real_positions(kind):
    rng = np.random.default_rng(0)
    memory = rng.normal(size=(3, 6, UNITS)).astype("float32")
    query = rng.normal(size=(3, UNITS)).astype("float32")
    memory_mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], bool)
    attention = make_attention(kind, UNITS)
    context, weights = attention(query, memory, memory_mask)
    context, weights = numpy(context), numpy(weights)
    assert weights.shape == (3, 6) and context.shape == (3, UNITS)
    assert np.all(weights[~memory_mask] == 0.0)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-6)
    assert np.all(weights[memory_mask] > 0)
    np.testing.assert_allclose(context, np.einsum("bs,bsm->bm", weights, memory), atol=1e-6)
    # The precomputed memory projection gives the same result.
    projected = attention.precompute(memory)
    context_again, weights_again = attention(query, memory, memory_mask, projected_memory=projected)
    np.testing.assert_allclose(numpy(weights_again), weights, atol=1e-7)
    np.testing.assert_allclose(numpy(context_again), context, atol=1e-7)
    # Garbage in the padded memory rows does not matter.
    noisy_memory = memory.copy()
    noisy_memory[~memory_mask] = 1e3
    _, noisy_weights = attention(query, noisy_memory, memory_mask)
    np.testing.assert_allclose(numpy(noisy_weights), weights, atol=1e-6)


def test_luong_dot_scores_and_fully_masked_row():
    query = np.array([[1.0, 0.0], [0.0, 0.0]], "float32")
    memory = np.array([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]], "float32")
    mask = np.array([[True, True], [False, False]])
    context, weights = LuongAttention(2, score="dot")(query, memory, mask)
    expected = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()
    np.testing.assert_allclose(numpy(weights)[0], expected, rtol=1e-6)
    assert np.all(numpy(weights)[1] == 0) and np.all(numpy(context)[1] == 0)
    assert not np.any(np.isnan(numpy(masked_softmax(np.zeros((1, 3), "float32"), [[0, 0, 0]]))))


def test_luong_dot_rejects_mismatched_widths():
    attention = LuongAttention(UNITS, score="dot")
    with pytest.raises(ValueError, match="memory width"):
        attention(np.zeros((2, UNITS), "float32"), np.zeros((2, 4, 2 * UNITS), "float32"))
    with pytest.raises(ValueError, match="query"):
        LuongAttention(UNITS, score="general")(
            np.zeros((2, UNITS + 1), "float32"), np.zeros((2, 4, 3), "float32")
        )


# ---------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: RecurrentEncoder("lstn", 8),
            "cell must be one of 'lstm', 'gru', 'rnn'; got 'lstn'",
        ),
        (lambda: RecurrentEncoder("gru", 0), "units must be a positive integer; got 0"),
        (lambda: RecurrentEncoder("gru", 8, num_layers=2.0), "num_layers must be a positive"),
        (lambda: RecurrentEncoder("gru", 8, dropout=1.0), r"dropout must be a number in \[0, 1\)"),
        (lambda: RecurrentEncoder("gru", 8, bidirectional="yes"), "bidirectional must be True"),
        (lambda: TokenEmbedding(0, 4), "vocabulary_size must be a positive integer; got 0"),
        (lambda: LuongAttention(8, score="concat"), "score must be one of 'dot', 'general'"),
        (lambda: BahdanauAttention(-1), "units must be a positive integer; got -1"),
        (
            lambda: RecurrentDecoder(10, 4, "lstm", 8, attention="luong"),
            "attention must be one of None, 'luong_dot', 'luong_general', 'bahdanau'; got 'luong'",
        ),
        (lambda: RecurrentDecoder(10, 4, "lstm", 8, tie_embeddings=1), "tie_embeddings must be"),
    ],
)
def test_constructor_arguments_are_validated(build, message):
    # A value of the wrong type (a flag given as 1 or "yes") is a TypeError, a bad value a ValueError.
    with pytest.raises((ValueError, TypeError), match=message) as error:
        build()
    assert error.type is (TypeError if "True or False" in str(error.value) else ValueError)


# ---------------------------------------------------------------------- decoder

DECODER_CONFIGS = {
    "plain": dict(attention=None),
    "feed_context": dict(attention=None, feed_context=True, tie_embeddings=True),
    "luong_dot": dict(attention="luong_dot"),
    "luong_general": dict(attention="luong_general", tie_embeddings=True),
    "bahdanau": dict(attention="bahdanau", feed_context=True),
}


def build_decoder(cell, config_name, num_layers=2, dropout=0.0, source_length=7):
    """An encoder + decoder pair and the decoder's initial cache for SOURCE_TOKENS."""
    config = DECODER_CONFIGS[config_name]
    # luong_dot needs memory as wide as the decoder: one direction of UNITS.
    bidirectional = config["attention"] != "luong_dot"
    _, encoder, ids, outputs, states = encode(
        cell, num_layers=num_layers, bidirectional=bidirectional, source_length=source_length
    )
    decoder = RecurrentDecoder(
        TARGET_VOCABULARY, EMBEDDING_DIM, cell, UNITS, num_layers, dropout=dropout, **config
    )
    cache = decoder.initial_state(states, outputs, ids != 0)
    return encoder, decoder, cache, ids


def run_steps(decoder, target_ids, cache):
    logits, weights = [], []
    for time in range(target_ids.shape[1]):
        step_logits, cache, step_weights = decoder.step(target_ids[:, time], cache)
        logits.append(numpy(step_logits))
        weights.append(None if step_weights is None else numpy(step_weights))
    stacked_weights = None if weights[0] is None else np.stack(weights, axis=1)
    return np.stack(logits, axis=1), stacked_weights, cache


@pytest.mark.parametrize("config_name", list(DECODER_CONFIGS))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_decoder_full_sequence_equals_repeated_steps(cell, config_name):
    _, decoder, cache, source_ids = build_decoder(cell, config_name)
    target_ids = pad(TARGET_TOKENS, 5)
    logits, weights = decoder(target_ids, cache, return_attention=True)
    assert tuple(logits.shape) == (2, 5, TARGET_VOCABULARY)
    step_logits, step_weights, _ = run_steps(decoder, target_ids, cache)
    assert np.abs(numpy(logits) - step_logits).max() < 1e-5
    if DECODER_CONFIGS[config_name]["attention"] is None:
        assert weights is None and step_weights is None
    else:
        assert tuple(weights.shape) == (2, 5, source_ids.shape[1])
        assert np.abs(numpy(weights) - step_weights).max() < 1e-5
        # Source padding gets exactly zero weight at every target step.
        padding = np.broadcast_to((source_ids == 0)[:, None, :], weights.shape)
        assert np.all(numpy(weights)[padding] == 0.0)
        np.testing.assert_allclose(numpy(weights).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("config_name", ["plain", "luong_general", "bahdanau"])
def test_output_mask_gives_the_chosen_positions_logits(config_name):
    """``output_mask`` (a training loss over real tokens) returns the logits of the True
    positions only, in row-major order, with the numbers of the full call."""
    _, decoder, cache, _ = build_decoder("lstm", config_name)
    target_ids = pad(TARGET_TOKENS, 5)
    real = target_ids != 0
    full = numpy(decoder(target_ids, cache))
    chosen = numpy(decoder(target_ids, cache, output_mask=real))
    assert chosen.shape == (real.sum(), TARGET_VOCABULARY)
    np.testing.assert_allclose(chosen, full[real], atol=1e-6)


def test_take_positions_gives_boolean_masks_values_and_gradients():
    values = tf.constant(np.random.default_rng(4).normal(size=(3, 4, 5)), tf.float32)
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    upstream = tf.constant(np.random.default_rng(5).normal(size=(mask.sum(), 5)), tf.float32)
    results = []
    for take in (recurrence.take_positions, tf.boolean_mask):
        with tf.GradientTape() as tape:
            tape.watch(values)
            taken = take(values, mask)
            loss = tf.reduce_sum(taken * upstream)
        results.append((numpy(taken), numpy(ops.convert_to_tensor(tape.gradient(loss, values)))))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("config_name", ["plain", "luong_general", "bahdanau"])
def test_decoder_target_padding_does_not_change_real_logits(config_name):
    _, decoder, cache, _ = build_decoder("gru", config_name)
    short = numpy(decoder(pad(TARGET_TOKENS, 5), cache))
    long = numpy(decoder(pad(TARGET_TOKENS, 9), cache))
    for row, tokens in enumerate(TARGET_TOKENS):
        np.testing.assert_allclose(
            long[row, : len(tokens)], short[row, : len(tokens)], rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("config_name", ["feed_context", "luong_dot", "bahdanau"])
def test_decoder_source_padding_does_not_change_logits(config_name):
    target_ids = pad(TARGET_TOKENS, 5)
    logits = {}
    for length in (7, 12):
        keras.utils.set_random_seed(7)  # same weights for both lengths
        _, decoder, cache, _ = build_decoder("lstm", config_name, source_length=length)
        logits[length] = numpy(decoder(target_ids, cache))
    np.testing.assert_allclose(logits[12], logits[7], rtol=1e-5, atol=1e-6)


def with_large_signals(decoder, cache):
    """Larger embeddings and memory than at initialisation, so attention weights differ."""
    rng = np.random.default_rng(3)
    table = decoder.embedding.embeddings
    table.assign(rng.normal(size=table.shape).astype("float32"))
    memory = rng.normal(size=cache["memory"].shape).astype("float32")
    return dict(cache, memory=memory, projected_memory=decoder.attention_layer.precompute(memory))


def changes(first, second):
    return np.abs(numpy(first) - numpy(second)).max() > 1e-4


def test_decoder_attention_timing_input_feeding_and_context():
    """Bahdanau attends with s_{t-1}, Luong with s_t and feeds h~_{t-1}; R reaches the logits."""
    target_ids = pad(TARGET_TOKENS, 5)
    other_first = target_ids.copy()
    other_first[:, 0] = 9

    _, decoder, cache, _ = build_decoder("gru", "bahdanau")
    cache = with_large_signals(decoder, cache)
    _, weights = decoder(target_ids, cache, return_attention=True)
    _, other_weights = decoder(other_first, cache, return_attention=True)
    np.testing.assert_array_equal(numpy(other_weights)[:, 0], numpy(weights)[:, 0])  # s_0 only
    assert changes(other_weights[:, 1], weights[:, 1])  # s_1 depends on y_0
    other_context = dict(cache, encoder_context=cache["encoder_context"] + 1.0)
    first_logits = decoder.step(target_ids[:, 0], cache)[0]
    assert changes(decoder.step(target_ids[:, 0], other_context)[0], first_logits)

    _, decoder, cache, _ = build_decoder("gru", "luong_general")
    cache = with_large_signals(decoder, cache)
    _, weights = decoder(target_ids, cache, return_attention=True)
    _, other_weights = decoder(other_first, cache, return_attention=True)
    assert changes(other_weights[:, 0], weights[:, 0])  # s_1 depends on y_0
    fed = dict(cache, attentional_vector=cache["attentional_vector"] + 1.0)
    first_logits = decoder.step(target_ids[:, 0], cache)[0]
    assert changes(decoder.step(target_ids[:, 0], fed)[0], first_logits)


@pytest.mark.parametrize("config_name", ["bahdanau", "feed_context"])
def test_decoder_step_is_traceable_and_cache_is_batch_major(config_name):
    _, decoder, cache, _ = build_decoder("lstm", config_name)
    previous = np.array([1, 1], dtype="int32")
    eager_logits, _, _ = decoder.step(previous, cache)
    traced_step = tf.function(decoder.step)
    logits, new_cache, weights = traced_step(previous, cache)
    np.testing.assert_allclose(numpy(logits), numpy(eager_logits), atol=1e-5)
    assert set(new_cache) == set(cache)
    for key, value in cache.items():
        assert value.shape[0] == 2, key
        assert new_cache[key].shape == value.shape, key
    # Reordering every cache entry along axis 0 (beam search) reorders the results.
    order = np.array([1, 0, 1], dtype="int32")
    reordered = {key: ops.take(value, order, axis=0) for key, value in cache.items()}
    reordered_logits, _, reordered_weights = traced_step(ops.take(previous, order), reordered)
    np.testing.assert_allclose(numpy(reordered_logits), numpy(logits)[order], atol=1e-5)
    if weights is not None:
        np.testing.assert_allclose(numpy(reordered_weights), numpy(weights)[order], atol=1e-6)
    # The teacher-forcing call traces with an unknown target length.
    traced_call = tf.function(
        lambda ids: decoder(ids, cache),
        input_signature=[tf.TensorSpec([2, None], tf.int32)],
    )
    for length in (5, 8):
        target_ids = pad(TARGET_TOKENS, length)
        np.testing.assert_allclose(
            numpy(traced_call(target_ids)), numpy(decoder(target_ids, cache)), atol=1e-5
        )


def test_decoder_initial_state_copies_or_bridges():
    # Same depth, cell and width: the encoder's states are copied.
    _, _, _, _, states = encode("lstm", num_layers=2)
    decoder = RecurrentDecoder(TARGET_VOCABULARY, EMBEDDING_DIM, "lstm", UNITS, num_layers=2)
    cache = decoder.initial_state(states)
    np.testing.assert_array_equal(numpy(cache["hidden_state_1"]), numpy(states[1][0]))
    np.testing.assert_array_equal(numpy(cache["cell_state_0"]), numpy(states[0][1]))
    assert not any(layer.built for layer in decoder.bridge_layers)
    # feed_context: R is the top encoder layer's final h.
    decoder = RecurrentDecoder(
        TARGET_VOCABULARY, EMBEDDING_DIM, "lstm", UNITS, num_layers=2, feed_context=True
    )
    cache = decoder.initial_state(states)
    np.testing.assert_array_equal(numpy(cache["encoder_context"]), numpy(states[-1][0]))
    # A one-layer bidirectional GRU encoder feeding a two-layer LSTM decoder: bridged.
    _, _, _, _, states = encode("gru", num_layers=1, bidirectional=True)
    decoder = RecurrentDecoder(TARGET_VOCABULARY, EMBEDDING_DIM, "lstm", UNITS, num_layers=2)
    cache = decoder.initial_state(states)
    assert sorted(cache) == ["cell_state_0", "cell_state_1", "hidden_state_0", "hidden_state_1"]
    assert all(tuple(value.shape) == (2, UNITS) for value in cache.values())
    assert all(layer.built for layer in decoder.bridge_layers)
    assert np.all(np.abs(numpy(cache["hidden_state_1"])) <= 1.0)  # tanh
    # Without an encoder (a language model): zero states of the given batch size.
    decoder = RecurrentDecoder(TARGET_VOCABULARY, EMBEDDING_DIM, "gru", UNITS)
    cache = decoder.initial_state(batch_size=3)
    assert np.all(numpy(cache["hidden_state_0"]) == 0) and cache["hidden_state_0"].shape[0] == 3
    assert tuple(decoder(pad(TARGET_TOKENS + [[5]], 6), cache).shape) == (3, 6, TARGET_VOCABULARY)


def test_decoder_dropout_only_when_training():
    _, decoder, cache, _ = build_decoder("lstm", "luong_general", dropout=0.5)
    target_ids = pad(TARGET_TOKENS, 5)
    inference = numpy(decoder(target_ids, cache))
    np.testing.assert_array_equal(numpy(decoder(target_ids, cache, training=False)), inference)
    step_logits, _, _ = run_steps(decoder, target_ids, cache)
    assert np.abs(step_logits - inference).max() < 1e-5
    training = numpy(decoder(target_ids, cache, training=True))
    assert np.abs(training - inference).max() > 0.05 * np.abs(inference).max()


def spy_on_dropout(layer):
    """Records (input shape, training) for every call of `layer.dropout_layer`."""
    calls = []
    dropout = layer.dropout_layer
    original_call = dropout.call

    def call(inputs, training=None):
        calls.append((tuple(inputs.shape), bool(training)))
        return original_call(inputs, training=training)

    dropout.call = call
    return calls


@pytest.mark.parametrize("config_name", ["plain", "bahdanau"])
def test_dropout_on_embeddings_and_between_layers_only(config_name):
    _, decoder, cache, source_ids = build_decoder("lstm", config_name, num_layers=3, dropout=0.3)
    encoder = RecurrentEncoder("lstm", UNITS, num_layers=3, bidirectional=True, dropout=0.3)
    embedded = TokenEmbedding(SOURCE_VOCABULARY, EMBEDDING_DIM)(source_ids)
    encoder(embedded, mask=source_ids != 0)
    encoder_calls, decoder_calls = spy_on_dropout(encoder), spy_on_dropout(decoder)
    encoder(embedded, mask=source_ids != 0, training=True)
    # Between layers 0-1 and 1-2, never after the top layer.
    assert encoder_calls == [((2, 7, 2 * UNITS), True)] * 2
    target_ids = pad(TARGET_TOKENS, 5)
    decoder(target_ids, cache, training=True)
    embedding_call, between_calls = decoder_calls[0], decoder_calls[1:]
    assert embedding_call == ((2, 5, EMBEDDING_DIM), True)
    if config_name == "plain":  # whole sequences at once
        assert between_calls == [((2, 5, UNITS), True)] * 2
    else:  # two per time step
        assert between_calls == [((2, UNITS), True)] * (2 * 5)
    decoder_calls.clear()
    decoder.step(target_ids[:, 0], cache, training=True)
    assert decoder_calls == [((2, EMBEDDING_DIM), True)] + [((2, UNITS), True)] * 2
    decoder_calls.clear()
    decoder(target_ids, cache)
    assert all(training is False for _, training in decoder_calls)


# ---------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "layer_class, arguments",
    [
        (TokenEmbedding, dict(vocabulary_size=11, embedding_dim=5, mask_zero=False)),
        (
            RecurrentEncoder,
            dict(
                cell="gru",
                units=UNITS,
                num_layers=2,
                bidirectional=True,
                dropout=0.25,
                reverse_source=True,
            ),
        ),
        (LuongAttention, dict(units=UNITS, score="general")),
        (BahdanauAttention, dict(units=UNITS)),
        (
            RecurrentDecoder,
            dict(
                vocabulary_size=TARGET_VOCABULARY,
                embedding_dim=EMBEDDING_DIM,
                cell="rnn",
                units=UNITS,
                num_layers=3,
                dropout=0.1,
                attention="bahdanau",
                feed_context=True,
                tie_embeddings=True,
            ),
        ),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_get_config_round_trip(layer_class, arguments):
    layer = layer_class(**arguments, name="custom_name")
    config = layer.get_config()
    for key, value in arguments.items():
        assert config[key] == value, key
    rebuilt = layer.__class__.from_config(config)
    assert type(rebuilt) is layer_class
    assert rebuilt.get_config() == config
    assert rebuilt.name == "custom_name"


@pytest.mark.parametrize("config_name", ["feed_context", "bahdanau"])
def test_decoder_rebuilds_from_build_config(config_name):
    _, decoder, cache, _ = build_decoder("gru", config_name)
    target_ids = pad(TARGET_TOKENS, 5)
    expected = numpy(decoder(target_ids, cache))
    rebuilt = RecurrentDecoder.from_config(decoder.get_config())
    rebuilt.build_from_config(decoder.get_build_config())
    rebuilt.set_weights(decoder.get_weights())  # same variables, same order
    np.testing.assert_allclose(numpy(rebuilt(target_ids, cache)), expected, atol=1e-6)


@keras.saving.register_keras_serializable(package="translator_tests")
class TinyTranslator(keras.Model):
    """Source embedding + encoder + decoder, called on (source_ids, target_input_ids)."""

    def __init__(self, cell="lstm", attention="bahdanau", **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.attention = attention
        self.source_embedding = TokenEmbedding(SOURCE_VOCABULARY, EMBEDDING_DIM)
        self.encoder = RecurrentEncoder(cell, UNITS, num_layers=2, bidirectional=True)
        self.decoder = RecurrentDecoder(
            TARGET_VOCABULARY,
            EMBEDDING_DIM,
            cell,
            UNITS,
            num_layers=2,
            attention=attention,
            tie_embeddings=True,
        )

    def call(self, inputs, training=None):
        source_ids, target_input_ids = inputs
        source_mask = self.source_embedding.compute_mask(source_ids)
        memory, final_states = self.encoder(
            self.source_embedding(source_ids), mask=source_mask, training=training
        )
        cache = self.decoder.initial_state(final_states, memory, source_mask)
        return self.decoder(target_input_ids, cache, training=training)

    def get_config(self):
        return {**super().get_config(), "cell": self.cell, "attention": self.attention}


@pytest.mark.parametrize("cell, attention", [("lstm", "bahdanau"), ("gru", None)])
def test_model_save_and_load_gives_identical_logits(tmp_path, cell, attention):
    model = TinyTranslator(cell, attention)
    inputs = (pad(SOURCE_TOKENS, 7), pad(TARGET_TOKENS, 5))
    expected = numpy(model(inputs))
    path = tmp_path / "translator.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, TinyTranslator)
    assert len(loaded.weights) == len(model.weights)
    np.testing.assert_array_equal(numpy(loaded(inputs)), expected)


# ---------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "cell, config",
    [
        ("lstm", dict(attention="bahdanau", feed_context=True, tie_embeddings=True)),
        ("gru", dict(attention="luong_general")),
        ("rnn", dict(attention=None, feed_context=True, tie_embeddings=True)),
    ],
)
def test_every_trainable_weight_gets_a_finite_gradient(cell, config):
    source_embedding = TokenEmbedding(SOURCE_VOCABULARY, EMBEDDING_DIM)
    encoder = RecurrentEncoder(cell, UNITS, num_layers=2, bidirectional=True, dropout=0.1)
    decoder = RecurrentDecoder(
        TARGET_VOCABULARY, EMBEDDING_DIM, cell, UNITS, num_layers=2, dropout=0.1, **config
    )
    source_ids = pad(SOURCE_TOKENS, 7)
    target_ids = pad(TARGET_TOKENS, 5)
    labels = np.roll(target_ids, -1, axis=1)
    with tf.GradientTape() as tape:
        memory, states = encoder(source_embedding(source_ids), training=True)
        cache = decoder.initial_state(states, memory, source_ids != 0)
        logits = decoder(target_ids, cache, training=True)
        loss = ops.mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
    weights = (
        source_embedding.trainable_weights + encoder.trainable_weights + decoder.trainable_weights
    )
    built_bridges = [layer for layer in decoder.bridge_layers if layer.built]
    assert len(built_bridges) == len(decoder.bridge_layers)  # bidirectional -> bridged
    gradients = tape.gradient(loss, weights)
    for weight, gradient in zip(weights, gradients):
        assert gradient is not None, weight.path
        assert np.all(np.isfinite(numpy(ops.convert_to_tensor(gradient)))), weight.path


def test_decoder_trains_under_xla():
    """jit_compile=True needs static loop bounds (tf.while_loop maximum_iterations)."""
    _, _, source_ids, memory, states = encode("gru", bidirectional=True)
    decoder = RecurrentDecoder(
        TARGET_VOCABULARY, EMBEDDING_DIM, "gru", UNITS, attention="luong_general", dropout=0.1
    )
    decoder.initial_state(states, memory, source_ids != 0)  # build outside the XLA function
    target_ids = pad(TARGET_TOKENS, 5)
    labels = np.roll(target_ids, -1, axis=1)

    @tf.function(jit_compile=True)
    def loss_and_gradients(states, memory, memory_mask, ids):
        with tf.GradientTape() as tape:
            cache = decoder.initial_state(states, memory, memory_mask)
            logits = decoder(ids, cache, training=True)
            loss = ops.mean(
                keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            )
        return loss, tape.gradient(loss, decoder.trainable_weights)

    loss, gradients = loss_and_gradients(states, memory, source_ids != 0, target_ids)
    assert np.isfinite(numpy(loss))
    for weight, gradient in zip(decoder.trainable_weights, gradients):
        assert gradient is not None, weight.path
