"""The benchmark's textbook baseline is the same model as ours, and its FLOP count is right."""

import keras
import numpy as np

from translator.bench import TEXTBOOK_MODEL, copy_textbook_weights, forward_flops, textbook_model
from translator.models import Seq2Seq


def test_textbook_weights_in_our_seq2seq_give_the_same_probabilities():
    keras.utils.set_random_seed(0)
    textbook = textbook_model(19, 23)
    source = np.array([[4, 5, 6, 7], [8, 9, 0, 0]], dtype="int32")
    target_input = np.array([[2, 5, 6], [2, 7, 0]], dtype="int32")
    expected = np.asarray(textbook["model"]((source, target_input)))
    ours = Seq2Seq.from_settings(TEXTBOOK_MODEL, 19, 23)
    copy_textbook_weights(textbook, ours)
    probabilities = keras.ops.softmax(ours((source, target_input)), axis=-1)
    real = target_input != 0
    np.testing.assert_allclose(np.asarray(probabilities)[real], expected[real], atol=1e-5)

    # The textbook's step-by-step inference models agree with our decoder's step.
    h, c = textbook["encoder_model"](source)
    step_probabilities, _, _ = textbook["decoder_model"]([target_input[:, :1], np.asarray(h), np.asarray(c)])
    cache = ours.encode(source)
    logits, _, _ = ours.decoder.step(target_input[:, 0], cache)
    np.testing.assert_allclose(keras.ops.softmax(logits), np.asarray(step_probabilities)[:, 0], atol=1e-5)


def test_forward_flops_of_the_textbook_and_attention_models():
    lstm = 2 * (256 + 512) * 4 * 512
    assert forward_flops(TEXTBOOK_MODEL, 10, 12, 8000, 8000) == 10 * lstm + 12 * (lstm + 2 * 512 * 8000)
    attention = {"embedding_dim": 4, "units": 6, "encoder_units": 3, "bidirectional": True,
                 "attention": "bahdanau"}
    encoder = 2 * 2 * (4 + 3) * 4 * 3          # two directions
    memory_projection = 2 * 6 * 6              # per source position (memory width 6)
    step = 2 * (4 + 6 + 6) * 4 * 6 + 2 * 6 * 6 + 5 * (2 * 6 + 2 * 6) + 2 * 12 * 6 + 2 * 6 * 10
    assert forward_flops(attention, 5, 7, 9, 10) == 5 * (encoder + memory_projection) + 7 * step


def test_the_summary_table_names_every_measurement():
    from translator.bench import markdown

    training = {"tokens_per_second": 1000.0, "target_padding": 0.05, "model_gflops_per_second": 50.0,
                "peak_memory_mib": 1000.0}
    decoding = {"ours_greedy": 300.0, "ours_beam5": 80.0, "ours_greedy_mean_output_words": 9.0}
    results = {
        "matmul": {"gflops": {"float32": 250.0, "bfloat16": 900.0}},
        **{key: dict(training) for key in ("textbook_train", "ours_train_lstm_float32", "ours_train_lstm_bfloat16",
                                           "ours_train_attention_float32", "ours_train_attention_bfloat16")},
        "decode_lstm": {"textbook_predict": 100.0, "textbook_direct": 150.0, "identical_greedy_outputs_float32": 1.0,
                        "identical_greedy_outputs_bfloat16": 0.97,
                        **{f"{key}_{precision}": value for key, value in decoding.items()
                           for precision in ("float32", "bfloat16")}},
        "decode_attention": dict(decoding),
        "machine": {"date": "2026-11-21", "cpu_cores": 2, "hardware": "AMD EPYC (x86_64), 2 CPU cores",
                    "matrix_instructions": "AVX-512 with bfloat16, no AMX", "seconds_per_training_phase": 60,
                    "total_minutes": 8.0},
    }
    table = markdown(results)
    assert table.startswith("# translator bench, 2026-11-21, AMD EPYC (x86_64), 2 CPU cores (AVX-512 with bfloat16, no AMX)")
    assert "| ours, bfloat16 | 300.0 | 80.0 | 3.0 | 2.0 | 97.0% |" in table
    assert "textbook, direct call per token | 150.0 | - | 1.5 | 1.0 |" in table
