"""int8 decoding (issue 32): the decoder's weights per output column, its activations per row."""

import numpy as np
import pytest

from translator.decoding.search import greedy_search
from translator.models.seq2seq import Seq2Seq, computing_in


def model(**settings):
    return Seq2Seq.from_settings({"embedding_dim": 32, "units": 64, **settings}, 40, 50)


def step_logits(model, source_ids, previous_ids):
    cache = model.encode(source_ids)
    logits, _, _ = model.decoder.step(previous_ids, cache)
    return np.asarray(logits, np.float32)


@pytest.mark.parametrize("settings", [{"cell": "gru", "attention": "luong_general", "bidirectional": True,
                                       "encoder_units": 32, "tie_embeddings": True},
                                      {"cell": "lstm", "attention": "bahdanau"}, {"cell": "lstm"}])
def test_int8_logits_are_within_two_percent_of_the_float32_logits_range(settings):
    import keras

    keras.utils.set_random_seed(3)
    float32 = computing_in(model(**settings), "float32")
    float32.fuse_for_inference()
    int8 = computing_in(float32, "int8")
    source_ids = np.random.default_rng(0).integers(4, 40, size=(8, 7)).astype(np.int32)
    previous_ids = np.random.default_rng(1).integers(4, 50, size=8).astype(np.int32)
    expected, got = step_logits(float32, source_ids, previous_ids), step_logits(int8, source_ids, previous_ids)
    # The stated tolerance (README, "Shortlists and int8"): 2% of the logits' range per entry.
    scale = expected.max() - expected.min()
    assert np.abs(got - expected).max() <= 0.02 * scale
    assert not np.array_equal(got, expected)  # it is quantized, not the float32 path again
    assert int8.decoder.engine.kernels["output"].values.dtype.name == "int8"
    # The float32 model it came from is left as it was.
    assert float32.decoder.engine.kernels["output"].dtype.name == "float32"


def test_int8_greedy_search_runs_and_mostly_agrees_with_float32():
    import keras

    keras.utils.set_random_seed(4)
    float32 = computing_in(model(cell="gru", attention="luong_general"), "float32")
    float32.fuse_for_inference()
    int8 = computing_in(float32, "int8")
    source_ids = np.random.default_rng(2).integers(4, 40, size=(16, 6)).astype(np.int32)
    expected = np.asarray(greedy_search(float32, source_ids, 1.0, 3))
    got = np.asarray(greedy_search(int8, source_ids, 1.0, 3))
    assert got.shape[0] == 16 and np.mean(got[:, 0] == expected[:, 0]) >= 0.75
