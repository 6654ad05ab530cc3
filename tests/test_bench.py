"""The benchmark's textbook baseline is the same model as ours, and its FLOP count is right."""

import keras
import numpy as np

from translator.models.seq2seq import Seq2Seq
from translator.studies.bench import (
    TEXTBOOK_MODEL,
    copy_textbook_weights,
    decoding_flops,
    forward_flops,
    textbook_model,
)


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


def test_forward_flops_of_a_gru_with_luong_attention_and_of_decoding():
    luong = {"cell": "gru", "embedding_dim": 4, "units": 6, "encoder_units": 3, "bidirectional": True,
             "attention": "luong_general", "encoder_layers": 2, "decoder_layers": 2}
    encoder = 2 * (2 * (4 + 3) * 3 * 3 + 2 * (6 + 3) * 3 * 3)   # two directions, two layers (the second reads 6)
    memory_projection = 2 * 6 * 6                              # W m, per source position
    step = 2 * (4 + 6) * 3 * 6 + 2 * (6 + 6) * 3 * 6 + 5 * (2 * 6 + 2 * 6) + 2 * 12 * 6 + 2 * 6 * 10
    assert forward_flops(luong, 5, 7, 9, 10) == 5 * (encoder + memory_projection) + 7 * step
    # Decoding: the encoder once per sentence, output pieces + <eos> steps for every hypothesis.
    assert decoding_flops(luong, [5, 5], [6, 2], 3, 9, 10) == 2 * 5 * (encoder + memory_projection) + 3 * 10 * step


def test_the_summary_table_names_every_measurement():
    from translator.studies.bench import markdown

    training = {"tokens_per_second": 1000.0, "target_padding": 0.05, "model_gflops_per_second": 50.0,
                "peak_memory_mib": 1000.0}
    decoding = {"ours_greedy": 300.0, "ours_beam5": 80.0, "ours_greedy_mean_output_words": 9.0,
                "ours_beam5_mean_output_words": 7.0}
    results = {
        "matmul": {"gflops": {"float32": 250.0, "bfloat16": 900.0}},
        **{key: dict(training) for key in ("textbook_train", "ours_train_lstm_float32", "ours_train_lstm_bfloat16",
                                           "ours_train_attention_float32", "ours_train_attention_bfloat16")},
        "decode_lstm": {"textbook_predict": 100.0, "textbook_direct": 150.0, "identical_greedy_outputs_float32": 1.0,
                        "identical_greedy_outputs_bfloat16": 0.97, "textbook_mean_output_words": 9.5,
                        "reference_mean_words": 10.0,
                        **{f"{key}_{precision}": value for key, value in decoding.items()
                           for precision in ("float32", "bfloat16")}},
        "decode_trained": {"run": "bench/runs/attention", "epochs": 4, "training_minutes": 12.5,
                           "reference_mean_words": 10.0, "length_penalty": 0.6, "precision": "bfloat16",
                           "beam1": {"sentences_per_second": 1400.0, "mean_output_words": 9.8},
                           "beam5": {"sentences_per_second": 250.0, "mean_output_words": 9.6,
                                     "model_gflops_per_second": 450.0},
                           "peak_memory_mib": 1200.0},
        "cold_start": {"first_seconds": 5.1, "second_seconds": 4.6, "through_export": True,
                       "translation": "A dog.", "peak_memory_mib": 950.0},
        "machine": {"date": "2026-11-21", "cpu_cores": 2, "hardware": "AMD EPYC (x86_64), 2 CPU cores",
                    "matrix_instructions": "AVX-512 with bfloat16, no AMX", "seconds_per_training_phase": 60,
                    "total_minutes": 8.0},
    }
    table = markdown(results)
    assert table.startswith("# translator bench, 2026-11-21, AMD EPYC (x86_64), 2 CPU cores (AVX-512 with bfloat16, no AMX)")
    assert "| ours, bfloat16 | 300.0 | 80.0 | 3.0 | 2.0 | 97.0% | 9.0 (90%) | 7.0 (70%) **not representative** |" in table
    assert "textbook, direct call per token | 150.0 | - | 1.5 | 1.0 | | 9.5 (95%) | |" in table
    assert "| ours, mixed bfloat16 | 1,000 | 1.00 | 5.0% | 50.0 | 20.0% | 5.6% | 1,000 MiB |" in table
    assert ("| `bench/runs/attention` | 4 epochs, 12.5 min | bfloat16, beam 5, length penalty 0.6 | 250.0 | "
            "9.6 (96%) | 450.0 | 50.0% | 1,200 MiB |") in table
    assert "| bfloat16, greedy | 1400.0 | 9.8 (98%) |  |  | 1,200 MiB |" in table  # measured before the FLOPs
    assert "took 5.1 s, and 4.6 s run again right after (through the run's export), peak memory 950 MiB" in table
    assert "decode_recipe" not in results and "runs/multi30k" not in table  # a recipe run not trained: no row
