"""Interpretable cells: activations of a language model, features of a play's text, the best
cell per feature, and the coloured text."""

import keras
import numpy as np
import pytest

from translator.models.language_models import LanguageModel
from translator.studies.cell_activations import (
    best_cells,
    cell_activations,
    coloured_html,
    correlations,
    text_features,
)

PLAY = "ROMEO:\nBut soft, what light.\n\nJULIET:\nAy me!"


def test_features_of_a_play():
    features = text_features(PLAY)
    assert all(len(values) == len(PLAY) for values in features.values())
    assert features["position_in_line"][:8].tolist() == [0, 1, 2, 3, 4, 5, 6, 0]
    speaker = features["in_speaker_name"]
    assert speaker[:7].tolist() == [1] * 7 and speaker[7] == 0  # "ROMEO:\n", then the verse
    assert speaker[PLAY.index("JULIET")] == 1 and speaker[PLAY.index("Ay")] == 0
    assert features["characters_to_line_end"][:7].tolist() == [6, 5, 4, 3, 2, 1, 0]


def test_the_best_cell_is_the_one_that_tracks_the_feature():
    rng = np.random.default_rng(0)
    feature = np.arange(50, dtype=float) % 7
    activations = rng.normal(size=(50, 6))
    activations[:, 4] = -0.3 * feature + 0.01 * rng.normal(size=50)  # anti-correlated: found by |r|
    activations[:, 2] = 1.0  # a constant cell: correlation 0, not NaN
    values = correlations(activations, feature)
    assert values[2] == 0.0 and values[4] < -0.99
    found = best_cells(activations, {"f": feature})
    assert found["f"]["cell"] == 4 and found["f"]["correlation"] < -0.99


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_activations_are_the_top_layer_states_the_model_reaches(cell):
    keras.utils.set_random_seed(2)
    model = LanguageModel(12, cell=cell, embedding_dim=4, units=6, num_layers=2)
    model.build_for_shapes()
    ids = [4, 5, 6, 7, 5, 4, 11]
    activations = cell_activations(model, ids)
    assert activations.shape == (7, 6)
    _, state = model(np.array([ids], dtype="int32"), return_state=True)
    key = "cell_state_1" if cell == "lstm" else "hidden_state_1"
    np.testing.assert_allclose(activations[-1], np.asarray(state[key])[0], atol=1e-5)
    _, first = model(np.array([ids[:3]], dtype="int32"), return_state=True)
    np.testing.assert_allclose(activations[2], np.asarray(first[key])[0], atol=1e-5)


def test_coloured_html_escapes_the_text_and_colours_by_sign():
    page = coloured_html("<a>\n", np.array([1.0, 0.0, -1.0, 0.5]))
    assert "&lt;" in page and "&gt;" in page and "<br>" in page
    assert "rgb(255,0,0)" in page and "rgb(255,255,255)" in page and "rgb(0,0,255)" in page
