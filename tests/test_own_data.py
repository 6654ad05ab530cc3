"""Your own data (issue 30): `translator data --from-files/--from-tsv/--from-dataset` on generated
files, README.md's "Your own data" lines as written, and fine-tuning (`--init-from`)."""

import contextlib
import io
import json
import random
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import kill_in_the_second_epoch_and_resume, make_task, reversal_pairs, write_config

from translator.cli import main
from translator.reports import read_log

REPOSITORY = Path(__file__).resolve().parent.parent
WORDS = {"das": "the", "haus": "house", "kleine": "small", "katze": "cat", "hund": "dog", "rot": "red",
         "und": "and", "sieht": "sees", "ein": "a", "baum": "tree", "groß": "big", "blau": "blue"}
# What the test adds to README.md's `translator train` lines: a smaller model, two epochs.
SMALL = ["--set", "model.embedding_dim=32", "--set", "model.units=32", "--set", "model.encoder_units=16",
         "--set", "training.epochs=2", "--set", "training.batch_tokens=1024", "--set", "training.bleu_sentences=20"]


def word_pairs(count: int, seed: int, lengths=(2, 6)) -> list[tuple[str, str]]:
    """German-like word sequences and their word-by-word "English": ("das haus", "the house")."""
    generator = random.Random(seed)
    pairs = []
    for _ in range(count):
        words = [generator.choice(list(WORDS)) for _ in range(generator.randint(*lengths))]
        pairs.append((" ".join(words), " ".join(WORDS[word] for word in words)))
    return pairs


def write_lines(path: Path, lines) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def readme_lines() -> list[str]:
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    section = text.split("### Your own data", 1)[1].split("\n### ", 1)[0]
    block = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)[0]  # the first: the one on generated files
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_cli(arguments: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(arguments)
    finally:
        sys.stdin = old_stdin
    return status, out.getvalue(), err.getvalue()


def test_the_readme_own_data_lines_run_as_written(tmp_path, monkeypatch):
    import datasets

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPOSITORY / "configs")  # as in a checkout
    pairs = word_pairs(1200, 1)
    for name, part in (("train", pairs[:1000]), ("valid", pairs[1000:1100]), ("test", pairs[1100:])):
        write_lines(tmp_path / f"{name}.de", [german for german, _ in part])
        write_lines(tmp_path / f"{name}.en", [english for _, english in part])
    write_lines(tmp_path / "pairs.tsv", [f"{english}\t{german}" for german, english in pairs])
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"translation": [{"de": g, "en": e} for g, e in pairs[:1000]]}),
        "test": datasets.Dataset.from_dict({"translation": [{"de": g, "en": e} for g, e in pairs[1000:]]}),
    }).save_to_disk(str(tmp_path / "my_dataset"))
    write_lines(tmp_path / "indomain.tsv", [f"{g}\t{e}" for g, e in word_pairs(300, 2, lengths=(6, 9))])

    lines = readme_lines()
    assert any("--from-files" in line for line in lines) and any("--init-from" in line for line in lines)
    for line in lines:
        stdin = ""
        if "|" in line:  # echo "..." | translator translate ...
            echo, line = (part.strip() for part in line.split("|", 1))
            stdin = shlex.split(echo)[1] + "\n"
        words = shlex.split(line)
        assert words[0] == "translator", line
        arguments = words[1:] + (SMALL if words[1] == "train" else [])
        status, out, err = run_cli(arguments, stdin)
        assert status == 0, f"{line}\n{out[-1500:]}\n{err[-1500:]}"
        if words[1] == "translate":
            assert out.strip(), err

    for name in ("mydata", "mytsv", "mydataset", "mydomain"):
        manifest = json.loads((tmp_path / "work" / name / "manifest.json").read_text())
        assert manifest["data_from"].startswith("your own files"), manifest["data_from"]
        assert (tmp_path / "corpora" / f"{name}.yaml").is_file() and (tmp_path / "tokenizers" / f"{name}.yaml").is_file()
    counts = json.loads((tmp_path / "work" / "mydata" / "manifest.json").read_text())["counts"]
    assert [counts[split]["kept"] for split in ("train", "validation", "test")] == [1000, 100, 100]
    dataset_counts = json.loads((tmp_path / "work" / "mydataset" / "manifest.json").read_text())["counts"]
    assert dataset_counts["test"]["kept"] == 200 and dataset_counts["train"]["kept"] + \
        dataset_counts["validation"]["kept"] == 1000  # no validation split: 2% of train became one
    assert json.loads((tmp_path / "runs" / "mydata" / "report.json").read_text())["sentences"] == 100
    assert (tmp_path / "runs" / "mydata" / "export" / "saved_model.pb").is_file()
    record = json.loads((tmp_path / "runs" / "mydomain" / "init_from.json").read_text())
    assert record["parent"] == "runs/mydata" and "validation_loss_at_start" in record


def test_bad_own_files_get_the_errors_mirror_files_get(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_lines(tmp_path / "a.de", ["eins", "zwei", "drei"])
    write_lines(tmp_path / "a.en", ["one", "two"])
    status, _, err = run_cli(["data", "--from-files", "a.de", "a.en", "--name", "short"])
    assert status == 2 and "a.de has 3 lines" in err and "a.en has 2" in err, err

    (tmp_path / "b.de").write_bytes(b"eins\nzw\xffei\n")
    write_lines(tmp_path / "b.en", ["one", "two"])
    status, _, err = run_cli(["data", "--from-files", "b.de", "b.en", "--name", "latin1"])
    assert status == 2 and "b.de, line 2: not valid UTF-8" in err, err

    (tmp_path / "c.de").write_bytes(b"")
    write_lines(tmp_path / "c.en", [])
    status, _, err = run_cli(["data", "--from-files", "c.de", "c.en", "--name", "empty"])
    assert status == 2 and "c.de (train): the file is empty" in err, err

    write_lines(tmp_path / "d.tsv", ["one\teins", "two"])
    status, _, err = run_cli(["data", "--from-tsv", "d.tsv", "--columns", "en,de", "--name", "ragged"])
    assert status == 2 and "d.tsv, line 2: expected 2 tab-separated columns" in err, err

    # A file changed after its recipe was written is refused until the recipe is written again.
    write_lines(tmp_path / "e.de", [g for g, _ in word_pairs(100, 3)])
    write_lines(tmp_path / "e.en", [e for _, e in word_pairs(100, 3)])
    assert run_cli(["data", "--from-files", "e.de", "e.en", "--name", "edited"])[0] == 0
    write_lines(tmp_path / "e.en", [e.upper() for _, e in word_pairs(100, 3)])
    status, _, err = run_cli(["data", "edited"])
    assert status == 2 and "e.en: sha256 is" in err and "write the recipe again" in err, err
    # A recipe not written by --from-... is never replaced.
    (tmp_path / "corpora" / "mine.yaml").write_text("name: mine\n")
    status, _, err = run_cli(["data", "--from-files", "e.de", "e.en", "--name", "mine"])
    assert status == 2 and "was not written by" in err, err


def _weights(path):
    import keras

    return [np.asarray(weight) for weight in keras.saving.load_model(path).weights]


def test_fine_tuning_starts_from_the_parent_records_it_and_resumes_after_kill_9(tmp_path, monkeypatch):
    from translator.training.fine_tuning import FineTuningError
    from translator.training.trainer import Trainer

    data = make_task(tmp_path, "reverse", {"train": reversal_pairs(600, 51), "validation": reversal_pairs(60, 52)})
    parent_config = write_config(tmp_path, data, training={"epochs": 2, "batch_tokens": 512, "bleu_every": 0})
    parent = tmp_path / "parent"
    Trainer(parent_config, parent, log=lambda *a: None).train()
    best_loss = min(float(row["validation_loss"]) for row in read_log(parent))

    # The parent's own pairs, as a user's files: epoch 0 of the fine-tuned run is the parent's loss.
    monkeypatch.chdir(tmp_path)
    prepared = Path(data["work_dir"]) / Path(data["corpus"]).stem
    assert run_cli(["data", "--from-files", str(prepared / "train.xx"), str(prepared / "train.yy"), "--valid",
                    str(prepared / "validation.xx"), str(prepared / "validation.yy"), "--name", "same"])[0] == 0
    same = write_config(tmp_path, {"corpus": "same", "work_dir": str(tmp_path / "work")},
                        training={"epochs": 1, "batch_tokens": 512, "bleu_every": 0, "init_from": str(parent)},
                        name="same")
    Trainer(same, tmp_path / "same-run", log=lambda *a: None).train()
    record = json.loads((tmp_path / "same-run" / "init_from.json").read_text())
    assert record["parent"] == str(parent)
    assert record["validation_loss_at_start"] == pytest.approx(best_loss, abs=2e-5)
    assert f"init_from: {parent}" in (tmp_path / "same-run" / "config.yaml").read_text()

    # A new task (longer sequences of the same symbols), killed mid-run and resumed.
    pairs = reversal_pairs(700, 53, lengths=(8, 12))
    write_lines(tmp_path / "new.xx", [source for source, _ in pairs])
    write_lines(tmp_path / "new.yy", [target for _, target in pairs])
    assert run_cli(["data", "--from-files", "new.xx", "new.yy", "--name", "longer"])[0] == 0
    config = write_config(tmp_path, {"corpus": "longer", "work_dir": str(tmp_path / "work")},
                          training={"epochs": 2, "batch_tokens": 512, "bleu_every": 0, "checkpoint_every": 4,
                                    "deterministic": True}, name="longer")
    Trainer(config, tmp_path / "uninterrupted", log=lambda *a: None,
            overrides=[f"training.init_from={parent}"]).train()
    uninterrupted = read_log(tmp_path / "uninterrupted")
    run = tmp_path / "interrupted"
    command = [sys.executable, "-m", "translator", "train", str(config), "--init-from", str(parent), "--run", str(run)]
    kill_in_the_second_epoch_and_resume(command, run, cwd=tmp_path)
    assert read_log(run)[-1]["step"] == uninterrupted[-1]["step"]
    for got, expected in zip(_weights(run / "model.keras"), _weights(tmp_path / "uninterrupted" / "model.keras")):
        np.testing.assert_array_equal(got, expected)
    assert json.loads((run / "init_from.json").read_text())["parent"] == str(parent)
    # It learned from where the parent stood (its loss at epoch 0), not from scratch.
    start = json.loads((run / "init_from.json").read_text())["validation_loss_at_start"]
    assert float(read_log(run)[-1]["validation_loss"]) < start

    # Refused: another model, and a corpus the parent's tokenizers do not know.
    with pytest.raises(FineTuningError, match=r"model.units: 64 there, 32 here"):
        Trainer(config, tmp_path / "other-model", overrides=[f"training.init_from={parent}", "model.units=32"]).train()
    unknown = reversal_pairs(100, 54, symbols="mnopqr")
    write_lines(tmp_path / "unknown.xx", [source for source, _ in unknown])
    write_lines(tmp_path / "unknown.yy", [target for _, target in unknown])
    assert run_cli(["data", "--from-files", "unknown.xx", "unknown.yy", "--name", "unknown"])[0] == 0
    with pytest.raises(FineTuningError, match=r"100.00% of the source pieces of corpus unknown"):
        Trainer(config, tmp_path / "unknown-run", overrides=[f"training.init_from={parent}",
                                                             "data.corpus=unknown"]).train()
