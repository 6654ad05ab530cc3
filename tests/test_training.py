"""Training: learning on generated tasks, padding invariance, save/load, resumption, mirroring.

The tasks go through the whole pipeline: a generated corpus recipe, `translator data`, a
word-level tokenizer, `translator train` with configs/tiny.yaml's model.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPOSITORY, make_task, reversal_pairs, write_config

from translator.config import SCHEMA, ConfigError, load_config, validate
from translator.data.corpora import read_prepared_split


@pytest.fixture(scope="module")
def reversal(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reversal")
    return directory, make_task(directory, "reverse", {
        "train": reversal_pairs(4000, 1), "validation": reversal_pairs(200, 2), "test": reversal_pairs(300, 3)})


def exact_match(run: Path, data: dict) -> float:
    import keras

    from translator.data.batching import pad
    from translator.data.tokenizers import load_tokenizers
    from translator.decoding.search import GreedyTranslator

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    tokenizers = load_tokenizers(run / "tokenizers")
    test = read_prepared_split(data["corpus"], "test", data["work_dir"])
    outputs = GreedyTranslator(model)(pad(tokenizers["source"].encode(test["source"])))
    hypotheses = [tokenizers["target"].decode(ids) for ids in outputs]
    return float(np.mean([h == r for h, r in zip(hypotheses, test["target"])]))


def run_training(config: Path, run: Path):
    from translator.training.trainer import Trainer

    started = time.time()
    Trainer(config, run, log=lambda *a: None).train()
    return time.time() - started


# ----------------------------------------------------------------------------- configs

def test_an_unknown_config_key_fails_with_its_name_before_any_work(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown key 'model.celll'; allowed keys in 'model': type, cell, "):
        validate({"data": {"corpus": "x"}, "model": {"celll": "lstm"}})
    with pytest.raises(ConfigError, match=r"'model.cell' is 'lstn'; expected one of 'lstm', 'gru', 'rnn'"):
        validate({"data": {"corpus": "x"}, "model": {"cell": "lstn"}})
    with pytest.raises(ConfigError, match=r"'training.dropout'|unknown key 'training.dropout'"):
        validate({"data": {"corpus": "x"}, "training": {"dropout": 0.1}})
    with pytest.raises(ConfigError, match=r"'training.epochs' is 0; expected a positive integer"):
        validate({"data": {"corpus": "x"}, "training": {"epochs": 0}})
    with pytest.raises(ConfigError, match=r"BLEU is never computed"):
        validate({"data": {"corpus": "x"}, "training": {"early_stopping_metric": "validation_bleu", "bleu_every": 0}})
    with pytest.raises(ConfigError, match=r"'model.ensemble' is 3, but only a classifier trains an ensemble"):
        validate({"data": {"corpus": "x"}, "model": {"ensemble": 3}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {corpus: multi30k-de-en}\nmodel: {attention: luong}\n")
    from translator.cli import main

    assert main(["train", str(bad), "--run", str(tmp_path / "run")]) == 2
    assert "'model.attention' is 'luong'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_reference_config_documents_every_key_with_its_default():
    reference = load_config(REPOSITORY / "configs" / "reference.yaml")
    text = (REPOSITORY / "configs" / "reference.yaml").read_text()
    for section, keys in SCHEMA.items():
        for key, (default, _) in keys.items():
            assert f"  {key}:" in text, f"{section}.{key} is not documented in configs/reference.yaml"
            if key != "corpus":
                assert reference[section][key] == default, f"{section}.{key}"
    for path in sorted((REPOSITORY / "configs").glob("*.yaml")):  # every recipe is a valid config
        if path.name != "results.yaml":  # the rows of the results table, not a recipe
            load_config(path)


def test_paired_recipes_differ_only_where_their_headers_say():
    def differences(first, second):
        a, b = (load_config(REPOSITORY / "configs" / f"{name}.yaml") for name in (first, second))
        return sorted(f"{section}.{key}" for section in a if isinstance(a[section], dict)
                      for key in a[section] if a[section][key] != b[section][key])

    assert differences("multi30k-de-en-lstm", "multi30k-de-en-lstm-reversed") == ["model.reverse_source"]
    assert differences("multi30k-de-en-bigru-luong", "multi30k-de-en-bilstm-luong") == ["model.cell"]
    for pair in ("en-de", "fr-en"):
        assert differences("multi30k-de-en-bigru-luong", f"multi30k-{pair}-bigru-luong") == ["data.corpus"]


# ----------------------------------------------------------------------------- learning

def test_an_attention_model_learns_to_reverse_sequences(reversal, tmp_path):
    directory, data = reversal
    config = write_config(tmp_path, data, model={"attention": "luong_general"},
                          training={"epochs": 10, "batch_tokens": 1024, "bleu_every": 0})
    seconds = run_training(config, tmp_path / "run")
    accuracy = exact_match(tmp_path / "run", data)
    print(f"reversal with attention: exact match {accuracy:.1%} after {seconds:.0f} s")
    assert accuracy >= 0.95


def test_a_model_without_attention_learns_a_shorter_reversal(tmp_path):
    data = make_task(tmp_path, "short", {"train": reversal_pairs(4000, 4, "abcdefgh", (2, 5)),
                                         "validation": reversal_pairs(200, 5, "abcdefgh", (2, 5)),
                                         "test": reversal_pairs(300, 6, "abcdefgh", (2, 5))})
    config = write_config(tmp_path, data, model={"attention": None},
                          training={"epochs": 20, "batch_tokens": 1024, "bleu_every": 0})
    seconds = run_training(config, tmp_path / "run")
    accuracy = exact_match(tmp_path / "run", data)
    print(f"short reversal without attention: exact match {accuracy:.1%} after {seconds:.0f} s")
    assert accuracy >= 0.9


def test_progress_into_a_log_file_is_plain_lines(reversal, tmp_path, capsys):
    """With stdout not a terminal (here pytest's capture) no progress bar is written: the log
    gets a plain line at the end of each epoch (and every 30 s)."""
    import re

    from translator.training.trainer import Trainer

    _, data = reversal
    config = write_config(tmp_path, data, training={"epochs": 2, "batch_tokens": 1024, "bleu_every": 0})
    lines = []
    Trainer(config, tmp_path / "run", log=lines.append).train()
    progress = [line for line in lines if re.match(r"epoch \d: batch", line)]
    assert len(progress) == 2, lines
    for epoch, line in enumerate(progress, 1):
        assert re.fullmatch(rf"epoch {epoch}: batch (\d+)/\1, loss [\d.]+, lr [\d.e-]+, tok/s [\d,]+", line), line
    assert "\x1b[" not in capsys.readouterr().out


def test_mixed_bfloat16_training_saves_a_bfloat16_model_and_leaves_the_global_policy_alone(reversal, tmp_path):
    import keras

    from translator.decoding.search import GreedyTranslator

    _, data = reversal
    config = write_config(tmp_path, data, training={"epochs": 1, "batch_tokens": 1024, "bleu_every": 0,
                                                    "precision": "mixed_bfloat16"})
    run_training(config, tmp_path / "run")
    assert keras.config.dtype_policy().name == "float32"
    model = keras.saving.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    assert model.decoder.dtype_policy.name == "mixed_bfloat16"
    assert model.decoder.output_layer.kernel.dtype == "float32"  # weights stay float32
    assert len(GreedyTranslator(model)(np.array([[5, 6, 7]], dtype="int32"))) == 1
    from translator import Translator

    detail = Translator.load(tmp_path / "run").translate_detailed(["a b c"], beam_size=3, attention=True)[0]
    assert detail.attention.dtype == np.float32 and detail.n_best  # bfloat16 weights, float32 search
    # Decoding casts the weights to bfloat16 once and fuses each step's products (one
    # rounding instead of several): the mixed model's logits up to bfloat16 rounding.
    from translator.models.seq2seq import computing_in

    copy = computing_in(model, "bfloat16")
    assert copy.decoder.output_layer.kernel.dtype == "bfloat16" and computing_in(copy, "bfloat16") is copy
    batch = np.array([[5, 6, 7, 8, 0], [9, 8, 7, 6, 5], [4, 0, 0, 0, 0]], dtype="int32")
    tokens = np.array([1, 5, 9], dtype="int32")
    mixed = np.asarray(model.decoder.step(tokens, model.encode(batch))[0], dtype="float32")
    fused = np.asarray(copy.decoder.step(tokens, copy.encode(batch))[0], dtype="float32")
    assert np.abs(fused - mixed).max() <= 0.02 * np.abs(mixed).max()


# ----------------------------------------------------------------------------- the model

def build(**settings):
    import keras

    from translator.models.seq2seq import Seq2Seq

    keras.utils.set_random_seed(7)
    return Seq2Seq.from_settings({"embedding_dim": 8, "units": 12, **settings}, 17, 19)


MODEL_VARIANTS = [
    {"attention": None}, {"attention": "bahdanau"}, {"attention": "luong_dot"},
    {"attention": "luong_general", "bidirectional": True, "encoder_layers": 2, "decoder_layers": 2},
    {"cell": "gru", "feed_context": True}, {"cell": "rnn", "reverse_source": True, "attention": "bahdanau"},
]


@pytest.mark.parametrize("settings", MODEL_VARIANTS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_padding_never_changes_outputs_or_loss(settings):
    from translator.models.seq2seq import sequence_loss

    model = build(**settings)
    source = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], dtype="int32")
    target_input = np.array([[2, 5, 6], [2, 7, 0]], dtype="int32")
    target_output = np.array([[5, 6, 3], [7, 3, 0]], dtype="int32")
    short = np.asarray(model((source, target_input)))
    padded = np.asarray(model((np.pad(source, ((0, 0), (0, 5))), np.pad(target_input, ((0, 0), (0, 4))))))
    real = target_output != 0
    np.testing.assert_allclose(padded[:, :3][real], short[real], atol=1e-5)
    loss_short = sequence_loss(short, target_output)
    loss_padded = sequence_loss(padded, np.pad(target_output, ((0, 0), (0, 4))))
    np.testing.assert_allclose(np.array(loss_padded), np.array(loss_short), rtol=1e-5)


@pytest.mark.parametrize("settings", MODEL_VARIANTS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_fusing_for_inference_keeps_every_decoding_number(settings):
    """`Seq2Seq.fuse_for_inference` (the encoder's input table, the decoder's fused step
    kernels) changes how decoding computes, not what: the same cache, logits and translations."""
    from translator.decoding.search import GreedyTranslator, beam_search

    model = build(**settings)
    source = np.array([[5, 6, 7, 8], [9, 10, 0, 0], [4, 0, 0, 0]], dtype="int32")
    tokens = np.array([2, 5, 9], dtype="int32")
    cache = model.encode(source)
    logits = np.asarray(model.decoder.step(tokens, cache)[0])
    greedy, beams = GreedyTranslator(model)(source), beam_search(model, source, beam_size=3)
    model.fuse_for_inference()
    assert model.encoder.input_table is not None
    fused_cache = model.encode(source)
    assert fused_cache.keys() == cache.keys()
    for key, value in cache.items():  # states, memory, its mask and projection
        np.testing.assert_allclose(np.asarray(fused_cache[key]), np.asarray(value), atol=1e-5, err_msg=key)
    np.testing.assert_allclose(np.asarray(model.decoder.step(tokens, fused_cache)[0]), logits, atol=1e-5)
    assert GreedyTranslator(model)(source) == greedy
    fused_beams = beam_search(model, source, beam_size=3)
    np.testing.assert_array_equal(fused_beams[0].numpy(), beams[0].numpy())
    np.testing.assert_allclose(fused_beams[1].numpy(), beams[1].numpy(), atol=1e-5)


def test_save_then_load_gives_identical_logits_and_the_file_alone_decodes(tmp_path):
    import keras

    from translator.decoding.search import GreedyTranslator

    model = build(attention="bahdanau", bidirectional=True, encoder_layers=2, decoder_layers=2, cell="gru")
    source = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], dtype="int32")
    target = np.array([[2, 5, 6], [2, 7, 0]], dtype="int32")
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded((source, target))), np.asarray(model((source, target))))
    assert GreedyTranslator(loaded)(source) == GreedyTranslator(model)(source)
    code = ("import keras, numpy as np, translator.models.seq2seq; from translator.decoding.search import GreedyTranslator; "
            f"m = keras.saving.load_model({str(tmp_path / 'model.keras')!r}, safe_mode=True); "
            "print(GreedyTranslator(m)(np.array([[5, 6, 7, 8], [9, 10, 0, 0]], dtype='int32')))")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == str(GreedyTranslator(model)(source))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("shape", ["stacked", "bidirectional"])
def test_every_cell_stacked_and_bidirectional_trains_a_step(cell, shape):
    import keras
    import tensorflow as tf

    from translator.models.seq2seq import sequence_loss

    settings = {"encoder_layers": 2, "decoder_layers": 2} if shape == "stacked" else {"bidirectional": True}
    model = build(cell=cell, attention="luong_general", **settings)
    optimizer = keras.optimizers.Adam(0.01)
    source = np.array([[5, 6, 7, 8], [9, 10, 11, 0]], dtype="int32")
    target_input = np.array([[2, 8, 7, 6], [2, 11, 10, 0]], dtype="int32")
    target_output = np.array([[8, 7, 6, 3], [11, 10, 3, 0]], dtype="int32")
    losses = []
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss_sum, count = sequence_loss(model((source, target_input), training=True), target_output)
            loss = loss_sum / count
        gradients = tape.gradient(loss, model.trainable_variables)
        assert all(g is not None and np.isfinite(np.asarray(tf.convert_to_tensor(g))).all() for g in gradients)
        optimizer.apply(gradients, model.trainable_variables)
        losses.append(float(loss))
    assert losses[-1] < losses[0]


# ----------------------------------------------------------------------------- resumption

def read_log(run: Path):
    with open(run / "log.csv") as handle:
        return list(csv.DictReader(handle))


def saved_state(run: Path):
    """The training state and optimizer step count in the run's latest checkpoint (None if none yet)."""
    import json

    import tensorflow as tf

    try:
        checkpoint = tf.train.latest_checkpoint(run / "checkpoints")
        if checkpoint is None:
            return None
        reader = tf.train.load_checkpoint(checkpoint)
        state = json.loads(reader.get_tensor("state/.ATTRIBUTES/VARIABLE_VALUE").decode())
        iterations = int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
        return state, iterations
    except (tf.errors.OpError, ValueError):  # being written right now
        return None


def test_training_killed_mid_epoch_resumes_where_it_stopped(reversal, tmp_path):
    directory, data = reversal
    training = {"epochs": 2, "batch_tokens": 1024, "checkpoint_every": 5, "bleu_every": 0}
    config = write_config(tmp_path, data, model={"dropout": 0.1}, training=training)  # dropout: RNG state resumes too
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "translator", "train", str(config)]

    uninterrupted = tmp_path / "uninterrupted"
    run_training(config, uninterrupted)  # the reference, in this process (no second TensorFlow start-up)
    total_steps = int(read_log(uninterrupted)[-1]["step"])
    per_epoch = total_steps // 2

    run = tmp_path / "interrupted"
    process = subprocess.Popen([*command, "--run", str(run)], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for a checkpoint in the middle of the second epoch
        saved = saved_state(run)
        if saved and per_epoch < saved[0]["step"] < total_steps - 5 and saved[0]["batches_done"]:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "model.keras").exists(), "the run finished before it could be interrupted"

    resumed = subprocess.run([*command, "--run", str(run)], env=environment, capture_output=True, text=True)
    (tmp_path / "resumed.stderr").write_text(resumed.stderr)
    assert resumed.returncode == 0, [line for line in resumed.stderr.splitlines() if "Error" in line][-5:]
    resumed_from = int(resumed.stdout.split("resuming")[1].split("from step ")[1].split(" ")[0].replace(",", ""))
    assert per_epoch < resumed_from < total_steps
    assert f"batch {resumed_from - per_epoch} of {per_epoch}" in resumed.stdout

    state, iterations = saved_state(run)
    assert state["step"] == iterations == total_steps and state["finished"]
    final, reference = read_log(run)[-1], read_log(uninterrupted)[-1]
    assert int(final["step"]) == total_steps
    assert abs(float(final["validation_loss"]) - float(reference["validation_loss"])) < 1e-3


def test_sigterm_stops_between_batches_with_a_consistent_state(reversal, tmp_path):
    _, data = reversal
    # Far more epochs than the test lets it train: on a fast machine 3 epochs ended within the
    # second the test waits, and SIGTERM then met a process that had finished training.
    config = write_config(tmp_path, data, training={"epochs": 50, "batch_tokens": 1024, "checkpoint_every": 1000,
                                                    "bleu_every": 0})
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "translator", "train", str(config), "--run", str(run)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "log.csv").exists():  # the first epoch has ended
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and "stopping after this batch" in output
    state, iterations = saved_state(run)
    assert state["step"] == iterations > 0 and not state["finished"]


# ----------------------------------------------------------------------------- distribution

MIRRORED = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from translator.training.trainer import Trainer
Trainer(sys.argv[1], sys.argv[2]).train()
"""


def test_mirrored_strategy_on_two_cpu_devices_matches_one_device(reversal, tmp_path):
    directory, data = reversal
    training = {"epochs": 1, "batch_tokens": 1024, "bleu_every": 0}
    single = write_config(tmp_path, data, training={**training, "strategy": "default"}, name="single")
    mirrored = write_config(tmp_path, data, training={**training, "strategy": "mirrored"}, name="mirrored")
    run_training(single, tmp_path / "single")
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(mirrored), str(tmp_path / "mirrored")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s)" in result.stdout
    one, two = read_log(tmp_path / "single")[-1], read_log(tmp_path / "mirrored")[-1]
    assert one["step"] == two["step"]
    assert abs(float(one["validation_loss"]) - float(two["validation_loss"])) < 2e-3 * float(one["validation_loss"])


def test_a_recipe_extends_a_base_recipe_and_set_overrides_keys(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("name: base-name\ndata: {corpus: multi30k-de-en, max_source_length: 50}\n"
                    "model: {cell: gru, units: 64}\ndecoding: {beam_size: 10}\n")
    (tmp_path / "variants").mkdir()
    child = tmp_path / "variants" / "child.yaml"
    child.write_text("base: ../base.yaml\nmodel: {cell: lstm}\n")
    config = load_config(child)
    assert config["name"] == "child"  # a recipe's name is its own
    assert config["model"]["cell"] == "lstm" and config["model"]["units"] == 64
    assert config["data"]["max_source_length"] == 50 and config["decoding"]["beam_size"] == 10
    overridden = load_config(child, ["training.epochs=3", "model.attention=bahdanau", "data.tokenizer=null"])
    assert overridden["training"]["epochs"] == 3 and overridden["model"]["attention"] == "bahdanau"
    assert overridden["data"]["tokenizer"] is None

    for override, message in [("training.epochs", "expected SECTION.KEY=VALUE"),
                              ("training.epoch=3", "unknown key 'training.epoch'; allowed keys in 'training'"),
                              ("model.units=-1", "'model.units' is -1; expected a positive integer")]:
        with pytest.raises(ConfigError, match=message):
            load_config(child, [override])
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="'base' makes a cycle"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"base recipe of .*orphan.yaml .*missing.yaml not found"):
        load_config(tmp_path / "orphan.yaml")


def test_train_set_records_the_overridden_config_in_the_run(tmp_path):
    import yaml

    data = make_task(tmp_path, "tiny", {"train": reversal_pairs(200, 4), "validation": reversal_pairs(20, 5)})
    config = write_config(tmp_path, data, training={"epochs": 3, "bleu_every": 0})
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "translator", "train", str(config), "--run", str(run),
                           "--set", "training.epochs=1", "--set", "model.units=16"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["training"]["epochs"] == 1 and saved["model"]["units"] == 16
    assert len(read_log(run)) == 1
    again = subprocess.run([sys.executable, "-m", "translator", "train", str(config), "--run", str(run)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "different config (changed: model.units, training.epochs)" in again.stderr


def test_a_decoder_trains_on_a_frozen_encoder_taken_from_another_run(tmp_path):
    import keras

    from translator.models.runs import RunError
    from translator.training.trainer import Trainer

    data = make_task(tmp_path, "swap", {"train": reversal_pairs(300, 7), "validation": reversal_pairs(20, 8)})
    training = {"epochs": 1, "bleu_every": 0, "batch_tokens": 512}
    first = tmp_path / "first"
    Trainer(write_config(tmp_path, data, training=training, name="first"), first, log=lambda *a: None).train()
    config = write_config(tmp_path, data, name="second", training={
        **training, "initialize_encoder_from": str(first), "freeze_encoder": True, "seed": 99})
    second = tmp_path / "second"
    messages = []
    Trainer(config, second, log=messages.append).train()
    assert any("(frozen: only the decoder trains)" in str(m) for m in messages)
    taken, trained = (keras.saving.load_model(run / "model.keras") for run in (first, second))
    for layer in ("source_embedding", "encoder"):
        for a, b in zip(getattr(taken, layer).get_weights(), getattr(trained, layer).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(taken.decoder.get_weights(), trained.decoder.get_weights()))

    other = make_task(tmp_path / "other", "other", {"train": reversal_pairs(300, 7, symbols="mnopqrstuvwx"),
                                                    "validation": reversal_pairs(20, 8, symbols="mnopqrstuvwx")})
    mismatched = write_config(tmp_path / "other", other, name="third",
                              training={**training, "initialize_encoder_from": str(first)})
    with pytest.raises(RunError, match="source tokenizer .* has other pieces"):
        Trainer(mismatched, tmp_path / "third", log=lambda *a: None).train()
    with pytest.raises(ConfigError, match="'training.freeze_encoder' is true but"):
        validate({"data": {"corpus": "x"}, "training": {"freeze_encoder": True}})


def test_a_time_budget_stops_training_mid_epoch_and_keeps_the_model(tmp_path):
    from translator.training.trainer import Trainer

    data = make_task(tmp_path, "budget", {"train": reversal_pairs(600, 9), "validation": reversal_pairs(20, 10)})
    config = write_config(tmp_path, data, training={"epochs": 5, "bleu_every": 0, "batch_tokens": 256,
                                                     "max_minutes": 0.0001})
    messages = []
    Trainer(config, tmp_path / "run", log=messages.append).train()
    rows = read_log(tmp_path / "run")
    assert len(rows) == 1 and int(rows[0]["step"]) < 10  # one (cut) epoch of a few steps, then the end
    assert any("time budget: training.max_minutes 0.0001 reached" in str(m) for m in messages)
    assert (tmp_path / "run" / "model.keras").is_file()
    with pytest.raises(ConfigError, match="'training.max_minutes' stops on this process's clock"):
        validate({"data": {"corpus": "x"}, "training": {"max_minutes": 5, "strategy": "multi_worker"}})
