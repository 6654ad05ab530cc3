"""Preparing a corpus: its splits read once (`translator.data.reading`) and written to
``work/CORPUS/`` with a manifest of every file's size, line count and sha256, and of the counts
of the cleaning. Nothing half-written is left: each file goes into place when complete, the
manifest last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from translator.data.reading import Cleaning, read_into
from translator.data.recipes import (
    CorpusSpec,
    Recipe,
    cache_directory,
    data_directory,
    resolve_corpus,
    sha256_of,
)
from translator.files import atomic_write_text


def split_files(spec: CorpusSpec, split: str) -> dict[str, str]:
    """File names of a prepared split, by column (``source``/``target``/``text``/``examples``)."""
    task = spec.recipe.task
    if task == "translation":
        return {"source": f"{split}.{spec.source_language}", "target": f"{split}.{spec.target_language}"}
    if task == "language_modeling":
        return {"text": f"{split}.txt"}
    return {"examples": f"{split}.jsonl"}


class _HashedFile:
    """A file written in blocks, with its sha256, size and line count kept on the way."""

    def __init__(self, path: Path):
        self.handle = open(path, "wb")
        self.digest = hashlib.sha256()
        self.size = self.lines = 0
        self.pending, self.pending_size = [], 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= 1 << 20:
            self._flush()

    def _flush(self) -> None:
        block = b"".join(self.pending)
        self.digest.update(block)
        self.handle.write(block)
        self.size += len(block)
        self.lines += block.count(b"\n")
        self.pending, self.pending_size = [], 0

    def close(self) -> dict:
        """Flush to disk and close; the manifest's record of the file."""
        self._flush()
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        return {"sha256": self.digest.hexdigest(), "bytes": self.size, "lines": self.lines}


class _PreparedFiles:
    """A sink that writes each row into its split's file(s) at once (``split_files``): one
    sentence per line per language, the text as it is, or a JSON line per example."""

    def __init__(self, spec: CorpusSpec, directory: Path):
        self.spec, self.directory = spec, directory
        self.files, self.names, self.rows = {}, {}, {}

    def open_split(self, split: str) -> None:
        self.names[split], self.rows[split] = split_files(self.spec, split), 0
        for name in self.names[split].values():
            self.files[name] = _HashedFile(self.directory / name)

    def add(self, split: str, row: dict) -> None:
        self.rows[split] += 1
        names = self.names[split]
        if "source" in row:
            self.files[names["source"]].write(row["source"] + "\n")
            self.files[names["target"]].write(row["target"] + "\n")
        elif "label" in row:
            self.files[names["examples"]].write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            self.files[names["text"]].write(row["text"])

    def close(self) -> dict:
        """Close every file; the manifest's ``outputs`` (name -> sha256, bytes, lines)."""
        return {name: file.close() for name, file in self.files.items()}

    def discard(self) -> None:
        for file in self.files.values():
            file.handle.close()


def prepare_corpus(corpus, work_dir="work", data_dir=None, cleaning: Cleaning | None = None) -> dict:
    """Write the cleaned splits and ``manifest.json`` to ``work_dir/<corpus>/``; return the manifest.

    Translation splits are plain text, one sentence per line, one file per language
    (``train.de``, ``train.en``); language-modelling splits are the raw text (``train.txt``);
    classification splits are JSON lines ``{"text": ..., "label": ...}``. The input is read and
    the splits written line by line (a few passes over the input, a few numbers per line kept),
    so a corpus need not fit in memory.
    """
    spec = resolve_corpus(corpus)
    if cleaning is None:
        cleaning = Cleaning.from_recipe(spec.recipe)
    out = Path(work_dir) / spec.name
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".incoming-*"):  # left by an earlier run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    incoming = Path(tempfile.mkdtemp(dir=out, prefix=".incoming-"))
    files = _PreparedFiles(spec, incoming)
    try:
        report, label_names = read_into(spec, data_dir, cleaning, files)
        outputs = files.close()
    except BaseException:
        files.discard()
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    # Every file is written in full before any is moved into place. The old manifest goes
    # first, so a crash while the files move leaves no manifest and no stage accepts the mix;
    # the new manifest, written last, vouches for complete files only.
    (out / "manifest.json").unlink(missing_ok=True)
    for name in outputs:
        os.replace(incoming / name, out / name)
    shutil.rmtree(incoming)
    directory = data_directory(data_dir)
    manifest = {
        "corpus": spec.name,
        "recipe": {"name": spec.recipe.name, "file": str(spec.recipe.source),
                   "sha256": sha256_of(spec.recipe.source)},
        "task": spec.recipe.task,
        "source_language": spec.source_language,
        "target_language": spec.target_language,
        "labels": label_names,
        "data_from": _data_from(spec.recipe, directory),
        "inputs": {fs.path: fs.sha256 for fs in spec.recipe.file_specs()},
        "filters": report.pop("filters"),
        "seed": spec.recipe.make_splits.get("seed"),
        "counts": report,
        "outputs": outputs,
        "split_files": {split: split_files(spec, split) for split in files.rows},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _data_from(recipe: Recipe, directory: Path | None) -> str:
    """Where the corpus's files were read: the mirror, the download cache, or your own files."""
    if not any(spec.url for spec in recipe.file_specs()):
        return f"your own files (named in {recipe.source})"
    return str(directory) if directory else f"download cache {cache_directory()}"

