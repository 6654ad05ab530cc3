"""Reading a prepared corpus (``work/CORPUS/``, written by `translator.data.preparing`): its
manifest, a split in memory or one row at a time, or as a `datasets` dataset; every file is
checked against the manifest first.
"""

from __future__ import annotations

import json
from pathlib import Path

from translator.data.reading import count_lines, iter_lines
from translator.data.recipes import CorpusError, resolve_corpus, sha256_once


def read_manifest(corpus, work_dir="work") -> tuple[Path, dict]:
    """The directory and manifest of a prepared corpus, or an error saying how to prepare it."""
    name = resolve_corpus(corpus).name
    directory = Path(work_dir) / name
    path = directory / "manifest.json"
    if not path.is_file():
        interrupted = " (an interrupted `translator data` left it incomplete)" if directory.is_dir() else ""
        raise FileNotFoundError(
            f"{path} not found: corpus '{name}' is not prepared in {work_dir}/{interrupted}. "
            f"Run `translator data {name}` (or `make data CORPUS={name}`) first."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["split_files"], manifest["outputs"]  # noqa: B018 (the keys every reader needs)
    except (ValueError, KeyError, TypeError) as error:
        raise CorpusError(f"{path} is damaged ({type(error).__name__}: {error}); run `translator data {name}` "
                          f"again") from None
    return directory, manifest


def _verify_prepared_file(directory: Path, manifest: dict, name: str, data: bytes | None = None) -> Path:
    """The path of a prepared file, after checking it against what the manifest recorded when
    `translator data` wrote it (size, line count and sha256; hashed once per process, in blocks
    unless ``data``, its bytes, are at hand)."""
    path = directory / name
    redo = f"run `translator data {manifest['corpus']}` again (it rewrites every split and the manifest)"
    if not path.is_file():
        raise CorpusError(f"{path} is missing, though {directory / 'manifest.json'} lists it; {redo}")
    recorded = manifest["outputs"].get(name)
    if isinstance(recorded, str):  # manifests written before sizes were recorded hold the hash alone
        recorded = {"sha256": recorded}
    size = len(data) if data is not None else path.stat().st_size
    if recorded and (size != recorded.get("bytes", size) or sha256_once(path, data) != recorded["sha256"]):
        count = data.count(b"\n") if data is not None else count_lines(path)
        lines = f" ({count:,} lines where it wrote {recorded['lines']:,})" if "lines" in recorded else ""
        raise CorpusError(f"{path} is not the file `translator data` wrote{lines}: it was edited, or a write "
                          f"was interrupted. Training or scoring on it could pair sentences wrongly; {redo}")
    return path


def _check_prepared_file(directory: Path, manifest: dict, name: str) -> bytes:
    """The bytes of a prepared file, checked as ``_verify_prepared_file`` does."""
    data = (directory / name).read_bytes() if (directory / name).is_file() else None
    _verify_prepared_file(directory, manifest, name, data)
    return data


def _files_of_split(manifest: dict, split: str) -> dict:
    files = manifest["split_files"].get(split)
    if files is None:
        raise CorpusError(f"corpus {manifest['corpus']} has no '{split}' split; it has {sorted(manifest['split_files'])}")
    return files


def _unaligned(directory: Path, manifest: dict, split: str, files: dict, counts) -> CorpusError:
    return CorpusError(f"{directory}: the {split} split has {counts[0]:,} source and {counts[1]:,} target lines "
                       f"({files['source']}, {files['target']}); run `translator data {manifest['corpus']}` again")


def read_prepared_split(corpus, split: str, work_dir="work") -> dict[str, list]:
    """The columns of one prepared split, read back from ``work_dir/<corpus>/`` and checked
    against the manifest (a file edited, cut short or left from another preparation is an error).
    All in memory: ``iter_prepared_split`` gives the same rows one at a time."""
    directory, manifest = read_manifest(corpus, work_dir)
    files = _files_of_split(manifest, split)
    columns = {}
    for column, name in files.items():
        # Decoded from bytes and split on "\n" only: read_text() would turn a "\r" inside a
        # sentence into a line break (and splitlines() splits on U+2028), misaligning the pairs.
        text = _check_prepared_file(directory, manifest, name).decode("utf-8")
        if column == "text":
            columns["text"] = [text]
        elif column == "examples":
            rows = [json.loads(line) for line in text.split("\n") if line]
            columns["text"] = [row["text"] for row in rows]
            columns["label"] = [row["label"] for row in rows]
        else:
            columns[column] = text.split("\n")[:-1]
    if "source" in columns and len(columns["source"]) != len(columns["target"]):
        raise _unaligned(directory, manifest, split, files, (len(columns["source"]), len(columns["target"])))
    return columns


def prepared_split_paths(corpus, split: str, work_dir="work") -> dict[str, Path]:
    """The files of one prepared split by column, checked against the manifest (size and
    sha256, read in blocks): for readers that stream them."""
    directory, manifest = read_manifest(corpus, work_dir)
    return {column: _verify_prepared_file(directory, manifest, name)
            for column, name in _files_of_split(manifest, split).items()}


def iter_prepared_split(corpus, split: str, work_dir="work"):
    """The rows of one prepared split one at a time, never the whole split in memory:
    ``{"source", "target"}`` per pair, ``{"text", "label"}`` (the label's name) per example, or
    ``{"text"}`` per line of a text (its last line may lack the "\n" the text did not end with).
    The files are checked against the manifest before the first row (size and sha256)."""
    directory, manifest = read_manifest(corpus, work_dir)
    files = _files_of_split(manifest, split)
    paths = prepared_split_paths(corpus, split, work_dir)
    if "source" in paths:
        sources, targets = iter_lines(paths["source"]), iter_lines(paths["target"])
        for source in sources:
            target = next(targets, None)
            if target is None:
                break
            yield {"source": source, "target": target}
        else:
            if next(targets, None) is None:
                return
        raise _unaligned(directory, manifest, split, files, (count_lines(paths["source"]),
                                                              count_lines(paths["target"])))
    elif "examples" in paths:
        for line in iter_lines(paths["examples"]):
            if line:
                row = json.loads(line)
                yield {"text": row["text"], "label": row["label"]}
    else:
        for line in iter_lines(paths["text"]):
            yield {"text": line}


def prepared_dataset(corpus, split: str, work_dir="work", streaming: bool = True):
    """A prepared split as a Hugging Face dataset read from its files, never loaded whole.

    ``streaming=True``: a ``datasets.IterableDataset`` that reads the files as it is iterated.
    ``streaming=False``: a ``datasets.Dataset`` written once, in blocks, to Arrow files under
    ``work_dir/<corpus>/.datasets/`` and memory-mapped (rebuilt when the prepared files change).
    Columns as ``iter_prepared_split`` (``label`` a ClassLabel). Nothing touches the network.

    >>> pairs = prepared_dataset("multi30k-de-en", "train")           # doctest: +SKIP
    >>> next(iter(pairs))["source"]                                   # doctest: +SKIP
    'Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.'
    """
    import datasets

    directory, manifest = read_manifest(corpus, work_dir)
    files = _files_of_split(manifest, split)
    if "source" in files:
        features = {"source": datasets.Value("string"), "target": datasets.Value("string")}
    elif "examples" in files:
        features = {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=manifest["labels"])}
    else:
        features = {"text": datasets.Value("string")}
    # The files' hashes are among the arguments, so a cached Arrow copy of other files is not reused.
    arguments = {"corpus": str(corpus), "split": split, "work_dir": str(work_dir),
                 "files": {name: str(manifest["outputs"].get(name)) for name in files.values()}}
    if streaming:
        return datasets.IterableDataset.from_generator(_dataset_rows, features=datasets.Features(features),
                                                       gen_kwargs=arguments)
    return datasets.Dataset.from_generator(_dataset_rows, features=datasets.Features(features), gen_kwargs=arguments,
                                           cache_dir=str(directory / ".datasets"))


def _dataset_rows(corpus, split, work_dir, files):
    """The generator of ``prepared_dataset`` (``files`` only marks which files it reads)."""
    yield from iter_prepared_split(corpus, split, work_dir)
