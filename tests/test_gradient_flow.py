"""Vanishing gradients (issue: the seeds' claims, measured): the measurement against a hand
computation, the synthetic long-range task, and learning it at a short distance."""

import keras
import numpy as np
import pytest

from translator.studies.gradient_flow import (
    FIRST_SYMBOL,
    first_token_task,
    gradient_norms_by_distance,
    task_classifier,
    train_on_first_token,
)


def test_the_first_token_task_labels_each_row_by_its_first_symbol():
    ids, labels = first_token_task(500, distance=7, symbols=5, seed=3)
    assert ids.shape == (500, 8) and ids.dtype == np.int32 and labels.shape == (500,)
    assert ids.min() >= FIRST_SYMBOL and ids.max() < FIRST_SYMBOL + 5  # never padding or a special id
    np.testing.assert_array_equal(labels, ids[:, 0] - FIRST_SYMBOL)
    assert len(np.unique(ids[:, 1:])) == 5  # the distractors use the whole alphabet
    again, _ = first_token_task(500, distance=7, symbols=5, seed=3)
    np.testing.assert_array_equal(ids, again)
    assert not np.array_equal(ids, first_token_task(500, distance=7, symbols=5, seed=4)[0])


def test_gradient_norms_by_distance_match_a_hand_computation_for_a_one_unit_rnn():
    keras.utils.set_random_seed(7)
    model = task_classifier("rnn", symbols=3, units=1, embedding_dim=1)
    ids, labels = first_token_task(4, distance=5, symbols=3, seed=1)
    norms = gradient_norms_by_distance(model, ids, labels)

    table = model.embedding.get_weights()[0][:, 0]
    kernel, recurrent, bias = (np.asarray(w, dtype=np.float64).ravel()[0] for w in model.encoder.get_weights())
    output_kernel, output_bias = model.output_layer.get_weights()
    expected = np.zeros(ids.shape[1])
    for row, label in zip(ids, labels):
        x = table[row].astype(np.float64)
        h = [0.0]
        for value in x:  # h_t = tanh(w x_t + u h_{t-1} + b)
            h.append(np.tanh(kernel * value + recurrent * h[-1] + bias))
        logits = h[-1] * output_kernel[0] + output_bias
        probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        upstream = (probabilities - np.eye(3)[label]) @ output_kernel[0] / len(ids)  # d loss / d h_T
        for t in range(len(x)):  # d h_T / d x_t = prod_{k>t} (1 - h_k^2) u * (1 - h_t^2) w
            through = np.prod([(1 - h[k + 1] ** 2) * recurrent for k in range(t + 1, len(x))])
            expected[len(x) - 1 - t] += abs(upstream * through * (1 - h[t + 1] ** 2) * kernel) / len(ids)
    np.testing.assert_allclose(norms, expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_every_cell_gives_one_norm_per_distance(cell):
    keras.utils.set_random_seed(1)
    model = task_classifier(cell, units=8)
    norms = gradient_norms_by_distance(model, *first_token_task(16, distance=20, seed=2))
    assert norms.shape == (21,) and np.all(np.isfinite(norms)) and np.all(norms >= 0) and norms[0] > 0


def test_an_lstm_learns_the_first_token_across_a_short_distance():
    keras.utils.set_random_seed(1234)
    accuracy = train_on_first_token(task_classifier("lstm", symbols=4, units=16), distance=3, symbols=4,
                                    examples=2000, epochs=8)
    assert accuracy > 0.9  # chance is 0.25
