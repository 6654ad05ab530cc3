"""The sliding-window MLP language model (translator.models.language_models.WindowLanguageModel): what a window sees, carried state, saving. (Training\nit as a language-model run and sampling: tests/test_heads.py.)"""

import keras
import numpy as np
import pytest

from translator.models.language_models import WindowLanguageModel


@pytest.fixture
def model():
    keras.utils.set_random_seed(3)
    model = WindowLanguageModel(12, window=3, embedding_dim=4, units=8, num_layers=2)
    model.build_for_shapes()
    return model


def test_a_prediction_sees_exactly_the_last_window_tokens(model):
    ids = np.random.default_rng(0).integers(4, 12, size=(2, 9)).astype("int32")
    logits = np.asarray(model(ids))
    assert logits.shape == (2, 9, 12)
    changed = ids.copy()
    changed[:, 2] = np.where(changed[:, 2] == 4, 5, 4)  # position 2 is in the windows of 2, 3, 4 only
    after = np.asarray(model(changed))
    differs = np.abs(after - logits).max(axis=(0, 2)) > 1e-6
    assert differs.tolist() == [False, False, True, True, True, False, False, False, False]


def test_the_window_before_the_text_is_masked_not_a_learned_padding_vector(model):
    ids = np.array([[5, 6, 7]], dtype="int32")
    before = np.asarray(model(ids))
    table = model.embedding.get_weights()[0]
    table[0] = 100.0  # the padding row: never read
    model.embedding.set_weights([table])
    np.testing.assert_allclose(np.asarray(model(ids)), before, atol=1e-6)
    history = {"history": np.zeros((1, 2), dtype="int32")}
    np.testing.assert_allclose(np.asarray(model(ids, history)), before, atol=1e-6)


def test_chunks_with_the_carried_state_equal_one_pass_and_steps(model):
    ids = np.random.default_rng(1).integers(4, 12, size=(3, 10)).astype("int32")
    whole = np.asarray(model(ids))
    first, state = model(ids[:, :4], return_state=True)
    second = model(ids[:, 4:], state)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)
    cache, stepped = model.initial_state(3), []
    for position in range(10):
        logits, cache, _ = model.step(ids[:, position], cache)
        stepped.append(np.asarray(logits))
    np.testing.assert_allclose(np.stack(stepped, axis=1), whole, atol=1e-5)


def test_a_window_of_one_token_is_a_bigram_model():
    model = WindowLanguageModel(12, window=1, embedding_dim=4, units=8, num_layers=1)
    ids = np.array([[5, 6, 5]], dtype="int32")
    logits, state = model(ids, return_state=True)
    assert np.asarray(state["history"]).shape == (1, 0)
    np.testing.assert_allclose(logits[0, 0], logits[0, 2], atol=1e-6)  # the same token, the same prediction


def test_save_and_load_round_trip(model, tmp_path):
    ids = np.random.default_rng(2).integers(4, 12, size=(2, 6)).astype("int32")
    expected = np.asarray(model(ids))
    model.save(tmp_path / "window.keras")
    loaded = keras.saving.load_model(tmp_path / "window.keras", safe_mode=True)
    assert isinstance(loaded, WindowLanguageModel) and loaded.get_config()["window"] == 3
    np.testing.assert_allclose(np.asarray(loaded(ids)), expected, atol=1e-6)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="window must be a positive integer; got 0"):
        WindowLanguageModel(12, window=0)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        WindowLanguageModel(12, dropout=1.5)

