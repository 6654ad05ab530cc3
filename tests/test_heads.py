"""The language-model and classifier heads on the shared layer library."""

import random
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from conftest import REPOSITORY, prepare, sha256, write_text_corpus

from translator.models.classifiers import Classifier, classification_loss, classification_metrics
from translator.models.language_models import (
    LanguageModel,
    TextStreams,
    WindowLanguageModel,
    sample,
)


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(1234)


def small_language_model(**kwargs):
    settings = {"cell": "lstm", "embedding_dim": 8, "units": 16, "num_layers": 2}
    return LanguageModel(11, **{**settings, **kwargs})


# ----------------------------------------------------------------------------- language model

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carried_state_across_chunks_equals_one_pass(cell):
    model = small_language_model(cell=cell)
    ids = np.random.default_rng(0).integers(1, 11, size=(3, 20)).astype("int32")
    whole = model(ids)
    first, state = model(ids[:, :7], return_state=True)
    second, state = model(ids[:, 7:15], state, return_state=True)
    third = model(ids[:, 15:], state)
    np.testing.assert_allclose(np.concatenate([first, second, third], axis=1), whole, atol=1e-5)


def test_sampling_at_temperature_towards_zero_equals_greedy():
    model = small_language_model()
    prime = tf.constant([[3, 4, 5], [6, 7, 8]], tf.int32)
    _, state = model(prime[:, :-1], return_state=True)

    # Greedy by hand: the most likely token, one decoder step at a time.
    tokens, cache, expected = prime[:, -1], state, []
    for _ in range(12):
        logits, cache, _ = model.decoder.step(tokens, cache)
        tokens = tf.argmax(logits, axis=-1, output_type=tf.int32)
        expected.append(tokens.numpy())
    expected = np.stack(expected, axis=1)

    for temperature in (0.0, 1e-4):
        drawn = sample(model.decoder.step, state, prime[:, -1], 12, temperature, 0, tf.constant([5, 0]))
        np.testing.assert_array_equal(drawn, expected)
    # At temperature 1 the draws differ from greedy and depend on the seed only.
    hot = [sample(model.decoder.step, state, prime[:, -1], 12, 1.0, 0, tf.constant([s, 0])).numpy()
           for s in (5, 5, 6)]
    np.testing.assert_array_equal(hot[0], hot[1])
    assert not np.array_equal(hot[0], hot[2])
    # top_k = 1 is greedy whatever the temperature.
    np.testing.assert_array_equal(sample(model.decoder.step, state, prime[:, -1], 12, 1.0, 1, tf.constant([7, 0])),
                                  expected)


def test_text_streams_cover_the_text_in_order():
    streams = TextStreams(np.arange(1, 24), streams=2, length=5)
    chunks = list(streams.chunks())
    assert len(streams) == len(chunks) == 3  # 11 tokens per stream: chunks of 5, 5 and 1
    inputs = np.concatenate([c[0] for c in chunks], axis=1)
    targets = np.concatenate([c[1] for c in chunks], axis=1)
    np.testing.assert_array_equal(inputs, [np.arange(1, 12), np.arange(12, 23)])
    np.testing.assert_array_equal(targets, inputs + 1)
    assert [c[0].shape[1] for c in list(streams.chunks(skip=2))] == [1]


def test_language_model_save_and_load_round_trip(tmp_path):
    model = small_language_model(dropout=0.1, tie_embeddings=True)
    ids = np.random.default_rng(1).integers(1, 11, size=(2, 9)).astype("int32")
    expected = model(ids)
    model.save(tmp_path / "lm.keras")
    loaded = keras.saving.load_model(tmp_path / "lm.keras")
    assert isinstance(loaded, LanguageModel)
    np.testing.assert_allclose(loaded(ids), expected, atol=1e-6)


# ----------------------------------------------------------------------------- classifier

@pytest.mark.parametrize("pooling", ["final", "attention", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_output_does_not_depend_on_padding(pooling, bidirectional):
    model = Classifier(20, ["a", "b", "c"], cell="gru", embedding_dim=8, units=12, num_layers=2,
                       bidirectional=bidirectional, pooling=pooling, ensemble=2 if bidirectional else 1)
    rows = [[3, 4, 5, 6], [7, 8]]
    short = np.array([[3, 4, 5, 6], [7, 8, 0, 0]], dtype="int32")
    long = np.pad(short, ((0, 0), (0, 5)))
    np.testing.assert_allclose(model(short), model(long), atol=1e-5)
    alone = np.concatenate([model(np.array([row], dtype="int32")) for row in rows])
    np.testing.assert_allclose(alone, model(short), atol=1e-5)
    logits, weights = model(long, return_attention=True)
    assert logits.shape == (2, 3)
    if pooling == "attention":
        np.testing.assert_allclose(np.asarray(weights).sum(axis=1), 1.0, atol=1e-5)
        assert np.all(np.asarray(weights)[1, 2:] == 0)


@pytest.mark.parametrize("ensemble", [1, 3])
def test_classifier_save_and_load_round_trip(tmp_path, ensemble):
    model = Classifier(20, ["neg", "pos"], embedding_dim=8, units=12, pooling="attention", dropout=0.2,
                       ensemble=ensemble)
    ids = np.array([[3, 4, 5], [6, 0, 0]], dtype="int32")
    expected = model(ids)
    model.save(tmp_path / "classifier.keras")
    loaded = keras.saving.load_model(tmp_path / "classifier.keras")
    assert loaded.label_names == ["neg", "pos"]
    assert len(loaded.members()) == ensemble
    np.testing.assert_allclose(loaded(ids), expected, atol=1e-6)


def test_an_ensemble_averages_its_members_probabilities():
    model = Classifier(20, ["a", "b", "c"], cell="gru", embedding_dim=8, units=12, pooling="max", ensemble=3)
    ids = np.array([[3, 4, 5], [6, 0, 0]], dtype="int32")
    members = [np.asarray(logits) for logits, _ in model.member_logits(ids)]
    assert len(members) == 3 and not np.allclose(members[0], members[1])  # initialised apart
    expected = np.mean([np.asarray(tf.nn.softmax(logits)) for logits in members], axis=0)
    np.testing.assert_allclose(np.asarray(tf.nn.softmax(model(ids))), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict_ids([[3, 4, 5], [6]]), expected, atol=1e-6)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_classification_loss_equals_keras_crossentropy(label_smoothing):
    logits = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    labels = np.array([0, 3, 4, 1])
    expected = keras.losses.categorical_crossentropy(np.eye(5)[labels], logits, from_logits=True,
                                                     label_smoothing=label_smoothing)
    np.testing.assert_allclose(classification_loss(logits, labels, label_smoothing), expected, rtol=1e-5)


def test_classification_metrics():
    metrics = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # F1: a = 0.5, b = 0.8, c = 0
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert metrics["per_class"]["b"]["support"] == 2


# ----------------------------------------------------------------------------- learning through `translator train`

def write_label_corpus(directory, examples):
    mirror = directory / "mirror" / "toylabels"
    mirror.mkdir(parents=True)
    data = "".join(f"{label} {text}\n" for label, text in examples).encode()
    (mirror / "train.txt").write_bytes(data)
    recipe = directory / "toylabels.yaml"
    recipe.write_text(f"name: toylabels\ntask: classification\nformat: label_first\n"
                      f"make_splits:\n  seed: 1\n  validation: 0.1\n  test: 0.1\n  stratify: true\n"
                      f"files:\n  train:\n    path: toylabels/train.txt\n    url: {(mirror / 'train.txt').as_uri()}\n"
                      f"    sha256: {sha256(data)}\n")
    words = {w for _, text in examples for w in text.split()}
    (directory / "toylabels-tokenizer.yaml").write_text(f"model_type: word\nvocab_size: {len(words) + 4}\n")
    return recipe


def run_cli(*arguments, stdin=""):
    return subprocess.run([sys.executable, "-m", "translator", *arguments], input=stdin, capture_output=True,
                          text=True, cwd=REPOSITORY, check=True).stdout


@pytest.mark.parametrize("model_settings, most_loss, kind", [
    ({"cell": "gru", "embedding_dim": 16, "units": 64}, 0.3, LanguageModel),
    ({"window": 8, "embedding_dim": 8, "units": 64}, 0.5, WindowLanguageModel),  # the MLP over 8 characters
])
def test_language_model_learns_a_text_and_samples_it(tmp_path, model_settings, most_loss, kind):
    from translator.training.trainer import Trainer

    lines = ["ROMEO: to be or not\n", "JULIET: that is it\n"]
    text = "".join(lines[i % 2] for i in range(400))
    data = prepare(tmp_path, write_text_corpus(tmp_path, text), tmp_path / "toytext-tokenizer.yaml")
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump({
        "data": data,
        "model": {"type": "language_model", "decoder_layers": 1, **model_settings},
        "training": {"epochs": 6, "batch_size": 8, "sequence_length": 32, "learning_rate": 0.01,
                     "schedule": "constant", "bleu_every": 0, "checkpoint_every": 20}}))
    run = tmp_path / "run"
    messages = []
    Trainer(config, run, log=messages.append).train()
    log = (run / "log.csv").read_text().splitlines()
    header, last = log[0].split(","), log[-1].split(",")
    assert float(last[header.index("validation_loss")]) < most_loss  # nats per character; uniform is 3.0
    architecture = "MLP over 8 tokens" if kind is WindowLanguageModel else "gru"
    assert any(message.startswith("model: language_model") and f"({architecture})" in message for message in messages)

    model = LanguageModel.load(run)
    assert type(model) is kind
    assert model.sample("ROMEO:", length=len(" to be or not\nJULIET:"), temperature=0) == \
        "ROMEO: to be or not\nJULIET:"
    assert model.sample("JU", length=30, temperature=0.5, seed=3) == model.sample("JU", length=30, temperature=0.5,
                                                                                seed=3)
    printed = run_cli("sample", "--run", str(run), "--prime", "JULIET:", "--length", "12", "--temperature", "0")
    assert printed == "JULIET: that is it\n\n"


def rule_examples(count=600):
    """Texts of filler words with one keyword that decides the label."""
    generator = random.Random(0)
    filler = "the a one two three four five six seven eight".split()
    examples = []
    for index in range(count):
        words = [generator.choice(filler) for _ in range(generator.randint(3, 9))]
        label = ["pos", "neg", "odd"][index % 3]
        words.insert(generator.randint(0, len(words)), {"pos": "good", "neg": "bad", "odd": "weird"}[label])
        examples.append((label, " ".join(words)))
    return examples


def test_classifier_learns_a_rule_and_classifies_from_the_cli(tmp_path):
    from translator.decoding.evaluation import evaluate
    from translator.training.trainer import Trainer

    data = prepare(tmp_path, write_label_corpus(tmp_path, rule_examples()), tmp_path / "toylabels-tokenizer.yaml")
    config = tmp_path / "classifier.yaml"
    config.write_text(yaml.safe_dump({
        "data": data,
        "model": {"type": "classifier", "cell": "gru", "embedding_dim": 16, "units": 32, "bidirectional": True,
                  "pooling": "max"},
        "training": {"epochs": 6, "batch_tokens": 256, "learning_rate": 0.01, "schedule": "constant",
                     "class_weights": "balanced", "early_stopping_metric": "validation_accuracy", "bleu_every": 0}}))
    run = tmp_path / "run"
    Trainer(config, run, log=lambda *a: None).train()

    report = evaluate(run, "test")
    assert report["accuracy"] >= 0.95
    assert {"report.json", "report.md", "report.html"} <= {p.name for p in run.iterdir()}
    assert "data:image/png;base64," in (run / "report.html").read_text()

    model = Classifier.load(run)
    predictions = model.predict(["one good two", "bad three", "four weird"])
    assert [label for label, _ in predictions] == ["pos", "neg", "odd"]
    assert all(0.5 < probability <= 1.0 for _, probability in predictions)
    printed = run_cli("classify", "--run", str(run), stdin="one good two\nbad three\n")
    assert [line.split("\t")[0] for line in printed.splitlines()] == ["pos", "neg"]



def test_an_ensemble_run_trains_its_members_from_successive_seeds_and_averages_them(tmp_path):
    from translator.training.trainer import Trainer

    data = prepare(tmp_path, write_label_corpus(tmp_path, rule_examples(300)), tmp_path / "toylabels-tokenizer.yaml")
    config = tmp_path / "ensemble.yaml"
    config.write_text(yaml.safe_dump({
        "data": data,
        "model": {"type": "classifier", "cell": "gru", "embedding_dim": 8, "units": 16, "ensemble": 2},
        "training": {"epochs": 2, "batch_tokens": 256, "learning_rate": 0.01, "seed": 7, "bleu_every": 0}}))
    run = tmp_path / "run"
    Trainer(config, run, log=lambda *a: None).train()
    members = [Classifier.load(run / "members" / str(index)) for index in (1, 2)]
    assert [yaml.safe_load((run / "members" / str(index) / "config.yaml").read_text())["training"]["seed"]
            for index in (1, 2)] == [7, 8]
    ids = [[4, 5, 6], [7], [5, 4, 6, 7, 8]]
    expected = np.mean([member.predict_ids(ids) for member in members], axis=0)
    assert not np.allclose(members[0].predict_ids(ids), members[1].predict_ids(ids))
    model = Classifier.load(run)
    assert len(model.members()) == 2
    np.testing.assert_allclose(model.predict_ids(ids), expected, atol=1e-6)
    assert (run / "log.csv").read_text().splitlines()[0].startswith("member,epoch")

    written = (run / "members" / "1" / "model.keras").stat().st_mtime_ns
    Trainer(config, run, log=lambda *a: None).train()  # finished members are not trained again
    assert (run / "members" / "1" / "model.keras").stat().st_mtime_ns == written
    np.testing.assert_allclose(Classifier.load(run).predict_ids(ids), expected, atol=1e-6)
