"""The engine (translator/models/engine.py) gives the numbers of the layers' own maths: the encoder's
input table and fused loop, the decoder's fused step and training loop, and its kernel
gradients computed after the loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from test_layers import (
    DECODER_CONFIGS,
    SOURCE_VOCABULARY,
    TARGET_TOKENS,
    UNITS,
    build_decoder,
    encode,
    numpy,
    pad,
    run_steps,
)
from test_recurrence import inputs_and_mask

from translator.models import decoders
from translator.models.encoders import RecurrentEncoder


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(1234)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(
    "num_layers, bidirectional, reverse_source",
    [(1, False, False), (2, False, True), (2, True, True)],
    ids=["single", "stacked-reversed", "stacked-bidirectional-reversed"],
)
def test_encoder_input_table_gives_the_same_outputs(cell, num_layers, bidirectional, reverse_source):
    """`fuse_for_inference`: rows of a table made once (the first layer's input side of every
    token) give the numbers of embedding then multiplying, in the packed loop and the masked one."""
    embedding, encoder, ids, outputs, states = encode(
        cell, num_layers=num_layers, bidirectional=bidirectional, reverse_source=reverse_source)
    assert encoder.input_table is None
    encoder.fuse_for_inference(embedding.embeddings)
    width = (2 if bidirectional else 1) * {"lstm": 4, "gru": 3, "rnn": 1}[cell] * UNITS
    assert tuple(encoder.input_table.shape) == (SOURCE_VOCABULARY, width)
    rows = ops.take(encoder.input_table, ids, axis=0)
    for training in (False, True):  # packed (inference) and masked loops
        fused_outputs, fused_states = encoder(rows, mask=ids != 0, training=training, inputs_projected=True)
        np.testing.assert_allclose(numpy(fused_outputs), numpy(outputs), atol=1e-5)
        for fused_layer, layer in zip(fused_states, states):
            for fused, expected in zip(fused_layer, layer):
                np.testing.assert_allclose(numpy(fused), numpy(expected), atol=1e-5)


def test_encoder_input_table_only_up_to_the_size_limit(monkeypatch):
    embedding, encoder, _, _, _ = encode("lstm")
    size = SOURCE_VOCABULARY * 4 * UNITS
    monkeypatch.setattr("translator.models.engine.EMBEDDING_PROJECTION_LIMIT", size - 1)
    encoder.fuse_for_inference(embedding.embeddings)
    assert encoder.input_table is None
    monkeypatch.setattr("translator.models.engine.EMBEDDING_PROJECTION_LIMIT", size)
    encoder.fuse_for_inference(embedding.embeddings)
    assert tuple(encoder.input_table.shape) == (SOURCE_VOCABULARY, 4 * UNITS)


@pytest.mark.parametrize("config_name", list(DECODER_CONFIGS))
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fused_decoding_steps_give_the_same_logits(cell, config_name):
    """`fuse_for_inference` (one product per layer step, biases folded into the products)
    changes the speed of `step`, not its numbers; teacher forcing keeps its own path."""
    _, decoder, cache, _ = build_decoder(cell, config_name)
    target_ids = pad(TARGET_TOKENS, 5)
    expected, _, _ = run_steps(decoder, target_ids, cache)
    expected_teacher_forcing = numpy(decoder(target_ids, cache))
    decoder.fuse_for_inference()
    fused, _, _ = run_steps(decoder, target_ids, cache)
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    np.testing.assert_array_equal(numpy(decoder(target_ids, cache)), expected_teacher_forcing)


@pytest.mark.parametrize("cell, config_name", [("lstm", "bahdanau"), ("gru", "luong_general"), ("rnn", "luong_dot")])
def test_loop_kernel_gradients_equal_the_cell_by_cell_gradients(cell, config_name, monkeypatch):
    """Teacher forcing with attention computes its kernels' gradients after the loop
    (`LoopKernels`): the same gradients as autodiff through Keras's cell step by step."""
    _, decoder, cache, _ = build_decoder(cell, config_name)
    target_ids = pad(TARGET_TOKENS, 5)
    labels = np.roll(target_ids, -1, axis=1)
    memory = tf.constant(cache["memory"])  # its gradient through the weighted sums: one product too

    def gradients():
        with tf.GradientTape() as tape:
            tape.watch(memory)
            logits = decoder(target_ids, {**cache, "memory": memory}, training=True)
            loss = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        # (The rest of the cache is made outside the tape: the bridges get no gradient.)
        return [None if g is None else numpy(ops.convert_to_tensor(g))
                for g in tape.gradient(loss, [*decoder.trainable_weights, memory])]

    fused = gradients()
    monkeypatch.setattr(decoders, "use_fused_loop", lambda: False)
    compared = 0
    for name, expected, actual in zip([w.path for w in decoder.trainable_weights] + ["memory"], gradients(), fused):
        assert (expected is None) == (actual is None), name
        if expected is not None:
            np.testing.assert_allclose(actual, expected, atol=1e-6, err_msg=name)
            compared += ("kernel" in name and "_cell" in name) or name == "memory"
    assert compared == 5  # both layers' kernel and recurrent kernel, and the memory


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_encoder_fused_loop_equals_the_keras_layers(monkeypatch, cell, bidirectional):
    keras.utils.set_random_seed(4)
    inputs, mask = inputs_and_mask()
    encoder = RecurrentEncoder(cell, 7, num_layers=2, bidirectional=bidirectional)
    fused_outputs, fused_states = encoder(inputs, mask=mask)
    monkeypatch.setattr("translator.models.encoders.use_fused_loop", lambda: False)
    keras_outputs, keras_states = encoder(inputs, mask=mask)
    np.testing.assert_allclose(fused_outputs, keras_outputs, atol=1e-5)
    for fused_layer, keras_layer in zip(fused_states, keras_states):
        for fused, expected in zip(fused_layer, keras_layer):
            np.testing.assert_allclose(fused, expected, atol=1e-5)


@pytest.mark.parametrize("config_name", list(DECODER_CONFIGS))
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_engine_and_the_decoders_maths_give_the_same_logits(cell, config_name, monkeypatch):
    """On a CPU `step` and teacher forcing run through the engine (`cell_step`, `run_cell`, the
    loop with fused kernels, the output bias folded into its product); with the engine switched
    off the decoder runs its Keras cells and layers: the same logits, step by step and whole."""
    _, decoder, cache, _ = build_decoder(cell, config_name)
    target_ids = pad(TARGET_TOKENS, 5)
    engine_steps, _, _ = run_steps(decoder, target_ids, cache)
    engine_whole = numpy(decoder(target_ids, cache))
    monkeypatch.setattr(decoders, "use_fused_loop", lambda: False)
    maths_steps, _, _ = run_steps(decoder, target_ids, cache)
    np.testing.assert_allclose(engine_steps, maths_steps, atol=1e-5)
    np.testing.assert_allclose(engine_whole, numpy(decoder(target_ids, cache)), atol=1e-5)
