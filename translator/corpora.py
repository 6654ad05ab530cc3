"""Corpora: recipes that find, verify, read, clean and split public data sets.

A recipe is a small YAML file in ``corpora/`` (see ``corpora/multi30k.yaml``). It names the
corpus, its license and citation, its task (``translation``, ``language_modeling`` or
``classification``), the file format, and for every file its path relative to a mirror
directory, its public download URL and its sha256.

Where files come from:
  * a mirror directory, given by ``data_dir=`` / ``--data-dir`` or the ``TRANSLATOR_DATA``
    environment variable: files are read from there (checksums verified) and nothing touches
    the network; a missing file is an error that names the file, the directory and the URL.
  * otherwise the XDG cache (``$XDG_CACHE_HOME/translator``, default ``~/.cache/translator``):
    a missing file is downloaded, its checksum verified, and only then moved into place.

Corpus names: a recipe name (``multi30k``, which means its default pair) or, for translation,
``RECIPE-SRC-TGT`` (``multi30k-fr-en``). A path to a recipe file works too.

Cleaning applies to the training split only (evaluation splits are only stripped, so scores
stay comparable with published ones): strip, drop empty lines, an optional maximum length in
words, an optional source/target length ratio, optional de-duplication; every count is kept.
Corpora without a published split get one made deterministically from the recipe's seed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from translator.checks import check_bool, check_number, check_positive_int
from translator.files import atomic_write_bytes, atomic_write_text, read_yaml, search_path

TASKS = ("translation", "language_modeling", "classification")
FORMATS = {
    "translation": ("parallel", "tsv"),
    "language_modeling": ("text", "parallel_text"),
    "classification": ("label_first", "file_per_label"),
}
RECIPE_KEYS = {
    "name", "description", "license", "citation", "task", "format", "languages",
    "default_pair", "columns", "splits", "files", "make_splits", "cleaning", "deduplicate",
    "label_names", "label_separator", "encoding_errors", "parallel_from", "separator", "end",
}
FILE_KEYS = {"path", "url", "sha256", "download_sha256", "archive_member", "archive_member_sha256"}
SPLIT_NAMES = ("train", "validation", "test")


class CorpusError(ValueError):
    """A corpus recipe or corpus file is not what was expected (the message says how to fix it)."""


class ChecksumError(CorpusError):
    """A file's sha256 differs from its recipe's."""


# ----------------------------------------------------------------------------- recipes

@dataclass(frozen=True)
class FileSpec:
    """One file of a recipe: where it sits in the mirror and where it comes from."""

    path: str
    url: str
    sha256: str
    download_sha256: str | None = None  # when the download is an archive holding the file
    archive_member: str | None = None
    archive_member_sha256: str | None = None


@dataclass
class Recipe:
    name: str
    task: str
    format: str
    source: Path  # the YAML file
    description: str = ""
    license: str = ""
    citation: str = ""
    languages: list = field(default_factory=list)
    default_pair: list | None = None
    columns: list | None = None
    splits: dict = field(default_factory=dict)  # split -> FileSpec or {language: FileSpec}
    files: dict = field(default_factory=dict)  # key -> FileSpec (corpora without a split)
    make_splits: dict = field(default_factory=dict)
    cleaning: dict = field(default_factory=dict)
    deduplicate: bool = False
    label_names: dict | None = None
    label_separator: str | None = None
    encoding_errors: str = "strict"
    parallel_from: str | None = None  # format parallel_text: the translation recipe whose pairs make the text
    separator: str = ""  # format parallel_text: "SOURCE SEPARATOR TARGET END" per line
    end: str = ""

    def file_specs(self):
        """Every FileSpec of the recipe."""
        for entry in list(self.splits.values()) + [self.files]:
            if isinstance(entry, FileSpec):
                yield entry
            else:
                yield from entry.values()


@dataclass(frozen=True)
class CorpusSpec:
    """A recipe plus the choice the corpus name makes (the translation direction)."""

    name: str  # as the user wrote it, e.g. multi30k-de-en
    recipe: Recipe
    source_language: str | None = None
    target_language: str | None = None


def recipe_directories() -> list[Path]:
    """Where corpus recipes are looked up: ./corpora, then the corpora/ of this source checkout."""
    return search_path("corpora")


def known_recipes() -> dict[str, Path]:
    found = {}
    for directory in recipe_directories():
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def _file_spec(raw, where: str) -> FileSpec:
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: expected a mapping with path, url and sha256; got {raw!r}")
    unknown = set(raw) - FILE_KEYS
    missing = {"path", "url", "sha256"} - set(raw)
    if unknown:
        raise CorpusError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(FILE_KEYS)}")
    if missing:
        raise CorpusError(f"{where}: missing key(s) {sorted(missing)} (every file needs path, url, sha256)")
    return FileSpec(**{key: str(value) for key, value in raw.items()})


def read_recipe(path: str | Path) -> Recipe:
    """Parse and validate one recipe file; errors name the file and the field."""
    path = Path(path)
    raw = read_yaml(path, CorpusError)
    if not isinstance(raw, dict):
        raise CorpusError(f"{path}: a recipe is a YAML mapping (name:, task:, format:, ...)")
    unknown = set(raw) - RECIPE_KEYS
    if unknown:
        raise CorpusError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(RECIPE_KEYS)}")
    for key in ("name", "task", "format"):
        if key not in raw:
            raise CorpusError(f"{path}: missing required key '{key}'")
    task, fmt = raw["task"], raw["format"]
    if task not in TASKS:
        raise CorpusError(f"{path}: task: '{task}' is not one of {list(TASKS)}")
    if fmt not in FORMATS[task]:
        raise CorpusError(f"{path}: format: '{fmt}' is not allowed for task {task}; use one of {list(FORMATS[task])}")
    if fmt == "parallel_text":
        return _parallel_text_recipe(raw, path)
    if bool(raw.get("splits")) == bool(raw.get("files")):
        raise CorpusError(f"{path}: give either 'splits' (published splits) or 'files' + 'make_splits'")
    splits = {}
    for split, entry in (raw.get("splits") or {}).items():
        if split not in SPLIT_NAMES:
            raise CorpusError(f"{path}: splits: '{split}' is not one of {list(SPLIT_NAMES)}")
        if fmt == "parallel":
            splits[split] = {lang: _file_spec(spec, f"{path}: splits.{split}.{lang}") for lang, spec in entry.items()}
        else:
            splits[split] = _file_spec(entry, f"{path}: splits.{split}")
    files = {key: _file_spec(spec, f"{path}: files.{key}") for key, spec in (raw.get("files") or {}).items()}
    if files and not raw.get("make_splits"):
        raise CorpusError(f"{path}: 'files' without published splits needs 'make_splits' (seed and fractions)")
    recipe = Recipe(
        name=str(raw["name"]), task=task, format=fmt, source=path,
        description=str(raw.get("description", "")), license=str(raw.get("license", "")),
        citation=str(raw.get("citation", "")), languages=list(raw.get("languages") or []),
        default_pair=raw.get("default_pair"), columns=raw.get("columns"), splits=splits, files=files,
        make_splits=dict(raw.get("make_splits") or {}), cleaning=dict(raw.get("cleaning") or {}),
        deduplicate=bool(raw.get("deduplicate", False)), label_names=raw.get("label_names"),
        label_separator=raw.get("label_separator"), encoding_errors=raw.get("encoding_errors", "strict"),
    )
    group_by = recipe.make_splits.get("group_by")
    if task == "classification" and group_by not in (None, "text"):
        raise CorpusError(f"{path}: make_splits.group_by: '{group_by}' is not 'text' (the one column a "
                          "classification recipe can group by: every example of a text in one split)")
    if task == "translation" and (not recipe.default_pair or len(recipe.default_pair) != 2):
        raise CorpusError(f"{path}: default_pair: a translation recipe needs [source, target]")
    if recipe.encoding_errors not in ("strict", "replace"):
        raise CorpusError(f"{path}: encoding_errors: '{recipe.encoding_errors}' is not 'strict' or 'replace'")
    return recipe


def _parallel_text_recipe(raw: dict, path: Path) -> Recipe:
    """A language-modelling recipe (format ``parallel_text``) whose text is the pairs of a
    translation recipe, one ``SOURCE SEPARATOR TARGET END`` line each: translation as
    continuing a sequence. Its files, splits and languages are those of ``parallel_from``."""
    for key in ("parallel_from", "default_pair", "separator", "end"):
        if not raw.get(key):
            raise CorpusError(f"{path}: format parallel_text needs '{key}' (parallel_from: a translation recipe; "
                              f"default_pair: [source, target]; separator and end: the symbols between and after)")
    recipes = known_recipes()
    if raw["parallel_from"] not in recipes:
        raise CorpusError(f"{path}: parallel_from: '{raw['parallel_from']}' is not a known corpus recipe "
                          f"({', '.join(sorted(recipes))})")
    pairs = read_recipe(recipes[raw["parallel_from"]])
    if pairs.task != "translation" or pairs.format != "parallel":
        raise CorpusError(f"{path}: parallel_from: '{raw['parallel_from']}' is not a translation recipe of "
                          f"line-aligned files (format: parallel)")
    if len(raw["default_pair"]) != 2 or not set(raw["default_pair"]) <= set(pairs.languages):
        raise CorpusError(f"{path}: default_pair: {raw['default_pair']} must be two of {pairs.languages}")
    return Recipe(name=str(raw["name"]), task="language_modeling", format="parallel_text", source=path,
                  description=str(raw.get("description", "")), license=pairs.license, citation=pairs.citation,
                  languages=pairs.languages, default_pair=list(raw["default_pair"]), splits=pairs.splits,
                  parallel_from=raw["parallel_from"], separator=str(raw["separator"]), end=str(raw["end"]))


def resolve_corpus(corpus: str | Path) -> CorpusSpec:
    """Turn a corpus name (``multi30k-de-en``) or a recipe path into a CorpusSpec."""
    corpus = str(corpus)
    if corpus.endswith((".yaml", ".yml")):
        recipe = read_recipe(corpus)
        return _with_pair(recipe.name, recipe, None)
    recipes = known_recipes()
    if corpus in recipes:
        return _with_pair(corpus, read_recipe(recipes[corpus]), None)
    parts = corpus.split("-")
    if len(parts) >= 3 and "-".join(parts[:-2]) in recipes:
        recipe = read_recipe(recipes["-".join(parts[:-2])])
        if recipe.task == "translation":
            return _with_pair(corpus, recipe, (parts[-2], parts[-1]))
    names = sorted(recipes)
    translation = [n for n in names if read_recipe(recipes[n]).task == "translation"]
    raise CorpusError(
        f"unknown corpus '{corpus}'. Known corpora: {', '.join(names)} "
        f"(translation ones also as NAME-SRC-TGT, e.g. multi30k-de-en; translation: {', '.join(translation)}). "
        f"Recipes are read from: {', '.join(str(d) for d in recipe_directories()) or 'no corpora/ directory found'}"
    )


def _with_pair(name: str, recipe: Recipe, pair) -> CorpusSpec:
    if recipe.task != "translation":
        return CorpusSpec(name, recipe)
    source, target = pair or recipe.default_pair
    for language in (source, target):
        if language not in recipe.languages:
            raise CorpusError(
                f"corpus '{name}': language '{language}' is not in recipe {recipe.source} "
                f"(languages: {recipe.languages}); write {recipe.name}-SRC-TGT with two of those"
            )
    if source == target:
        raise CorpusError(f"corpus '{name}': source and target language are both '{source}'")
    return CorpusSpec(name, recipe, source, target)


# ----------------------------------------------------------------------------- files

def data_directory(data_dir: str | Path | None = None) -> Path | None:
    """The mirror directory: the argument, else $TRANSLATOR_DATA, else None (download)."""
    chosen = data_dir if data_dir is not None else os.environ.get("TRANSLATOR_DATA") or None
    return Path(chosen) if chosen else None


def cache_directory() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "translator"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_hashed: dict[tuple, str] = {}  # (path, size, mtime) -> sha256, so a process hashes a file once


def _sha256_once(path: Path, data: bytes | None = None) -> str:
    """sha256 of a file (of ``data``, its bytes, when already read), computed once per process
    for as long as the file's size and modification time stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = sha256_of(path) if data is None else hashlib.sha256(data).hexdigest()
    return _hashed[key]


def _verify(path: Path, expected: str, what: str) -> None:
    actual = _sha256_once(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: sha256 is {actual} but {what} expects {expected}. The file differs from the "
            f"public one (corrupted or edited copy): replace it with the original, or fix the recipe."
        )


def locate(spec: FileSpec, recipe: Recipe, data_dir: Path | None) -> Path:
    """Return a verified local path for a recipe file: from the mirror, or downloaded to the cache."""
    if data_dir is not None:
        path = data_dir / spec.path
        if not path.is_file():
            raise FileNotFoundError(
                f"{spec.path} (corpus recipe {recipe.source}) is not in the mirror directory "
                f"{data_dir} (set by --data-dir or TRANSLATOR_DATA). Put the public file there "
                f"(download: {spec.url}), or unset TRANSLATOR_DATA to download it into {cache_directory()}."
            )
        _verify(path, spec.sha256, f"recipe {recipe.source}")
        return path
    return download(spec, recipe)


def download(spec: FileSpec, recipe: Recipe) -> Path:
    """Download a recipe file into the cache, verify it, and only then move it into place."""
    if spec.archive_member:
        target = cache_directory() / Path(spec.path).parent / Path(spec.archive_member).name
        expected_file, expected_download = spec.archive_member_sha256, spec.download_sha256
    else:
        target = cache_directory() / spec.path
        expected_file = expected_download = spec.download_sha256 or spec.sha256
    if target.is_file():
        if expected_file is None or sha256_of(target) == expected_file:
            return target
        target.unlink()  # a stale or damaged copy is never used
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as response:
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        except OSError as error:  # URLError, timeouts, refused connections
            raise CorpusError(
                f"could not download {spec.url} for recipe {recipe.source} ({error}). Check the network, or "
                f"set TRANSLATOR_DATA to a mirror directory that holds {spec.path} "
                f"(e.g. TRANSLATOR_DATA=../shared/data)."
            ) from None
        if digest.hexdigest() != expected_download:
            raise ChecksumError(
                f"downloaded {spec.url}: sha256 is {digest.hexdigest()} but recipe {recipe.source} "
                f"expects {expected_download}. The download was deleted and not used; the source may "
                f"have changed. Retry, or place a verified copy in a mirror directory (TRANSLATOR_DATA)."
            )
        if spec.archive_member:
            with zipfile.ZipFile(temporary) as archive, archive.open(spec.archive_member) as member:
                handle2, extracted = tempfile.mkstemp(dir=target.parent, prefix=".extract-")
                with os.fdopen(handle2, "wb") as out:
                    shutil.copyfileobj(member, out)
            os.unlink(temporary)
            temporary = extracted
            if expected_file and sha256_of(Path(temporary)) != expected_file:
                raise ChecksumError(f"{spec.archive_member} in {spec.url}: sha256 differs from the recipe; not used")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def read_lines(path: Path, encoding_errors: str = "strict") -> tuple[list[str], int]:
    """Lines of a (possibly gzipped) UTF-8 file, split on "\\n" only, as ``wc -l`` counts them.

    Returns the lines and how many contained undecodable bytes (replaced when
    ``encoding_errors="replace"``; with "strict" the first such line is an error naming it).
    """
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines, replaced = [], 0
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            if encoding_errors != "replace":
                raise CorpusError(
                    f"{path}, line {number}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at byte "
                    f"{error.start + 1} of the line). Convert the file to UTF-8, or set "
                    f"'encoding_errors: replace' in the corpus recipe to replace such bytes."
                ) from None
            lines.append(raw.decode("utf-8", errors="replace"))
            replaced += 1
    return lines, replaced


# ----------------------------------------------------------------------------- reading

@dataclass
class Cleaning:
    """Filters for the training split (None / False = off). max_length counts words."""

    max_length: int | None = None
    max_ratio: float | None = None
    deduplicate: bool = False

    @classmethod
    def from_recipe(cls, recipe: Recipe, max_length=None, max_ratio=None, deduplicate=None) -> Cleaning:
        """The recipe's ``cleaning:`` settings, with any argument that is not None taking precedence."""
        return cls(
            max_length=max_length if max_length is not None else recipe.cleaning.get("max_length"),
            max_ratio=max_ratio if max_ratio is not None else recipe.cleaning.get("max_ratio"),
            deduplicate=deduplicate if deduplicate is not None else bool(recipe.cleaning.get("deduplicate", False)),
        )

    def __post_init__(self):
        if self.max_length is not None:
            check_positive_int("max_length", self.max_length)
        if self.max_ratio is not None:
            check_number("max_ratio", self.max_ratio, 1.0)
        check_bool("deduplicate", self.deduplicate)

    def describe(self) -> dict:
        return {"strip": True, "drop_empty": True, "max_length_words": self.max_length,
                "max_length_ratio": self.max_ratio, "deduplicate": self.deduplicate}


def _clean_pairs(sources, targets, cleaning: Cleaning, counts: dict):
    kept_sources, kept_targets, seen = [], [], set()
    for source, target in zip(sources, targets):
        source, target = source.strip(), target.strip()
        source_words, target_words = len(source.split()), len(target.split())
        if not source or not target:
            counts["empty"] += 1
        elif cleaning.max_length and max(source_words, target_words) > cleaning.max_length:
            counts["too_long"] += 1
        elif cleaning.max_ratio and max(source_words, target_words) > cleaning.max_ratio * min(source_words, target_words):
            counts["length_ratio"] += 1
        elif cleaning.deduplicate and (source, target) in seen:
            counts["duplicate"] += 1
        else:
            seen.add((source, target))
            kept_sources.append(source)
            kept_targets.append(target)
    return kept_sources, kept_targets


def _split_indices(n: int, settings: dict, groups=None, labels=None) -> dict[str, np.ndarray]:
    """Deterministic train/validation/test indices from the recipe's seed.

    With ``groups``, all items of a group go to one split; with ``labels``, the split is
    stratified (each label divided in the same proportions; a group counts under the label of
    its first item). Without groups every item is its own group.
    """
    rng = np.random.RandomState(int(settings["seed"]))  # RandomState: stable across numpy versions
    fractions = {name: float(settings.get(name, 0.0)) for name in ("validation", "test")}

    def divide(items):
        items = np.asarray(items)[rng.permutation(len(items))]
        n_validation = round(len(items) * fractions["validation"])
        n_test = round(len(items) * fractions["test"])
        parts = {"validation": items[:n_validation], "test": items[n_validation:n_validation + n_test],
                 "train": items[n_validation + n_test:]}
        return {name: part for name, part in parts.items() if name == "train" or fractions[name] > 0}

    groups = list(range(n)) if groups is None else list(groups)
    order = list(dict.fromkeys(groups))  # groups in first-seen order
    strata = [range(len(order))]
    if labels is not None:
        label_of = {}
        for group, label in zip(groups, labels):
            label_of.setdefault(group, label)
        strata = [[i for i, group in enumerate(order) if label_of[group] == label]
                  for label in sorted(set(label_of.values()))]
    split_of_group = {}
    for members in strata:
        for name, group_ids in divide(members).items():
            split_of_group.update((order[group_id], name) for group_id in group_ids)
    assigned = [split_of_group[group] for group in groups]
    names = ["train"] + [name for name, value in fractions.items() if value > 0]
    return {name: np.array([i for i in range(n) if assigned[i] == name], dtype=np.int64) for name in names}


def _read_translation(spec: CorpusSpec, data_dir, cleaning: Cleaning, report: dict) -> dict:
    recipe, src, tgt = spec.recipe, spec.source_language, spec.target_language
    raw = {}
    if recipe.format == "parallel":
        for split, by_language in recipe.splits.items():
            columns = {}
            for language in (src, tgt):
                path = locate(by_language[language], recipe, data_dir)
                columns[language] = (path, read_lines(path, recipe.encoding_errors)[0])
            (source_path, sources), (target_path, targets) = columns[src], columns[tgt]
            if len(sources) != len(targets):
                raise CorpusError(
                    f"parallel files differ in length: {source_path} has {len(sources)} lines and "
                    f"{target_path} has {len(targets)}; they must be line-aligned (one sentence per "
                    f"line, same count). Fix or re-download the shorter file."
                )
            raw[split] = (sources, targets)
    else:  # tsv, with our own split
        (file_spec,) = recipe.files.values()
        path = locate(file_spec, recipe, data_dir)
        lines, _ = read_lines(path, recipe.encoding_errors)
        index = {language: recipe.columns.index(language) for language in (src, tgt)}
        rows = []
        for number, line in enumerate(lines, start=1):
            fields = line.split("\t")
            if len(fields) < len(recipe.columns):
                raise CorpusError(
                    f"{path}, line {number}: expected {len(recipe.columns)} tab-separated columns "
                    f"({', '.join(recipe.columns)}), found {len(fields)}"
                )
            rows.append(fields)
        group_column = recipe.make_splits.get("group_by")
        groups = [row[recipe.columns.index(group_column)].strip() for row in rows] if group_column else None
        for split, indices in _split_indices(len(rows), recipe.make_splits, groups=groups).items():
            raw[split] = ([rows[i][index[src]] for i in indices], [rows[i][index[tgt]] for i in indices])
    columns = {}
    for split in SPLIT_NAMES:
        if split not in raw:
            continue
        sources, targets = raw[split]
        counts = {"read": len(sources), "empty": 0, "too_long": 0, "length_ratio": 0, "duplicate": 0}
        if split == "train":
            sources, targets = _clean_pairs(sources, targets, cleaning, counts)
        else:  # evaluation splits are never filtered
            sources, targets = [s.strip() for s in sources], [t.strip() for t in targets]
        counts["kept"] = len(sources)
        report[split] = counts
        columns[split] = {"source": sources, "target": targets}
    return columns


def _read_language_modeling(spec: CorpusSpec, data_dir, report: dict) -> dict:
    recipe = spec.recipe
    (file_spec,) = recipe.files.values()
    path = locate(file_spec, recipe, data_dir)
    lines, _ = read_lines(path, recipe.encoding_errors)
    text = "".join(line + "\n" for line in lines)
    cut = int(len(text) * (1.0 - float(recipe.make_splits["validation_tail"])))
    columns = {"train": {"text": [text[:cut]]}, "validation": {"text": [text[cut:]]}}
    for split, value in columns.items():
        report[split] = {"read": len(value["text"][0]), "kept": len(value["text"][0]), "unit": "characters"}
    return columns


def _read_parallel_text(spec: CorpusSpec, data_dir, report: dict) -> dict:
    """One text per split of the ``parallel_from`` recipe's pairs (the training split cleaned as
    that recipe says): a line ``SOURCE SEPARATOR TARGET END`` per pair."""
    recipe = spec.recipe
    pairs = resolve_corpus(f"{recipe.parallel_from}-{recipe.default_pair[0]}-{recipe.default_pair[1]}")
    columns = _read_translation(pairs, data_dir, Cleaning.from_recipe(pairs.recipe), report)
    return {split: {"text": ["".join(f"{source} {recipe.separator} {target} {recipe.end}\n"
                                     for source, target in zip(values["source"], values["target"]))]}
            for split, values in columns.items()}


def _read_classification(spec: CorpusSpec, data_dir, report: dict):
    recipe = spec.recipe
    replaced_total = 0

    def examples_of(file_spec: FileSpec, label=None):
        nonlocal replaced_total
        path = locate(file_spec, recipe, data_dir)
        lines, replaced = read_lines(path, recipe.encoding_errors)
        replaced_total += replaced
        examples = []
        for number, line in enumerate(lines, start=1):
            if label is not None:
                examples.append((line.strip(), label))
                continue
            head, _, text = line.strip().partition(" ")
            if recipe.label_separator:
                head = head.split(recipe.label_separator)[0]
            if not head:
                raise CorpusError(f"{path}, line {number}: expected '<label> <text>', got {line!r}")
            examples.append((text.strip(), head))
        return examples

    if recipe.format == "file_per_label":
        split_examples = {None: [ex for label, fs in recipe.files.items() for ex in examples_of(fs, label)]}
    elif recipe.splits:
        split_examples = {split: examples_of(fs) for split, fs in recipe.splits.items()}
    else:
        (file_spec,) = recipe.files.values()
        split_examples = {None: examples_of(file_spec)}

    counts = {}
    for key, examples in split_examples.items():
        read = len(examples)
        nonempty = [ex for ex in examples if ex[0]]
        kept = list(dict.fromkeys(nonempty)) if recipe.deduplicate else nonempty
        counts[key] = {"read": read, "empty": read - len(nonempty), "duplicate": len(nonempty) - len(kept)}
        split_examples[key] = kept
    if recipe.label_names:
        label_names = [str(recipe.label_names[k]) for k in sorted(recipe.label_names, key=str)]
        rename = {str(k): str(v) for k, v in recipe.label_names.items()}
    else:
        label_names = sorted({label for examples in split_examples.values() for _, label in examples})
        rename = {name: name for name in label_names}

    if None in split_examples:  # one pool: make the splits
        examples = split_examples[None]
        labels = [label for _, label in examples] if recipe.make_splits.get("stratify") else None
        groups = [text for text, _ in examples] if recipe.make_splits.get("group_by") else None
        indices = _split_indices(len(examples), recipe.make_splits, groups=groups, labels=labels)
        split_examples = {split: [examples[i] for i in part] for split, part in indices.items()}
        report["pool"] = counts[None]
        counts = {split: {} for split in indices}
    columns = {}
    for split in SPLIT_NAMES:
        if split not in split_examples:
            continue
        examples = split_examples[split]
        for _, label in examples:
            if rename.get(str(label)) not in label_names:
                raise CorpusError(f"corpus {spec.name}: label '{label}' is not among {label_names}")
        counts[split]["kept"] = len(examples)
        report[split] = counts[split]
        columns[split] = {"text": [t for t, _ in examples],
                          "label": [label_names.index(rename[str(label)]) for _, label in examples]}
    if replaced_total:
        report["undecodable_lines_replaced"] = replaced_total
    return columns, label_names


def read_corpus(corpus, data_dir=None, cleaning: Cleaning | None = None):
    """Read a corpus into plain columns: ``(spec, {split: {column: list}}, report, label_names)``."""
    spec = resolve_corpus(corpus)
    recipe = spec.recipe
    directory = data_directory(data_dir)
    if cleaning is None:
        cleaning = Cleaning.from_recipe(recipe)
    report, label_names = {}, None
    if recipe.task == "translation":
        columns = _read_translation(spec, directory, cleaning, report)
    elif recipe.format == "parallel_text":
        columns = _read_parallel_text(spec, directory, report)
    elif recipe.task == "language_modeling":
        columns = _read_language_modeling(spec, directory, report)
    else:
        columns, label_names = _read_classification(spec, directory, report)
    for split, values in columns.items():
        if not next(iter(values.values())):
            raise CorpusError(
                f"corpus {spec.name}: the {split} split is empty after filtering "
                f"(counts: {report.get(split)}; filters: {cleaning.describe()}). "
                f"Loosen the filters (--max-length, --max-ratio) or check the input files."
            )
    if recipe.task == "translation":
        report["filters"] = cleaning.describe()
    elif recipe.task == "classification":
        report["filters"] = {"strip": True, "drop_empty": True, "deduplicate": recipe.deduplicate}
    else:
        report["filters"] = {}  # the text is kept exactly as it is
    return spec, columns, report, label_names


def load_corpus(corpus, data_dir=None, *, max_length=None, max_ratio=None, deduplicate=None):
    """Load a corpus as a ``datasets.DatasetDict`` (splits train / validation / test).

    Columns: ``source`` and ``target`` for translation, ``text`` for language modelling (one row
    holding the contiguous text of the split), ``text`` and ``label`` (a ClassLabel) for
    classification. Keyword filters override the recipe's cleaning of the training split.

    >>> corpus = load_corpus("multi30k-de-en")              # doctest: +SKIP
    >>> corpus["train"][0]["source"]                         # doctest: +SKIP
    'Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.'
    """
    import datasets

    cleaning = Cleaning.from_recipe(resolve_corpus(corpus).recipe, max_length, max_ratio, deduplicate)
    _, columns, _, label_names = read_corpus(corpus, data_dir, cleaning)
    features = None
    if label_names is not None:
        features = datasets.Features({"text": datasets.Value("string"),
                                      "label": datasets.ClassLabel(names=label_names)})
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(values, features=features) for split, values in columns.items()}
    )


# ----------------------------------------------------------------------------- preparing

def split_files(spec: CorpusSpec, split: str) -> dict[str, str]:
    """File names of a prepared split, by column (``source``/``target``/``text``/``examples``)."""
    task = spec.recipe.task
    if task == "translation":
        return {"source": f"{split}.{spec.source_language}", "target": f"{split}.{spec.target_language}"}
    if task == "language_modeling":
        return {"text": f"{split}.txt"}
    return {"examples": f"{split}.jsonl"}


def prepare_corpus(corpus, work_dir="work", data_dir=None, cleaning: Cleaning | None = None) -> dict:
    """Write the cleaned splits and ``manifest.json`` to ``work_dir/<corpus>/``; return the manifest.

    Translation splits are plain text, one sentence per line, one file per language
    (``train.de``, ``train.en``); language-modelling splits are the raw text (``train.txt``);
    classification splits are JSON lines ``{"text": ..., "label": ...}``.
    """
    spec, columns, report, label_names = read_corpus(corpus, data_dir, cleaning)
    out = Path(work_dir) / spec.name
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".incoming-*"):  # left by an earlier run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    incoming = Path(tempfile.mkdtemp(dir=out, prefix=".incoming-"))
    outputs = {}
    for split, values in columns.items():
        names = split_files(spec, split)
        if spec.recipe.task == "translation":
            contents = {names["source"]: values["source"], names["target"]: values["target"]}
            texts = {name: "".join(line + "\n" for line in lines) for name, lines in contents.items()}
        elif spec.recipe.task == "language_modeling":
            texts = {names["text"]: values["text"][0]}
        else:
            texts = {names["examples"]: "".join(
                json.dumps({"text": t, "label": label_names[y]}, ensure_ascii=False) + "\n"
                for t, y in zip(values["text"], values["label"]))}
        for name, text in texts.items():
            data = text.encode("utf-8")
            atomic_write_bytes(incoming / name, data)
            outputs[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                             "lines": data.count(b"\n")}
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
        "data_from": str(directory) if directory else f"download cache {cache_directory()}",
        "inputs": {fs.path: fs.sha256 for fs in spec.recipe.file_specs()},
        "filters": report.pop("filters"),
        "seed": spec.recipe.make_splits.get("seed"),
        "counts": report,
        "outputs": outputs,
        "split_files": {split: split_files(spec, split) for split in columns},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


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


def _check_prepared_file(directory: Path, manifest: dict, name: str) -> bytes:
    """The bytes of a prepared file, after checking them against what the manifest recorded
    when `translator data` wrote them (size, line count and sha256; hashed once per process)."""
    path = directory / name
    redo = f"run `translator data {manifest['corpus']}` again (it rewrites every split and the manifest)"
    if not path.is_file():
        raise CorpusError(f"{path} is missing, though {directory / 'manifest.json'} lists it; {redo}")
    recorded = manifest["outputs"].get(name)
    if isinstance(recorded, str):  # manifests written before sizes were recorded hold the hash alone
        recorded = {"sha256": recorded}
    data = path.read_bytes()
    if recorded and (len(data) != recorded.get("bytes", len(data))
                     or _sha256_once(path, data) != recorded["sha256"]):
        count = data.count(b"\n")
        lines = f" ({count:,} lines where it wrote {recorded['lines']:,})" if "lines" in recorded else ""
        raise CorpusError(f"{path} is not the file `translator data` wrote{lines}: it was edited, or a write "
                          f"was interrupted. Training or scoring on it could pair sentences wrongly; {redo}")
    return data


def read_prepared_split(corpus, split: str, work_dir="work") -> dict[str, list]:
    """The columns of one prepared split, read back from ``work_dir/<corpus>/`` and checked
    against the manifest (a file edited, cut short or left from another preparation is an error)."""
    directory, manifest = read_manifest(corpus, work_dir)
    files = manifest["split_files"].get(split)
    if files is None:
        raise CorpusError(f"corpus {manifest['corpus']} has no '{split}' split; it has {sorted(manifest['split_files'])}")
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
        raise CorpusError(f"{directory}: the {split} split has {len(columns['source']):,} source and "
                          f"{len(columns['target']):,} target lines ({files['source']}, {files['target']}); "
                          f"run `translator data {manifest['corpus']}` again")
    return columns
