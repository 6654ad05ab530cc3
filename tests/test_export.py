"""`translator export`: SavedModels that translate, classify and sample raw text without this package."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import (
    REPOSITORY,
    prepare,
    reversal_pairs,
    write_config,
    write_text_corpus,
    write_toy_translation,
)
from test_heads import rule_examples, write_label_corpus

from translator.data.corpora import read_prepared_split

sys.path.insert(0, str(REPOSITORY / "scripts"))  # check_export.translate_standalone

# Sentences that take every path: empty, blank (Python's whitespace, not only ASCII), unknown
# words, over-long (truncated to the model's 100 pieces), and ordinary ones.
EDGE_CASES = ["", "   ", "\u3000\u2009", "a b c", "zz yy a", "l k j i h g f e", "c", "a " * 130, "b\ta"]


def exported_reversal_run(directory, seed: int, out: str):
    """A weak (one epoch) reversal run trained in mixed_bfloat16, the demo's precision, exported to
    ``directory/out``; returns (run, export directory, test sentences with the edge cases)."""
    from translator.data.corpora import prepare_corpus
    from translator.data.tokenizers import train_tokenizers
    from translator.service.export import export
    from translator.training.trainer import Trainer

    # Targets in capitals and a tokenizer per language: mixing the two up cannot go unseen.
    recipe = write_toy_translation(directory, {split: [(source, target.upper()) for source, target in
                                                       reversal_pairs(count, seed + offset)]
                                               for offset, (split, count) in
                                               enumerate((("train", 3000), ("validation", 100), ("test", 150)))},
                                   name="reverse")
    tokenizer = directory / "reverse-tokenizer.yaml"
    tokenizer.write_text("model_type: word\nvocabulary: separate\nvocab_size: 16\n")
    prepare_corpus(recipe, directory / "work", directory / "mirror")
    train_tokenizers(str(recipe), directory / "work", recipe=str(tokenizer))
    data = {"corpus": str(recipe), "tokenizer": str(tokenizer), "work_dir": str(directory / "work")}
    config = write_config(directory, data, model={"attention": "luong_general"},
                          training={"epochs": 1, "batch_tokens": 1024, "bleu_every": 0,
                                    "precision": "mixed_bfloat16"}, name="weak")
    run = directory / "weak"
    Trainer(config, run, log=lambda *a: None).train()
    export(run, directory / out)
    sentences = read_prepared_split(data["corpus"], "test", data["work_dir"])["source"] + EDGE_CASES
    return run, directory / out, sentences


def test_the_export_translates_like_translator_in_a_process_without_the_package(translation):
    from check_export import translate_standalone

    from translator import Translator

    run, exported, sentences = translation
    result = translate_standalone(exported, sentences, ["translate", "translate_beam_1", "translate_n_best"])
    outputs = {name: values["translations"] for name, values in result["outputs"].items()}

    translator = Translator.load(run)
    assert translator.model.compute_dtype == "bfloat16" and translator.beam_size == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the over-long sentence
        assert outputs["translate"] == translator.translate(sentences)
        assert outputs["translate_beam_1"] == translator.translate(sentences, beam_size=1)
    assert all(text == text.upper() for text in outputs["translate"])  # the target tokenizer's pieces
    assert [len(row) for row in outputs["translate_n_best"]] == [5] * len(sentences)
    assert result["outputs"]["translate_n_best"]["truncated"] == [len(s.split()) > 100 for s in sentences]
    blank = [index for index, sentence in enumerate(sentences) if not sentence.strip()]
    assert blank and all(outputs["translate"][index] == "" for index in blank)


def test_n_best_lists_and_scores_equal_translate_detailed(translation):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from translator import Translator

    run, exported, sentences = translation
    sentences = sentences[:40] + EDGE_CASES[:4]
    loaded = tf.saved_model.load(str(exported))
    n_best = loaded.signatures["translate_n_best"](sentences=tf.constant(sentences))
    best = loaded.signatures["translate"](sentences=tf.constant(sentences))
    details = Translator.load(run).translate_detailed(sentences)
    for row, detail in enumerate(details):
        texts = [text.decode() for text in n_best["translations"][row].numpy().tolist()]
        scores = n_best["scores"][row].numpy().tolist()
        if detail.text:
            assert texts[:len(detail.n_best)] == [text for text, _ in detail.n_best]
            assert scores[:len(detail.n_best)] == pytest.approx([score for _, score in detail.n_best], abs=1e-6)
        elif not sentences[row].strip():  # one empty translation, as translate_detailed lists it
            assert [(text, score) for text, score in zip(texts, scores) if score > -1e8] == detail.n_best == [("", 0.0)]
        assert best["translations"][row].numpy().decode() == detail.text
        assert float(best["scores"][row]) == pytest.approx(detail.score, abs=1e-6)


def test_a_float32_export_translates_like_a_float32_translator(translation, tmp_path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from translator import Translator
    from translator.service.export import export

    run, _, sentences = translation
    result = export(run, tmp_path / "float32", precision="float32", beam_sizes=[1, 3])
    assert "translate_beam_3" in result["signatures"]
    loaded = tf.saved_model.load(str(tmp_path / "float32"))
    translator = Translator.load(run, precision="float32")
    for beam_size in (1, 3):
        texts = loaded.signatures[f"translate_beam_{beam_size}"](sentences=tf.constant(sentences[:60]))
        assert [t.decode() for t in texts["translations"].numpy().tolist()] == \
            translator.translate(sentences[:60], beam_size=beam_size)


def test_saved_model_cli_shows_and_runs_the_export(translation):
    from translator import Translator

    run, exported, _ = translation
    tools = Path(sys.executable).parent
    shown = subprocess.run([str(tools / "saved_model_cli"), "show", "--dir", str(exported), "--all"],
                           capture_output=True, text=True, check=True).stdout
    for name in ("translate", "translate_n_best", "translate_beam_1", "serving_default"):
        assert f"signature_def['{name}']" in shown
    # saved_model_cli itself, in a process that has loaded the SentencePiece ops (`tensorflow_text`).
    runner = ("import sys, tensorflow_text; from tensorflow.python.tools.saved_model_cli import main; "
              "sys.argv[0] = 'saved_model_cli'; main()")
    printed = subprocess.run([sys.executable, "-c", runner, "run", "--dir", str(exported), "--tag_set", "serve",
                              "--signature_def", "translate", "--input_exprs", 'sentences=["a b c d"]'],
                             capture_output=True, text=True, check=True).stdout
    expected = Translator.load(run).translate("a b c d")
    assert f"[b'{expected}']" in printed


def test_the_export_directory_holds_config_readme_and_description(translation):
    run, exported, _ = translation
    assert (exported / "config.yaml").read_text() == (run / "config.yaml").read_text()
    readme = (exported / "README.md").read_text()
    assert "`translate_n_best`" in readme and "saved_model_cli show" in readme
    description = json.loads((exported / "export.json").read_text())
    assert description["kind"] == "translation" and description["beam_sizes"] == [1, 5]
    assert not [path for path in exported.parent.iterdir() if path.name.startswith(".exported")]  # no leftovers


def test_exporting_again_replaces_the_export_and_the_cli_reports_it(translation, tmp_path):
    run, _, _ = translation
    out = tmp_path / "again"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier export")
    printed = subprocess.run([sys.executable, "-m", "translator", "export", "--run", str(run), "--out", str(out),
                              "--beam-sizes"], capture_output=True, text=True, check=True).stdout
    assert "translate_n_best" in printed and "translate_beam_1" not in printed
    assert not (out / "stale.txt").exists() and (out / "saved_model.pb").is_file()
    missing = subprocess.run([sys.executable, "-m", "translator", "export", "--run", str(tmp_path / "none"),
                              "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert missing.returncode == 2 and "not found" in missing.stderr and not (tmp_path / "x").exists()
    zero = subprocess.run([sys.executable, "-m", "translator", "export", "--run", str(run), "--out",
                           str(tmp_path / "x"), "--beam-sizes", "0"], capture_output=True, text=True)
    assert zero.returncode == 2 and "--beam-sizes" in zero.stderr and not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- classifier and language model

def test_a_classifier_export_labels_like_classifier_predict(tmp_path):
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from translator.models.classifiers import Classifier
    from translator.service.export import export
    from translator.training.trainer import Trainer

    data = prepare(tmp_path, write_label_corpus(tmp_path, rule_examples()), tmp_path / "toylabels-tokenizer.yaml")
    config = tmp_path / "classifier.yaml"
    config.write_text(yaml.safe_dump({
        "data": data, "model": {"type": "classifier", "cell": "gru", "embedding_dim": 16, "units": 16,
                                "bidirectional": True, "pooling": "attention"},
        "training": {"epochs": 1, "batch_tokens": 256, "learning_rate": 0.01, "schedule": "constant",
                     "bleu_every": 0}}))
    run = tmp_path / "run"
    Trainer(config, run, log=lambda *a: None).train()
    export(run, tmp_path / "exported")

    texts = [text for _, text in rule_examples(90)] + ["good", "unknown words only", "bad " * 40]
    expected = Classifier.load(run).predict(texts)
    classify = tf.saved_model.load(str(tmp_path / "exported")).signatures["classify"]
    result = classify(texts=tf.constant(texts))
    assert [label.decode() for label in result["labels"].numpy().tolist()] == [label for label, _ in expected]
    np.testing.assert_allclose(result["probabilities"].numpy(), [p for _, p in expected], rtol=1e-6)
    assert result["class_probabilities"].shape == (len(texts), 3)
    # Classifier.predict refuses an empty text; the export answers for no token at all (a batch
    # does not fail for one row), and the other rows are unchanged.
    with_empty = classify(texts=tf.constant(texts[:5] + [""]))
    assert with_empty["labels"].numpy().tolist()[:5] == result["labels"].numpy().tolist()[:5]
    assert with_empty["labels"].numpy()[5].decode() in {"neg", "odd", "pos"}
    assert sorted(json.loads((tmp_path / "exported" / "export.json").read_text())["labels"]) == ["neg", "odd", "pos"]


def test_a_language_model_export_samples_like_language_model_sample(tmp_path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from translator.models.language_models import LanguageModel
    from translator.service.export import export
    from translator.training.trainer import Trainer

    text = "".join(["ROMEO: to be or not\n", "JULIET: that is it\n"][i % 2] for i in range(200))
    data = prepare(tmp_path, write_text_corpus(tmp_path, text), tmp_path / "toytext-tokenizer.yaml")
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump({
        "data": data, "model": {"type": "language_model", "cell": "lstm", "embedding_dim": 8, "units": 32,
                                "decoder_layers": 2},
        "training": {"epochs": 1, "batch_size": 8, "sequence_length": 32, "learning_rate": 0.01,
                     "schedule": "constant", "bleu_every": 0}}))
    run = tmp_path / "run"
    Trainer(config, run, log=lambda *a: None).train()
    export(run, tmp_path / "exported")

    model = LanguageModel.load(run)
    sample = tf.saved_model.load(str(tmp_path / "exported")).signatures["sample"]
    for prime, length, temperature, top_k, seed in (("ROMEO:", 40, 0.0, 0, 1), ("JU", 60, 1.0, 0, 7),
                                                    ("JULIET: ", 50, 0.7, 3, 11), ("RO", 0, 1.0, 0, 2),
                                                    ("J", 30, 1.0, 0, 5), ("\n", 30, 0.0, 0, 1)):
        exported = sample(prime=tf.constant(prime), length=tf.constant(length), temperature=tf.constant(temperature),
                          top_k=tf.constant(top_k), seed=tf.constant(seed))["text"].numpy().decode()
        # A one-token prime ("J", the CLI's default newline) once failed in a two-layer model.
        assert exported == model.sample(prime, length, temperature, top_k, seed=seed)
    with pytest.raises(tf.errors.InvalidArgumentError, match="no token"):
        sample(prime=tf.constant(""), length=tf.constant(5), temperature=tf.constant(1.0),
               top_k=tf.constant(0), seed=tf.constant(1))


def test_translate_from_the_shell_uses_the_runs_export_and_translates_the_same(translation, tmp_path):
    import os
    import shutil

    from translator.service.export import export

    run, _, sentences = translation
    run = Path(shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints", "export")))
    lines = "\n".join(sentence.replace("\t", " ") for sentence in sentences) + "\n"

    def translate(*options):
        done = subprocess.run([sys.executable, "-m", "translator", "translate", "--run", str(run), *options],
                              input=lines, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split("\n")[:-1], done.stderr

    with_model, err = translate()
    assert "using the export" not in err
    export(run)  # into RUN/export, where translate looks
    with_export, err = translate()
    assert f"using the export in {run / 'export'}" in err and with_export == with_model
    long_line = next(index for index, sentence in enumerate(sentences) if len(sentence.split()) > 100) + 1
    assert f"line {long_line} is longer than the model's limit of 100 pieces" in err  # still said
    assert translate("--beam-size", "1")[0] == translate("--beam-size", "1", "--n-best", "1")[0]
    assert "using the export" not in translate("--length-penalty", "1.5")[1]  # another search: the model
    os.utime(run / "model.keras")  # the model changed since the export: not used, and said
    again, err = translate()
    assert again == with_model and "is not the export of" in err and "using the export" not in err
