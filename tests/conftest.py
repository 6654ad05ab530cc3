"""Shared fixtures: the data mirror, and small recipes written into a temporary directory."""

import contextlib
import gzip
import hashlib
import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent


def _mirror() -> Path | None:
    candidate = Path(os.environ.get("TRANSLATOR_DATA") or REPOSITORY.parent / "shared" / "data")
    return candidate if (candidate / "multi30k").is_dir() else None


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The read-only data mirror (TRANSLATOR_DATA, or ../shared/data beside the checkout)."""
    path = _mirror()
    if path is None:
        pytest.skip("no data mirror: set TRANSLATOR_DATA to the shared/data directory")
    return path.resolve()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Downloads in tests go to a temporary cache, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_parallel_recipe(directory: Path, source_lines, target_lines, *, gz=False, name="toy") -> Path:
    """A two-language recipe whose files live in ``directory/mirror`` (also reachable as file:// URLs)."""
    mirror = directory / "mirror" / name
    mirror.mkdir(parents=True, exist_ok=True)
    entries = {}
    for language, lines in (("xx", source_lines), ("yy", target_lines)):
        data = b"".join(line + b"\n" if isinstance(line, bytes) else line.encode() + b"\n" for line in lines)
        if gz:
            data = gzip.compress(data, mtime=0)
        file = mirror / f"train.{language}{'.gz' if gz else ''}"
        file.write_bytes(data)
        entries[language] = (f"{name}/{file.name}", file.as_uri(), sha256(data))
    splits = "\n".join(
        f"    {language}:\n      path: {path}\n      url: {url}\n      sha256: {digest}"
        for language, (path, url, digest) in entries.items()
    )
    recipe = directory / f"{name}.yaml"
    recipe.write_text(
        f"name: {name}\ntask: translation\nformat: parallel\nlanguages: [xx, yy]\n"
        f"default_pair: [xx, yy]\nsplits:\n  train:\n{splits}\n",
        encoding="utf-8",
    )
    return recipe


def write_toy_translation(directory: Path, pairs_by_split: dict, name="toy") -> Path:
    """A translation corpus recipe (languages xx -> yy) over generated pairs, with a word-level
    tokenizer recipe beside it; returns the corpus recipe path."""
    mirror = directory / "mirror" / name
    mirror.mkdir(parents=True, exist_ok=True)
    splits = []
    for split, pairs in pairs_by_split.items():
        splits.append(f"  {split}:")
        for language, side in (("xx", 0), ("yy", 1)):
            data = "".join(pair[side] + "\n" for pair in pairs).encode()
            file = mirror / f"{split}.{language}"
            file.write_bytes(data)
            splits.append(f"    {language}:\n      path: {name}/{file.name}\n      url: {file.as_uri()}\n"
                          f"      sha256: {sha256(data)}")
    recipe = directory / f"{name}.yaml"
    recipe.write_text(f"name: {name}\ntask: translation\nformat: parallel\nlanguages: [xx, yy]\n"
                      f"default_pair: [xx, yy]\nsplits:\n" + "\n".join(splits) + "\n", encoding="utf-8")
    words = {w for pairs in pairs_by_split.values() for pair in pairs for w in " ".join(pair).split()}
    (directory / f"{name}-tokenizer.yaml").write_text(
        f"model_type: word\nvocabulary: joint\nvocab_size: {len(words) + 4}\n", encoding="utf-8")
    return recipe


def reversal_pairs(count: int, seed: int, symbols="abcdefghijkl", lengths=(3, 8)):
    """Random symbol sequences and their reversal: ("c a f", "f a c")."""
    import random

    generator = random.Random(seed)
    pairs = []
    for _ in range(count):
        sequence = [generator.choice(symbols) for _ in range(generator.randint(*lengths))]
        pairs.append((" ".join(sequence), " ".join(reversed(sequence))))
    return pairs


def make_task(directory: Path, name: str, pairs_by_split: dict) -> dict:
    """Prepare a generated translation task and its word tokenizer; return the config's data section."""
    from translator.data.corpora import prepare_corpus
    from translator.data.tokenizers import train_tokenizers

    recipe = write_toy_translation(directory, pairs_by_split, name=name)
    prepare_corpus(recipe, directory / "work", directory / "mirror")
    tokenizer = directory / f"{name}-tokenizer.yaml"
    train_tokenizers(str(recipe), directory / "work", recipe=str(tokenizer))
    return {"corpus": str(recipe), "tokenizer": str(tokenizer), "work_dir": str(directory / "work")}


def write_config(directory: Path, data: dict, model=None, training=None, name="toy") -> Path:
    import yaml

    tiny = yaml.safe_load((REPOSITORY / "configs" / "tiny.yaml").read_text())
    config = {"name": name, "data": data, "model": {**tiny["model"], **(model or {})},
              "training": {**tiny["training"], **(training or {})}}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_text_corpus(directory, text):
    mirror = directory / "mirror" / "toytext"
    mirror.mkdir(parents=True)
    data = text.encode()
    (mirror / "input.txt").write_bytes(data)
    recipe = directory / "toytext.yaml"
    recipe.write_text(f"name: toytext\ntask: language_modeling\nformat: text\nmake_splits:\n"
                      f"  validation_tail: 0.1\nfiles:\n  text:\n    path: toytext/input.txt\n"
                      f"    url: {(mirror / 'input.txt').as_uri()}\n    sha256: {sha256(data)}\n")
    (directory / "toytext-tokenizer.yaml").write_text("model_type: char\ncharacter_coverage: 1.0\n")
    return recipe


def prepare(directory, recipe, tokenizer):
    from translator.data.corpora import prepare_corpus
    from translator.data.tokenizers import train_tokenizers

    prepare_corpus(recipe, directory / "work", directory / "mirror")
    train_tokenizers(str(recipe), directory / "work", recipe=str(tokenizer))
    return {"corpus": str(recipe), "tokenizer": str(tokenizer), "work_dir": str(directory / "work")}


def make_continuation_task(directory: Path, pairs_by_split: dict) -> tuple[dict, dict]:
    """A generated translation task (recipe `rev`, xx -> yy) and its `parallel_text` twin
    (`revtext`: "SOURCE <sep> TARGET <end>" lines) with a word tokenizer that keeps <sep> and
    <end> whole, both prepared. The recipes are written to directory/corpora: run with the
    working directory at ``directory``. Returns (the translation data section, the language
    model's data section)."""
    from translator.data.corpora import prepare_corpus
    from translator.data.tokenizers import train_tokenizers

    data = make_task(directory, "rev", pairs_by_split)
    (directory / "corpora").mkdir(exist_ok=True)
    (directory / "corpora" / "rev.yaml").write_text((directory / "rev.yaml").read_text())
    (directory / "corpora" / "revtext.yaml").write_text(
        "name: revtext\ntask: language_modeling\nformat: parallel_text\nparallel_from: rev\n"
        "default_pair: [xx, yy]\nseparator: <sep>\nend: <end>\n")
    tokenizer = directory / "revtext-tokenizer.yaml"
    tokenizer.write_text("model_type: word\nvocab_size: 20\nuser_defined_symbols: [\"<sep>\", \"<end>\"]\n")
    with contextlib.chdir(directory):  # where ./corpora/revtext.yaml is found
        prepare_corpus("revtext", directory / "work", directory / "mirror")
        train_tokenizers("revtext", directory / "work", recipe=str(tokenizer))
    return data, {"corpus": "revtext", "tokenizer": str(tokenizer), "work_dir": str(directory / "work")}


def kill_in_the_second_epoch_and_resume(command: list, run: Path, cwd=None) -> str:
    """Run ``command`` (a `translator train` of ``run``), kill -9 it after a checkpoint saved in
    its second epoch, run it again to the end; returns the second run's stdout."""
    import os
    import signal
    import subprocess
    import time

    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=cwd)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "log.csv").is_file():  # the first epoch done
        time.sleep(0.05)
    checkpoint = run / "checkpoints" / "checkpoint"
    saved = checkpoint.read_bytes()
    while time.time() < deadline and checkpoint.read_bytes() == saved:  # a checkpoint in the second epoch
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "model.keras").exists(), "the run finished before it could be interrupted"
    resumed = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout
    return resumed.stdout


@pytest.fixture(scope="session")
def translation(tmp_path_factory):
    """A weak reversal run and its export (`test_export.exported_reversal_run`), shared by the
    export and shortlist tests: (run, export directory, test sentences with the edge cases)."""
    from test_export import exported_reversal_run

    return exported_reversal_run(tmp_path_factory.mktemp("export"), 11, "exported")
