"""Golden outputs: tiny trained models saved by the code before a restructuring (tests/golden/,
written by tests/golden/make_golden.py) must translate, sample and classify exactly as they did
then. Token ids must be equal; scores, losses and probabilities may move by float32 rounding
only (another CPU sums in another order)."""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402

EXPECTED = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))


def load(name):
    return keras.saving.load_model(GOLDEN / f"{name}.keras")


@pytest.mark.parametrize("name", sorted(make_golden.TRANSLATION_MODELS))
def test_translations_scores_and_gradients_are_unchanged(name):
    expected = EXPECTED[name]
    pairs = make_golden.held_out_pairs()
    assert [source for source, _ in pairs] == expected["sources"]
    got = make_golden.translation_outputs(load(name), pairs)
    assert got["greedy"] == expected["greedy"]
    assert got["beam5"] == expected["beam5"]
    np.testing.assert_allclose(got["greedy_scores"], expected["greedy_scores"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["beam5_scores"], expected["beam5_scores"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["teacher_forcing_loss"], expected["teacher_forcing_loss"], rtol=1e-4)
    np.testing.assert_allclose(got["gradient_norm"], expected["gradient_norm"], rtol=1e-3)


def test_the_golden_models_learned_their_task():
    """Guards the golden files themselves: outputs of an untrained model would hang on rounding."""
    for name in make_golden.TRANSLATION_MODELS:
        right = sum(greedy[:len(target) + 1] == target + [3] for greedy, (_, target)
                    in zip(EXPECTED[name]["greedy"], make_golden.held_out_pairs()))
        assert right >= 15, (name, right)  # of 40 (19, 40 and 40 when written)
    assert np.max(EXPECTED["classifier"]["probabilities"], axis=1).mean() > 0.9


def test_language_model_sample_is_unchanged():
    assert make_golden.language_model_outputs(load("language_model")) == EXPECTED["language_model"]


def test_classifier_probabilities_are_unchanged():
    expected = EXPECTED["classifier"]
    got = make_golden.classifier_outputs(load("classifier"), expected["texts"])
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-5)
