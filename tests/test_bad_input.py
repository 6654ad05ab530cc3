"""Bad input and faults, tried as a demanding user would: every probe ends in the right result or
in one clear line that names the file, line, key or argument, and never in a traceback.

The command-line probes run `translator` as a subprocess, as a user runs it. Killing training
with SIGKILL and resuming bit-identically is tested in test_training.py
(`test_training_killed_mid_epoch_resumes_where_it_stopped`).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_task, reversal_pairs, sha256, write_config, write_parallel_recipe

from translator.data.corpora import CorpusError, prepare_corpus, read_prepared_split
from translator.files import read_yaml

ENVIRONMENT = {**os.environ, "PYTHONUNBUFFERED": "1", "TRANSLATOR_DEBUG": ""}


def cli(*arguments, stdin: bytes | str = b"", cwd=None):
    """``translator ARGUMENTS`` in a subprocess; returns (exit status, stdout, stderr) as text."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run([sys.executable, "-m", "translator", *map(str, arguments)], input=data,
                          capture_output=True, env=ENVIRONMENT, cwd=cwd, timeout=300)
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def fails_clearly(result, *named: str, status: int = 2) -> str:
    """Asserts the exit status, that stderr names every string in `named`, and has no traceback."""
    code, _, err = result
    assert code == status, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    for name in named:
        assert name in err, (name, err[-2000:])
    return err


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A prepared generated corpus (xx -> yy), its word tokenizer, and a run trained on it."""
    from translator.training.trainer import Trainer

    directory = tmp_path_factory.mktemp("probes")
    data = make_task(directory, "probe", {"train": reversal_pairs(600, 21), "validation": reversal_pairs(40, 22),
                                          "test": reversal_pairs(40, 23)})
    config = write_config(directory, data, training={"epochs": 1, "batch_tokens": 512, "bleu_every": 0},
                          name="probe-run")
    run = directory / "run"
    Trainer(config, run, log=lambda *a: None).train()
    return directory, data, config, run


def copy_run(run: Path, destination: Path) -> Path:
    shutil.copytree(run, destination, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    return destination


# ----------------------------------------------------------------------------- corpora and recipes

def test_raw_corpus_faults_name_the_file_line_and_fix(tmp_path):
    # a file missing from the mirror
    recipe = write_parallel_recipe(tmp_path, ["a b"], ["b a"])
    (tmp_path / "mirror" / "toy" / "train.yy").unlink()
    fails_clearly(cli("data", recipe, "--data-dir", tmp_path / "mirror", "--work-dir", tmp_path / "w"),
                  "toy/train.yy", str(tmp_path / "mirror"), "file://")
    # unequal line counts
    recipe = write_parallel_recipe(tmp_path / "uneven", ["a", "b", "c"], ["a", "b"])
    fails_clearly(cli("data", recipe, "--data-dir", tmp_path / "uneven" / "mirror", "--work-dir", tmp_path / "w"),
                  "has 3 lines", "has 2", "train.xx", "train.yy")
    # a line that is not UTF-8
    recipe = write_parallel_recipe(tmp_path / "bytes", ["a", b"b \xff c"], ["a", "b"])
    fails_clearly(cli("data", recipe, "--data-dir", tmp_path / "bytes" / "mirror", "--work-dir", tmp_path / "w"),
                  "train.xx, line 2: not valid UTF-8")
    # a checksum mismatch
    recipe = write_parallel_recipe(tmp_path / "edited", ["a"], ["b"])
    (tmp_path / "edited" / "mirror" / "toy" / "train.xx").write_text("edited\n")
    fails_clearly(cli("data", recipe, "--data-dir", tmp_path / "edited" / "mirror", "--work-dir", tmp_path / "w"),
                  "train.xx: sha256 is", "replace it with the original")


def test_empty_lines_in_a_raw_corpus_are_dropped_and_counted(tmp_path):
    recipe = write_parallel_recipe(tmp_path, ["a b", "", "c d"], ["b a", "x", "d c"])
    code, out, err = cli("data", recipe, "--data-dir", tmp_path / "mirror", "--work-dir", tmp_path / "w")
    assert code == 0, err
    assert "empty 1" in out
    assert read_prepared_split(recipe, "train", tmp_path / "w")["source"] == ["a b", "c d"]


def test_duplicate_yaml_keys_are_refused_in_every_file_the_project_reads(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("data:\n  corpus: multi30k-de-en\ntraining:\n  epochs: 1\n  epochs: 3\n")
    fails_clearly(cli("train", twice, "--run", tmp_path / "run"), str(twice), "'epochs' is given twice",
                  "line 4", "line 5")
    assert not (tmp_path / "run").exists()
    recipe = write_parallel_recipe(tmp_path, ["a"], ["b"])
    recipe.write_text(recipe.read_text() + "task: translation\n")
    fails_clearly(cli("data", recipe, "--data-dir", tmp_path / "mirror"), str(recipe), "'task' is given twice")
    tokenizer = tmp_path / "tokenizer.yaml"
    tokenizer.write_text("model_type: word\nvocab_size: 10\nvocab_size: 20\n")
    with pytest.raises(ValueError, match=r"tokenizer.yaml: key 'vocab_size' is given twice, on line 2 and on line 3"):
        read_yaml(tokenizer)


def test_config_faults_name_the_key_and_what_is_allowed(tmp_path):
    cases = {
        "unknown key": ("data: {corpus: x}\nmodel: {celll: lstm}\n", ["unknown key 'model.celll'", "cell"]),
        "bad value": ("data: {corpus: x}\nmodel: {cell: lstn}\n", ["'model.cell' is 'lstn'", "'gru'"]),
        "negative epochs": ("data: {corpus: x}\ntraining: {epochs: -2}\n",
                            ["'training.epochs' is -2", "a positive integer"]),
        "syntax error": ("data: {corpus: x}\ntraining: {epochs: [1}\n", ["not valid YAML", "line 2"]),
    }
    for name, (text, named) in cases.items():
        config = tmp_path / f"{name.replace(' ', '-')}.yaml"
        config.write_text(text)
        fails_clearly(cli("train", config, "--run", tmp_path / "run"), str(config), *named)
    fails_clearly(cli("train", tmp_path / "nowhere.yaml"), "nowhere.yaml not found", "configs/")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- prepared data

def test_a_prepared_split_cut_short_or_edited_is_refused_by_every_later_stage(toy, tmp_path):
    directory, data, config, _ = toy
    work = tmp_path / "work"
    shutil.copytree(Path(data["work_dir"]), work)
    edited = {**data, "work_dir": str(work)}
    config_here = write_config(tmp_path, edited, training={"epochs": 1, "bleu_every": 0})
    train = work / "probe" / "train.xx"
    lines = train.read_bytes().split(b"\n")
    train.write_bytes(b"\n".join(lines[:200]) + b"\n")  # as a write interrupted between the two files leaves it

    fails_clearly(cli("tokenizers", data["corpus"], "--recipe", data["tokenizer"], "--work-dir", work),
                  str(train), "200 lines where it wrote 600", "translator data")
    fails_clearly(cli("train", config_here, "--run", tmp_path / "run"), str(train), "200 lines where it wrote 600")
    with pytest.raises(CorpusError, match="is not the file `translator data` wrote"):
        read_prepared_split(data["corpus"], "train", work)

    train.write_bytes(b"\n".join(lines))  # the same length, one word changed: the hash tells
    test = work / "probe" / "test.yy"
    test.write_bytes(test.read_bytes().replace(b"a", b"b", 1))
    with pytest.raises(CorpusError, match=r"test.yy is not the file `translator data` wrote"):
        read_prepared_split(data["corpus"], "test", work)


def test_a_run_refuses_to_resume_on_a_corpus_prepared_again_differently(toy, tmp_path):
    from translator.training.trainer import Trainer, TrainingError

    directory, data, _, _ = toy
    work = tmp_path / "work"
    shutil.copytree(Path(data["work_dir"]), work)
    here = {**data, "work_dir": str(work)}
    config = write_config(tmp_path, here, training={"epochs": 2, "bleu_every": 0, "checkpoint_every": 5})
    run = tmp_path / "run"
    Trainer(config, run, log=lambda *a: None).train()
    assert json.loads((run / "data.json").read_text())["prepared_files"]["train.xx"]

    # the same data and tokenizer prepared again: the run resumes (here: reports that it finished)
    from translator.data.tokenizers import train_tokenizers

    prepare_corpus(data["corpus"], work, directory / "mirror")
    train_tokenizers(data["corpus"], work, recipe=data["tokenizer"])
    messages = []
    Trainer(config, run, log=messages.append).train()
    assert "has finished training" in messages[-1]

    # prepared again with other filters: refused, naming what changed
    from translator.data.corpora import Cleaning, resolve_corpus

    prepare_corpus(data["corpus"], work, directory / "mirror",
                   Cleaning.from_recipe(resolve_corpus(data["corpus"]).recipe, max_length=5))
    with pytest.raises(TrainingError, match=r"trained on other data .*train\.xx.*Start a new run"):
        Trainer(config, run, log=lambda *a: None).train()
    fails_clearly(cli("train", config, "--run", run), "train.xx", "train.yy", "resuming would continue on different data")


def test_a_tokenizer_setting_added_later_at_its_default_does_not_change_the_data_fingerprint(tmp_path):
    """A run started before tokenizer recipes had ``user_defined_symbols`` resumes after its
    tokenizer is trained again with the key at its default (the same vocabularies); another
    value of it is a change."""
    from translator.training.trainer import data_fingerprint

    (tmp_path / "de.vocab").write_text("a\t0\n")
    manifest = {"corpus": "c", "outputs": {"train.de": "0" * 64}}
    fingerprints = []
    for extra in ({}, {"user_defined_symbols": []}, {"user_defined_symbols": ["<sep>"]}):
        card = {"settings": {"model_type": "bpe", "vocab_size": 8000, **extra}}
        (tmp_path / "card.json").write_text(json.dumps(card))
        fingerprints.append(data_fingerprint(manifest, tmp_path)["tokenizers"]["settings"])
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]
    card = {"settings": {"model_type": "bpe", "vocab_size": 8000, "hard_vocab_limit": True}}
    (tmp_path / "card.json").write_text(json.dumps(card))
    assert data_fingerprint(manifest, tmp_path)["tokenizers"]["settings"] == fingerprints[0]  # a default: left out


def test_a_run_recorded_with_the_first_fingerprint_resumes_and_is_recorded_anew(tmp_path):
    """data.json of version 1 (every tokenizer setting hashed but two added later) is compared as
    it was recorded, then rewritten as version 2; a change is still refused."""
    from translator.training.trainer import (
        TrainingError,
        check_same_data,
        data_fingerprint,
        version_1_fingerprint,
    )

    tokenizers, run = tmp_path / "tokenizers", tmp_path / "run"
    tokenizers.mkdir(), run.mkdir()
    (tokenizers / "de.vocab").write_text("a\t0\n")
    settings = {"model_type": "bpe", "vocab_size": 8000, "vocabulary": "separate", "user_defined_symbols": []}
    (tokenizers / "card.json").write_text(json.dumps({"settings": settings}))
    manifest = {"corpus": "c", "outputs": {"train.de": "0" * 64}}
    old = version_1_fingerprint(manifest, tokenizers)
    assert "version" not in old and old["tokenizers"] != data_fingerprint(manifest, tokenizers)["tokenizers"]
    (run / "data.json").write_text(json.dumps(old))
    check_same_data(run, tmp_path, manifest, tokenizers)
    assert json.loads((run / "data.json").read_text()) == data_fingerprint(manifest, tokenizers)
    assert data_fingerprint(manifest, tokenizers)["version"] == 2
    (run / "data.json").write_text(json.dumps(old))
    (tokenizers / "de.vocab").write_text("b\t0\n")
    with pytest.raises(TrainingError, match="tokenizer de.vocab"):
        check_same_data(run, tmp_path, manifest, tokenizers)
    assert json.loads((run / "data.json").read_text()) == old  # nothing rewritten


# Points at which `translator data` is killed: the n-th os.replace (each file moved into place,
# then the manifest) or the n-th fsync (a file being written). A kill -9 from inside the process
# at a chosen point makes the test deterministic.
KILL_AT = """
import os, signal, sys
what, count = sys.argv[1], int(sys.argv[2])
real = getattr(os, what)
calls = [0]
def killing(*args, **kwargs):
    calls[0] += 1
    if calls[0] == count:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(os, what, killing)
from translator.cli import main
sys.exit(main(sys.argv[3:]))
"""


def test_killing_translator_data_at_any_point_never_leaves_a_corpus_a_later_stage_accepts(tmp_path):
    pairs = reversal_pairs(300, 5)
    recipe = write_parallel_recipe(tmp_path, [s for s, _ in pairs], [t for _, t in pairs])
    mirror, work = tmp_path / "mirror", tmp_path / "work"
    old = subprocess.run([sys.executable, "-m", "translator", "data", str(recipe), "--data-dir", str(mirror),
                          "--work-dir", str(work)], capture_output=True, env=ENVIRONMENT, check=True)
    assert old.returncode == 0
    complete = read_prepared_split(recipe, "train", work)
    # Then prepared again with a filter (other files), killed at each point of the writing.
    for what, count in [("fsync", 1), ("fsync", 2), ("fsync", 3), ("replace", 1), ("replace", 2),
                        ("replace", 3), ("replace", 4)]:
        command = [sys.executable, "-c", KILL_AT, what, str(count), "data", str(recipe), "--data-dir", str(mirror),
                   "--work-dir", str(work), "--max-length", "4"]
        killed = subprocess.run(command, capture_output=True, env=ENVIRONMENT, timeout=120)
        point = f"{what} #{count}"
        if killed.returncode == 0:  # the write had fewer such points: the corpus is complete and new
            columns = read_prepared_split(recipe, "train", work)
        else:
            assert killed.returncode == -9, (point, killed.stderr.decode()[-1000:])
            try:
                columns = read_prepared_split(recipe, "train", work)
            except (CorpusError, FileNotFoundError):
                continue  # refused: what a later stage must do with an incomplete corpus
        filtered = all(len(line.split()) <= 4 for line in columns["source"])
        assert columns == complete or filtered, point
        assert len(columns["source"]) == len(columns["target"]), point
        assert [" ".join(reversed(s.split())) for s in columns["source"]] == columns["target"], point
    # A complete run after the kills cleans up and gives a consistent corpus.
    subprocess.run([sys.executable, "-m", "translator", "data", str(recipe), "--data-dir", str(mirror),
                    "--work-dir", str(work)], capture_output=True, env=ENVIRONMENT, check=True)
    assert read_prepared_split(recipe, "train", work) == complete
    assert not list((work / "toy").glob(".incoming-*"))


# ----------------------------------------------------------------------------- translating from the shell

def test_translate_input_extremes_give_the_right_output(toy):
    run = toy[3]
    code, out, err = cli("translate", "--run", run, "--beam-size", "1", stdin=b"")
    assert code == 0 and out == "" and "Traceback" not in err
    long_line = " ".join("abcdefghijkl"[i % 12] for i in range(5000))  # 10,000 characters
    control = "a \x01 b\tc \x1b[31m d"
    lines = [long_line.encode(), control.encode(), b"a \xff\xfe b", b"k l"]
    code, out, err = cli("translate", "--run", run, "--beam-size", "1", stdin=b"\n".join(lines) + b"\n")
    assert code == 0, err
    assert len(out.split("\n")[:-1]) == 4
    assert "line 1 is longer than the model's limit of 100 pieces" in err
    many = "\n".join(" ".join(pair[0].split()[:3]) for pair in reversal_pairs(5000, 9)) + "\n"
    code, out, err = cli("translate", "--run", run, "--beam-size", "1", "--chunk-size", "700", stdin=many)
    assert code == 0 and len(out.split("\n")[:-1]) == 5000 and "translated 5,000 lines" in err


def test_translate_run_faults_name_the_file(toy, tmp_path):
    run = toy[3]
    fails_clearly(cli("translate", "--run", tmp_path / "missing"), str(tmp_path / "missing"), "not found")
    no_config = copy_run(run, tmp_path / "no-config")
    (no_config / "config.yaml").unlink()
    fails_clearly(cli("translate", "--run", no_config), str(no_config / "config.yaml"), "not found")
    no_tokenizers = copy_run(run, tmp_path / "no-tokenizers")
    shutil.rmtree(no_tokenizers / "tokenizers")
    fails_clearly(cli("translate", "--run", no_tokenizers, stdin="a b\n"), "card.json", "translator tokenizers")

    truncated = copy_run(run, tmp_path / "truncated")
    model = truncated / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    fails_clearly(cli("translate", "--run", truncated, stdin="a b\n"), str(model), "is damaged", "best.keras")
    garbage = copy_run(run, tmp_path / "garbage")
    data = bytearray((garbage / "model.keras").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = os.urandom(4096)  # inside the zip: an entry's bytes no longer match
    (garbage / "model.keras").write_bytes(bytes(data))
    fails_clearly(cli("translate", "--run", garbage, stdin="a b\n"), str(garbage / "model.keras"), "damaged")
    with_debug = cli("--debug", "translate", "--run", garbage, stdin="a b\n")
    assert with_debug[0] != 0 and "Traceback" in with_debug[2]  # the traceback stays one flag away


def test_the_wrong_kind_of_run_says_which_kind_and_the_command_for_it(toy, tmp_path):
    from translator import Translator
    from translator.models.classifiers import Classifier
    from translator.models.language_models import LanguageModel
    from translator.models.runs import RunError, load_model_file

    run = toy[3]
    classifier_run = copy_run(run, tmp_path / "classifier")
    config = yaml.safe_load((classifier_run / "config.yaml").read_text())
    config["model"]["type"] = "classifier"
    (classifier_run / "config.yaml").write_text(yaml.safe_dump(config))
    fails_clearly(cli("translate", "--run", classifier_run, stdin="a b\n"), "holds a classifier",
                  f"translator classify --run {classifier_run}")
    with pytest.raises(RunError, match="holds a classifier .* not a translation model"):
        Translator.load(classifier_run)
    with pytest.raises(RunError, match=f"holds a translation model .*translator translate --run {run}"):
        Classifier.load(run)
    with pytest.raises(RunError, match="holds a translation model .* not a language model"):
        LanguageModel.load(run)
    fails_clearly(cli("classify", "--run", run, stdin="a b\n"), "holds a translation model")
    fails_clearly(cli("sample", "--run", run), "holds a translation model")
    with pytest.raises(RunError, match="holds a Seq2Seq model, not a Classifier"):
        load_model_file(run / "model.keras", ("Classifier",))


def test_bad_option_values_end_in_a_usage_error_naming_the_option(toy):
    run = toy[3]
    for option, value, named in [("--batch-size", "0", "must be a positive integer"),
                                 ("--beam-size", "2.5", "expected an integer"),
                                 ("--beam-size", "0", "expected a positive integer"),
                                 ("--length-penalty", "-1", "expected a number in [0.0, 10.0]"),
                                 ("--n-best", "-3", "must be a positive integer")]:
        fails_clearly(cli("translate", "--run", run, option, value), f"argument {option}", named)
    fails_clearly(cli("sample", "--run", run, "--length", "ten"), "argument --length", "expected an integer")
    fails_clearly(cli("sample", "--run", run, "--temperature", "-1"), "argument --temperature", "a number >= 0")
    fails_clearly(cli("data", "x", "--max-length", "0"), "argument --max-length")


def test_text_the_tokenizer_does_not_know_is_reported(toy):
    from translator import Translator

    run = toy[3]
    translator = Translator.load(run)
    shares = translator.unknown_shares(["a b c", "这是一个句子", "a b c d 这是"])
    assert shares[0] == 0.0 and shares[1] == 1.0 and 0 < shares[2] < 0.5
    detail = translator.translate_detailed("这是一个句子", beam_size=1)
    assert detail.unknown_share == 1.0
    code, out, err = cli("translate", "--run", run, "--beam-size", "1", stdin="a b\n这是一个句子\nЭто тоже\n")
    assert code == 0 and len(out.split("\n")[:-1]) == 3
    assert err.count("mostly text the model's tokenizer does not know") == 1  # warned once, for line 2
    assert "line 2 is mostly" in err and "2 of 3 lines were mostly text" in err


def test_evaluate_counts_the_mostly_unknown_sentences(toy, tmp_path):
    from translator.decoding.evaluation import evaluate

    report = evaluate(copy_run(toy[3], tmp_path / "run"), "test", beam_size=1)
    assert report["mostly_unknown_sentences"] == 0
    assert json.loads((tmp_path / "run" / "report.json").read_text())["mostly_unknown_sentences"] == 0


# ----------------------------------------------------------------------------- the Python API

def test_every_public_call_checks_its_arguments(toy):
    from translator import Translator

    translator = Translator.load(toy[3])
    one = translator.translate_detailed("a b c", beam_size=2)  # one string: one Translation
    assert one.source == "a b c" and one.text == translator.translate("a b c", beam_size=2)
    assert isinstance(translator.translate(["a b"]), list)
    with pytest.raises(TypeError, match="sentences must be a string or a list of strings; got NoneType"):
        translator.translate(None)
    with pytest.raises(TypeError, match=r"sentences\[1\] is int 5"):
        translator.translate(["a", 5])
    with pytest.raises(TypeError, match=r"sentences\[0\] is bytes"):
        translator.translate_detailed([b"a b"])
    for arguments, message in [({"batch_size": 0}, "batch_size must be a positive integer; got 0"),
                               ({"beam_size": 2.5}, "beam_size is 2.5; expected a positive integer"),
                               ({"beam_size": "5"}, "beam_size is '5'"),
                               ({"length_penalty": -0.5}, r"length_penalty is -0.5; expected a number in \[0.0, 10.0\]"),
                               ({"max_length_ratio": -1}, "max_length_ratio must be a number >= 0.0"),
                               ({"max_length_offset": 1.5}, "max_length_offset must be an integer >= 0")]:
        with pytest.raises(ValueError, match=message):
            translator.translate(["a b"], **arguments)
    with pytest.raises(ValueError, match="n_best must be a positive integer"):
        translator.translate_detailed(["a b"], n_best=0)
    with pytest.raises(TypeError, match="attention must be True or False"):
        translator.translate_detailed(["a b"], attention="yes")


def test_classifier_and_language_model_calls_check_their_arguments(toy):
    from translator.data.tokenizers import load_tokenizers
    from translator.models.classifiers import Classifier
    from translator.models.language_models import LanguageModel

    tokenizer = load_tokenizers(toy[3] / "tokenizers")["source"]
    classifier = Classifier(tokenizer.vocabulary_size, ["neg", "pos"], embedding_dim=8, units=8)
    classifier.tokenizer = tokenizer
    label, probability = classifier.predict("a b c")  # one string: one pair
    assert label in ("neg", "pos") and 0.5 <= probability <= 1
    assert len(classifier.predict(["a b", "c"])) == 2
    with pytest.raises(ValueError, match=r"texts\[1\] is '': no character the tokenizer keeps"):
        classifier.predict(["a b", "", "  "])
    with pytest.raises(TypeError, match="texts must be a string or a list of strings"):
        classifier.predict(None)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        classifier.predict(["a"], batch_size=0)

    model = LanguageModel(tokenizer.vocabulary_size, embedding_dim=8, units=8, num_layers=1)
    model.tokenizer = tokenizer
    assert model.sample("a b", length=3, seed=1) == model.sample("a b", length=3, seed=1)
    for arguments, message in [({"length": "10"}, "length must be an integer >= 0; got '10'"),
                               ({"length": -1}, "length must be an integer >= 0"),
                               ({"temperature": -1.0}, "temperature must be a number >= 0.0"),
                               ({"temperature": "hot"}, "temperature must be a number"),
                               ({"top_k": 1.5}, "top_k must be an integer >= 0"),
                               ({"seed": "x"}, "seed must be an integer >= 0"),
                               ({"seed": 2**40}, r"seed must be an integer in \[0, 2\*\*31\)")]:
        with pytest.raises(ValueError, match=message):
            model.sample("a", **arguments)
    with pytest.raises(TypeError, match="prime must be a string; got int"):
        model.sample(5)


def test_classify_from_the_shell_refuses_an_empty_line(toy, tmp_path):
    import keras

    from translator.data.tokenizers import load_tokenizers
    from translator.models.classifiers import Classifier

    run = copy_run(toy[3], tmp_path / "classifier")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["type"] = "classifier"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    card = json.loads((run / "tokenizers" / "card.json").read_text())
    card["sides"] = {"text": card["sides"]["source"]}
    (run / "tokenizers" / "card.json").write_text(json.dumps(card))
    size = load_tokenizers(run / "tokenizers")["text"].vocabulary_size
    classifier = Classifier(size, ["neg", "pos"], embedding_dim=8, units=8)
    classifier(np.array([[4, 5]], dtype="int32"))  # built, so that it has weights to save
    classifier.save(run / "model.keras")
    assert isinstance(keras.saving.load_model(run / "model.keras"), Classifier)
    code, out, err = cli("classify", "--run", run, stdin="a b\nc\n")
    assert code == 0 and len(out.splitlines()) == 2, err
    fails_clearly(cli("classify", "--run", run, stdin="a b\n\nc\n"), "line 2 of the input is empty")


def test_eight_threads_sharing_a_translator_get_the_same_translations(toy):
    from translator import Translator

    translator = Translator.load(toy[3])
    sources = [pair[0] for pair in reversal_pairs(48, 31)]
    expected = translator.translate(sources, beam_size=2)
    results, errors = [None] * 8, []

    def work(index):
        try:
            results[index] = translator.translate(sources, beam_size=2, batch_size=5 + index)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and all(result == expected for result in results)


def test_a_tokenizer_that_cannot_be_trained_gets_advice_that_fits_its_model_type(tmp_path):
    from translator.data.tokenizers import TokenizerError, train_tokenizers

    pairs = reversal_pairs(50, 3)
    recipe = write_parallel_recipe(tmp_path, [s for s, _ in pairs], [t for _, t in pairs])
    prepare_corpus(recipe, tmp_path / "work", tmp_path / "mirror")
    for model_type in ("unigram", "bpe"):
        settings = tmp_path / f"{model_type}.yaml"
        settings.write_text(f"model_type: {model_type}\nvocab_size: 5000\n")
        with pytest.raises(TokenizerError, match="Lower vocab_size") as raised:
            train_tokenizers(str(recipe), tmp_path / "work", recipe=str(settings))
        assert ("model_type: bpe" in str(raised.value)) == (model_type == "unigram")


def test_manifest_hashes_are_what_the_files_hold(toy):
    _, data, _, _ = toy
    directory = Path(data["work_dir"]) / "probe"
    manifest = json.loads((directory / "manifest.json").read_text())
    for name, recorded in manifest["outputs"].items():
        content = (directory / name).read_bytes()
        assert recorded == {"sha256": sha256(content), "bytes": len(content), "lines": content.count(b"\n")}


def test_wrong_types_to_the_pipeline_calls_name_the_argument(toy):
    import translator
    from translator.data.tokenizers import Tokenizer

    tokenizer = translator.load_tokenizers(toy[3] / "tokenizers")["source"]
    assert tokenizer.encode("a b") == tokenizer.encode(["a b"])[0]
    for call, error, message in [
        (lambda: tokenizer.encode(None), TypeError, "texts must be a string or a list of strings"),
        (lambda: tokenizer.encode(["a", 3]), TypeError, r"texts\[1\] is int 3"),
        (lambda: tokenizer.decode("a b"), TypeError, "ids must be a list of token ids"),
        (lambda: Tokenizer(None), TypeError, "model_file must be a path"),
        (lambda: translator.load_tokenizers(None), TypeError, "directory must be a path"),
        (lambda: translator.Translator.load(None), TypeError, "run must be a path"),
        (lambda: translator.Classifier.load(3), TypeError, "run must be a path"),
        (lambda: translator.train(None), TypeError, "config_path must be a path"),
        (lambda: translator.load_corpus("multi30k-de-en", max_length="5"), ValueError,
         "max_length must be a positive integer; got '5'"),
        (lambda: translator.load_corpus("multi30k-de-en", max_ratio=0.5), ValueError,
         r"max_ratio must be a number >= 1.0"),
        (lambda: translator.load_corpus(None), ValueError, "unknown corpus 'None'. Known corpora: "),
    ]:
        with pytest.raises(error, match=message):
            call()


def test_an_unexpected_error_is_one_line_that_says_how_to_see_the_traceback(monkeypatch, capsys):
    from translator import cli

    def broken(args):
        raise KeyError("source")

    monkeypatch.setattr(cli, "command_data", broken)
    monkeypatch.delenv("TRANSLATOR_DEBUG", raising=False)
    assert cli.main(["data", "multi30k-de-en"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KeyError: 'source'" in err and "--debug" in err and "TRANSLATOR_DEBUG=1" in err
    monkeypatch.setenv("TRANSLATOR_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["data", "multi30k-de-en"])
