"""The fused CPU loop and the hand-written cross-entropy give Keras's own numbers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from translator.models import recurrence
from translator.models.encoders import RECURRENT_LAYERS, STATE_COUNTS
from translator.models.seq2seq import sequence_loss

LENGTHS = [5, 2, 4]


def inputs_and_mask(width=6, time=5):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(len(LENGTHS), time, width)).astype("float32")
    mask = np.arange(time)[None, :] < np.array(LENGTHS)[:, None]
    return inputs, mask


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_run_cell_equals_the_keras_layer(cell):
    keras.utils.set_random_seed(3)
    inputs, mask = inputs_and_mask()
    layer = RECURRENT_LAYERS[cell](7, return_sequences=True, return_state=True)
    layer.build(inputs.shape)
    layer.cell.bias.assign(np.random.default_rng(1).normal(size=layer.cell.bias.shape))
    rng = np.random.default_rng(2)
    initial = [rng.normal(size=(3, 7)).astype("float32") for _ in range(STATE_COUNTS[cell])]

    expected, *expected_states = layer(inputs, initial_state=initial, mask=mask)
    outputs, states = recurrence.run_cell(layer.cell, inputs, initial, mask)

    mask3 = mask[:, :, None]
    np.testing.assert_allclose(np.where(mask3, outputs, 0), np.where(mask3, expected, 0), atol=1e-5)
    assert np.all(np.asarray(outputs)[~mask] == 0)
    for state, expected_state in zip(states, expected_states):
        np.testing.assert_allclose(state, expected_state, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_skipping_padding_gives_the_masked_loops_numbers(cell):
    """The packed loop (inference) computes only real tokens, rows sorted by length inside;
    an empty row keeps its initial states and gets zero outputs."""
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(6)
    lengths = np.array([3, 7, 0, 1, 7, 4])
    inputs = rng.normal(size=(6, 7, 5)).astype("float32")
    mask = np.arange(7)[None, :] < lengths[:, None]
    cell_layer = RECURRENT_LAYERS[cell](8).cell
    cell_layer.build((None, 5))
    initial = [rng.normal(size=(6, 8)).astype("float32") for _ in range(STATE_COUNTS[cell])]

    outputs, states = recurrence.run_cell(cell_layer, inputs, initial, mask)
    packed = tf.function(lambda x, m: recurrence.run_cell(cell_layer, x, initial, m, skip_padding=True))
    packed_outputs, packed_states = packed(inputs, mask)

    np.testing.assert_allclose(packed_outputs, outputs, atol=1e-6)
    assert np.all(np.asarray(packed_outputs)[~mask] == 0)
    for state, expected in zip(packed_states, states):
        np.testing.assert_allclose(state, expected, atol=1e-6)
    np.testing.assert_array_equal(packed_states[0][2], initial[0][2])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_sequence_loss_and_gradient_equal_the_log_softmax_formula(label_smoothing):
    rng = np.random.default_rng(5)
    logits = tf.Variable(rng.normal(size=(3, 4, 11)).astype("float32") * 3)
    targets = np.array([[4, 2, 0, 0], [1, 5, 7, 3], [9, 0, 0, 0]], dtype="int32")

    def reference():
        log_probs = tf.nn.log_softmax(logits)
        nll = -tf.gather(log_probs, targets[..., None], batch_dims=2)[..., 0]
        nll = (1 - label_smoothing) * nll - label_smoothing * tf.reduce_mean(log_probs, -1)
        mask = tf.cast(targets != 0, tf.float32)
        return tf.reduce_sum(nll * mask), tf.reduce_sum(mask)

    with tf.GradientTape(persistent=True) as tape:
        total, count = sequence_loss(logits, targets, label_smoothing)
        expected_total, expected_count = reference()
    assert float(count) == float(expected_count) == 7.0
    np.testing.assert_allclose(float(total), float(expected_total), rtol=1e-6)
    gradient = tape.gradient(total, logits)
    np.testing.assert_allclose(gradient, tape.gradient(expected_total, logits), atol=1e-6)
    assert np.all(np.asarray(gradient)[targets == 0] == 0)  # padding gets no gradient


def test_matmul_gives_tf_matmuls_numbers_and_gradients():
    """`recurrence.matmul` only changes how the float32 rows gradient is multiplied."""
    rng = np.random.default_rng(8)
    rows = tf.constant(rng.normal(size=(2, 3, 5)), tf.float32)
    kernel = tf.constant(rng.normal(size=(5, 4)), tf.float32)
    upstream = tf.constant(rng.normal(size=(2, 3, 4)), tf.float32)

    @tf.function  # as in a training step
    def gradients(multiply):
        with tf.GradientTape() as tape:
            tape.watch([rows, kernel])
            loss = tf.reduce_sum(multiply(rows, kernel) * upstream)
        return tape.gradient(loss, [rows, kernel])

    expected = [np.asarray(x) for x in gradients(lambda r, k: tf.einsum("btk,km->btm", r, k))]
    for multiply in (recurrence.matmul, lambda r, k: recurrence.matmul(r, k, tf.transpose(k))):
        np.testing.assert_allclose(multiply(rows, kernel), tf.einsum("btk,km->btm", rows, kernel), atol=1e-5)
        for value, reference in zip(gradients(multiply), expected):
            np.testing.assert_allclose(value, reference, atol=1e-5)
    with tf.GradientTape() as tape:
        tape.watch([rows, kernel])
        loss = tf.reduce_sum(recurrence.matmul(rows, kernel, kernel_gradient=False) * upstream)
    rows_gradient, kernel_gradient = tape.gradient(loss, [rows, kernel])
    np.testing.assert_allclose(rows_gradient, expected[0], atol=1e-5)
    assert kernel_gradient is None
    bfloat16 = recurrence.matmul(tf.cast(rows, tf.bfloat16), tf.cast(kernel, tf.bfloat16))
    assert bfloat16.dtype == tf.bfloat16 and tuple(bfloat16.shape) == (2, 3, 4)
    # [batch, time, k] rows are one [batch * time, k] product in every dtype: a batched
    # product would broadcast the kernel (bfloat16 training ran at 2/3 speed and twice the memory).
    for dtype in (tf.float32, tf.bfloat16):
        graph = tf.function(recurrence.matmul).get_concrete_function(
            tf.TensorSpec([None, None, 5], dtype), tf.TensorSpec([5, 4], dtype)).graph
        kinds = {operation.type for operation in graph.get_operations()}
        assert "MatMul" in kinds and not any(kind.startswith("BatchMatMul") for kind in kinds), kinds


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_run_cell_gradients_equal_the_keras_layers(cell, training):
    """Under tf.function, as in training: the gradients of the masked loop (its recurrent
    product multiplied by a kernel transposed once, `recurrence.matmul`; with `training`,
    the recurrent kernel's gradient one product after the loop, `LoopKernels`) are Keras's."""
    keras.utils.set_random_seed(6)
    inputs, mask = inputs_and_mask()
    layer = RECURRENT_LAYERS[cell](7, return_sequences=True, return_state=True)
    layer.build(inputs.shape)
    inputs = tf.constant(inputs)
    upstream = tf.constant(np.random.default_rng(9).normal(size=(3, 5, 7)), tf.float32)
    weights = layer.trainable_variables

    @tf.function
    def gradients(run):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = run()
            loss = tf.reduce_sum(outputs * upstream * mask[:, :, None])
        return tape.gradient(loss, [inputs, *weights])

    initial = [tf.zeros((3, 7))] * STATE_COUNTS[cell]
    ours = gradients(lambda: recurrence.run_cell(layer.cell, inputs, initial, mask, training=training)[0])
    expected = gradients(lambda: layer(inputs, mask=mask)[0])
    for value, reference in zip(ours, expected):
        np.testing.assert_allclose(value, reference, atol=1e-5)
