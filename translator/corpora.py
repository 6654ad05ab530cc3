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
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from translator.checks import check_bool, check_number, check_positive_int
from translator.files import atomic_write_text, read_yaml, search_path

TASKS = ("translation", "language_modeling", "classification")
FORMATS = {
    "translation": ("parallel", "tsv", "multilingual"),
    "language_modeling": ("text", "parallel_text"),
    "classification": ("label_first", "file_per_label"),
}
RECIPE_KEYS = {
    "name", "description", "license", "citation", "task", "format", "languages",
    "default_pair", "columns", "splits", "files", "make_splits", "cleaning", "deduplicate",
    "label_names", "label_separator", "encoding_errors", "parallel_from", "separator", "end",
    "directions",
}
MULTILINGUAL_LANGUAGES = ["src", "tgt"]  # a multilingual corpus's two sides (train.src, train.tgt)
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
    sha256: str
    url: str = ""  # none: a local file (the user's own), its path absolute or relative to the recipe
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
    parallel_from: str | None = None  # formats parallel_text, multilingual: the translation recipe read
    directions: list = field(default_factory=list)  # format multilingual: ["de-en", "en-fr", ...]
    separator: str = ""  # format parallel_text: "SOURCE SEPARATOR TARGET END" per line
    end: str = ""

    def file_specs(self):
        """Every FileSpec of the recipe (of the recipe it joins, for a multilingual one)."""
        if self.format == "multilingual":
            yield from read_recipe(known_recipes()[self.parallel_from]).file_specs()
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
        raise CorpusError(f"{where}: expected a mapping with path, sha256 and (for a public file) url; got {raw!r}")
    unknown = set(raw) - FILE_KEYS
    missing = {"path", "sha256"} - set(raw)
    if unknown:
        raise CorpusError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(FILE_KEYS)}")
    if missing:
        raise CorpusError(f"{where}: missing key(s) {sorted(missing)} (every file needs path and sha256; a "
                          "public one also its url, and a file without url is read from its path, absolute "
                          "or relative to the recipe)")
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
    if fmt == "multilingual":
        return _multilingual_recipe(raw, path)
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
    if files and fmt == "parallel" and not set(raw.get("default_pair") or []) <= set(files):
        raise CorpusError(f"{path}: files: a parallel corpus split here needs one file per language "
                          f"(files.{{language}}: path, sha256); found {sorted(files)}")
    if files and fmt == "tsv" and len(files) != 1:
        raise CorpusError(f"{path}: files: a tsv corpus is one file (files.pairs: path, sha256); found {sorted(files)}")
    if fmt == "tsv" and not raw.get("columns"):
        raise CorpusError(f"{path}: format tsv needs 'columns' (the language of each column, e.g. [en, de])")
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


def _recipe_read_from(raw: dict, path: Path) -> Recipe:
    """The recipe that ``parallel_from`` names (formats parallel_text and multilingual)."""
    recipes = known_recipes()
    if raw["parallel_from"] not in recipes:
        raise CorpusError(f"{path}: parallel_from: '{raw['parallel_from']}' is not a known corpus recipe "
                          f"({', '.join(sorted(recipes))})")
    return read_recipe(recipes[raw["parallel_from"]])


def _parallel_text_recipe(raw: dict, path: Path) -> Recipe:
    """A language-modelling recipe (format ``parallel_text``) whose text is the pairs of a
    translation recipe, one ``SOURCE SEPARATOR TARGET END`` line each: translation as
    continuing a sequence. Its files, splits and languages are those of ``parallel_from``."""
    for key in ("parallel_from", "default_pair", "separator", "end"):
        if not raw.get(key):
            raise CorpusError(f"{path}: format parallel_text needs '{key}' (parallel_from: a translation recipe; "
                              f"default_pair: [source, target]; separator and end: the symbols between and after)")
    pairs = _recipe_read_from(raw, path)
    if pairs.task != "translation" or pairs.format != "parallel":
        raise CorpusError(f"{path}: parallel_from: '{raw['parallel_from']}' is not a translation recipe of "
                          f"line-aligned files (format: parallel)")
    if len(raw["default_pair"]) != 2 or not set(raw["default_pair"]) <= set(pairs.languages):
        raise CorpusError(f"{path}: default_pair: {raw['default_pair']} must be two of {pairs.languages}")
    return Recipe(name=str(raw["name"]), task="language_modeling", format="parallel_text", source=path,
                  description=str(raw.get("description", "")), license=pairs.license, citation=pairs.citation,
                  languages=pairs.languages, default_pair=list(raw["default_pair"]), splits=pairs.splits,
                  parallel_from=raw["parallel_from"], separator=str(raw["separator"]), end=str(raw["end"]))


def _multilingual_recipe(raw: dict, path: Path) -> Recipe:
    """A translation recipe (format ``multilingual``) joining several directions of another
    translation recipe into one corpus, as Johnson et al. (2017): every source sentence starts
    with the tag of its target language (``<2fr> ...``, see ``target_tag``). Its sides are
    ``src`` and ``tgt`` (files ``train.src``, ``train.tgt``)."""
    for key in ("parallel_from", "directions"):
        if not raw.get(key):
            raise CorpusError(f"{path}: format multilingual needs '{key}' (parallel_from: a translation recipe; "
                              f"directions: a list of SRC-TGT pairs of its languages, e.g. [de-en, en-de])")
    pairs = _recipe_read_from(raw, path)
    if pairs.task != "translation" or pairs.format == "multilingual":
        raise CorpusError(f"{path}: parallel_from: '{raw['parallel_from']}' is not a one-pair translation recipe")
    directions = [str(direction) for direction in raw["directions"]]
    for direction in directions:
        languages = direction.split("-")
        if len(languages) != 2 or not set(languages) <= set(pairs.languages) or languages[0] == languages[1]:
            raise CorpusError(f"{path}: directions: '{direction}' is not SRC-TGT with two of {pairs.languages}")
    return Recipe(name=str(raw["name"]), task="translation", format="multilingual", source=path,
                  description=str(raw.get("description", "")), license=pairs.license, citation=pairs.citation,
                  languages=list(MULTILINGUAL_LANGUAGES), default_pair=list(MULTILINGUAL_LANGUAGES),
                  parallel_from=raw["parallel_from"], directions=directions,
                  cleaning=dict(raw.get("cleaning") or {}))


def target_tag(language: str) -> str:
    """The piece a multilingual corpus puts before each source sentence: the target language."""
    return f"<2{language}>"


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


def _verify(path: Path, expected: str, what: str, fix: str = "") -> None:
    actual = _sha256_once(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: sha256 is {actual} but {what} expects {expected}. " + (fix or
            "The file differs from the public one (corrupted or edited copy): replace it with the "
            "original, or fix the recipe.")
        )


def locate(spec: FileSpec, recipe: Recipe, data_dir: Path | None) -> Path:
    """Return a verified local path for a recipe file: a local file (no url) from its path, a
    public one from the mirror, or downloaded to the cache."""
    if not spec.url:
        path = Path(spec.path) if Path(spec.path).is_absolute() else recipe.source.parent / spec.path
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} (corpus recipe {recipe.source}) is missing. The recipe was written from this file "
                f"(translator data --from-...); put it back, or write the recipe again from where it is now."
            )
        _verify(path, spec.sha256, f"recipe {recipe.source}",
                "The file changed since the recipe was written from it: write the recipe again "
                "(translator data --from-... with the same arguments) to use the file as it is now.")
        return path
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


def _open_bytes(path: Path):
    """A file opened for reading bytes, decompressed on the fly when it is gzipped."""
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def iter_lines(path: Path, encoding_errors: str = "strict", replaced: list | None = None):
    """The lines of a (possibly gzipped) UTF-8 file one at a time, split on "\\n" only, as
    ``wc -l`` counts them (a last line without "\\n" is a line too); never the whole file at once.

    A line with bytes that are not UTF-8 is an error naming it, or with ``encoding_errors=
    "replace"`` has them replaced (and is counted in ``replaced[0]`` when a list is given).
    """
    with _open_bytes(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                if encoding_errors != "replace":
                    raise CorpusError(
                        f"{path}, line {number}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at byte "
                        f"{error.start + 1} of the line). Convert the file to UTF-8, or set "
                        f"'encoding_errors: replace' in the corpus recipe to replace such bytes."
                    ) from None
                line = raw.decode("utf-8", errors="replace")
                if replaced is not None:
                    replaced[0] += 1
            yield line


def count_lines(path: Path) -> int:
    """How many lines ``iter_lines`` gives for a file, counted in blocks of bytes."""
    count, last = 0, b"\n"
    with _open_bytes(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _fingerprint(*fields: str) -> int:
    """A 64-bit fingerprint of some strings, standing in for them where a corpus is too large to
    keep every sentence in memory (duplicates, groups). Two different items share one with odds
    of about n² / 2^65 among n items (1 in 10^6 for 5 million)."""
    digest = hashlib.blake2b(digest_size=8)
    for text in fields:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return int.from_bytes(digest.digest(), "little")


def _first_occurrences(fingerprints) -> np.ndarray:
    """For each item, True if no earlier item has its fingerprint."""
    values = np.asarray(fingerprints, dtype=np.uint64)
    first = np.zeros(len(values), dtype=bool)
    first[np.unique(values, return_index=True)[1]] = True  # the index of each value's first occurrence
    return first


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

    def verdict(self, source: str, target: str) -> str | None:
        """Why a (stripped) pair is dropped, as its count's name, or None when it is kept."""
        source_words, target_words = len(source.split()), len(target.split())
        if not source or not target:
            return "empty"
        if self.max_length and max(source_words, target_words) > self.max_length:
            return "too_long"
        if self.max_ratio and max(source_words, target_words) > self.max_ratio * min(source_words, target_words):
            return "length_ratio"
        return None


def _clean_pairs(read_pairs, cleaning: Cleaning, counts: dict):
    """The stripped pairs that pass the filters, in order, one at a time. ``read_pairs()`` gives
    the (source, target) pairs afresh each time: twice when deduplicating (a first pass finds the
    first occurrence of each pair that passes the other filters, by fingerprint)."""
    def judged():
        for source, target in read_pairs():
            source, target = source.strip(), target.strip()
            yield cleaning.verdict(source, target), source, target

    first = None
    if cleaning.deduplicate:
        first = _first_occurrences(array("Q", (_fingerprint(source, target)
                                               for verdict, source, target in judged() if verdict is None)))
    passed = 0
    for verdict, source, target in judged():
        counts["read"] += 1
        if verdict is None and first is not None:
            verdict = None if first[passed] else "duplicate"
            passed += 1
        if verdict:
            counts[verdict] += 1
        else:
            yield source, target


def _split_assignment(n: int, settings: dict, groups=None, labels=None) -> tuple[list[str], np.ndarray]:
    """Deterministic train/validation/test assignment from the recipe's seed: the split names and,
    for each of the ``n`` items, the index of its split among them (int8).

    With ``groups`` (one number or string per item), all items of a group go to one split; with
    ``labels`` (one sortable value per item), the split is stratified (each label divided in the
    same proportions; a group counts under the label of its first item). Without groups every
    item is its own group. Groups are shuffled in the order they are first seen.
    """
    rng = np.random.RandomState(int(settings["seed"]))  # RandomState: stable across numpy versions
    fractions = {name: float(settings.get(name, 0.0)) for name in ("validation", "test")}
    names = ["train"] + [name for name, value in fractions.items() if value > 0]
    if groups is None:
        group_of_item = first_item = np.arange(n)
    else:
        _, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
        by_first_sight = np.argsort(first, kind="stable")
        rank = np.empty(len(first), dtype=np.int64)
        rank[by_first_sight] = np.arange(len(first))
        group_of_item, first_item = rank[np.ravel(inverse)], first[by_first_sight]
    strata = [np.arange(len(first_item))]
    if labels is not None:
        label_of_group = np.asarray(labels)[first_item]
        strata = [np.flatnonzero(label_of_group == label) for label in sorted(set(label_of_group.tolist()))]
    split_of_group = np.zeros(len(first_item), dtype=np.int8)  # 0: train
    for members in strata:
        members = members[rng.permutation(len(members))]
        n_validation = round(len(members) * fractions["validation"])
        n_test = round(len(members) * fractions["test"])
        if n_validation:
            split_of_group[members[:n_validation]] = names.index("validation")
        if n_test:
            split_of_group[members[n_validation:n_validation + n_test]] = names.index("test")
    return names, split_of_group[group_of_item]


def _split_indices(n: int, settings: dict, groups=None, labels=None) -> dict[str, np.ndarray]:
    """The item indices of each split (see ``_split_assignment``)."""
    names, assigned = _split_assignment(n, settings, groups, labels)
    return {name: np.flatnonzero(assigned == code) for code, name in enumerate(names)}


def _rows_of_files(recipe: Recipe, files: dict, encoding_errors: str):
    """The columns and a function giving the rows (lists of fields) of one split's files afresh:
    line-aligned files, one per language (format ``parallel``, ``files`` maps language -> path),
    or one tab-separated file (format ``tsv``, columns in ``recipe.columns``)."""
    if recipe.format == "parallel":
        languages, paths = list(files), list(files.values())
        counts = [count_lines(path) for path in paths]
        if len(set(counts)) > 1:
            raise CorpusError(
                f"parallel files differ in length: {paths[0]} has {counts[0]} lines and {paths[1]} has "
                f"{counts[1]}; they must be line-aligned (one sentence per line, same count). Fix or "
                f"re-download the shorter file."
            )
        return languages, lambda: zip(*(iter_lines(path, encoding_errors) for path in paths))
    (path,) = files.values()

    def rows():
        for number, line in enumerate(iter_lines(path, encoding_errors), start=1):
            fields = line.split("\t")
            if len(fields) < len(recipe.columns):
                raise CorpusError(
                    f"{path}, line {number}: expected {len(recipe.columns)} tab-separated columns "
                    f"({', '.join(recipe.columns)}), found {len(fields)}"
                )
            yield fields

    return recipe.columns, rows


def _located(entry, recipe: Recipe, data_dir) -> dict:
    """A split's (or the unsplit corpus's) files as {key: verified local path}."""
    entry = {"file": entry} if isinstance(entry, FileSpec) else entry
    return {key: locate(spec, recipe, data_dir) for key, spec in entry.items()}


def _translation_readers(spec: CorpusSpec, data_dir) -> dict:
    """split -> a function giving its (source, target) pairs afresh, unstripped."""
    recipe, src, tgt = spec.recipe, spec.source_language, spec.target_language
    readers = {}

    def pairs_of(columns, rows, assigned=None, code=None):  # assigned: each row's split code
        source, target = columns.index(src), columns.index(tgt)
        if assigned is None:
            return lambda: ((fields[source], fields[target]) for fields in rows())
        return lambda: ((fields[source], fields[target]) for fields, split in zip(rows(), assigned) if split == code)

    if recipe.splits:  # published splits
        for split, entry in recipe.splits.items():
            readers[split] = pairs_of(*_rows_of_files(recipe, _located(entry, recipe, data_dir), recipe.encoding_errors))
    else:  # one set of files, split here from the recipe's seed
        columns, rows = _rows_of_files(recipe, _located(recipe.files, recipe, data_dir), recipe.encoding_errors)
        group_column = recipe.make_splits.get("group_by")
        if group_column:  # one fingerprint per line stands for its group's sentence
            group = columns.index(group_column)
            groups = array("Q", (_fingerprint(fields[group].strip()) for fields in rows()))
            count = len(groups)
        else:
            groups, count = None, sum(1 for _ in rows())
        names, assigned = _split_assignment(count, recipe.make_splits, groups=groups)
        assigned = assigned.tobytes()  # iterates as small ints
        readers = {name: pairs_of(columns, rows, assigned, code) for code, name in enumerate(names)}
    return readers


def _multilingual_readers(spec: CorpusSpec, data_dir) -> dict:
    """The readers of every direction, joined split by split, each source tagged with its target
    language (an empty source stays empty, so that cleaning drops the pair)."""
    recipe = spec.recipe
    by_direction = {direction: _translation_readers(resolve_corpus(f"{recipe.parallel_from}-{direction}"), data_dir)
                    for direction in recipe.directions}

    def joined(split):
        def pairs():
            for direction, readers in by_direction.items():
                if split in readers:
                    tag = target_tag(direction.split("-")[1])
                    yield from ((f"{tag} {source.strip()}" if source.strip() else "", target)
                                for source, target in readers[split]())
        return pairs

    return {split: joined(split) for split in SPLIT_NAMES if any(split in r for r in by_direction.values())}


def _read_translation(spec: CorpusSpec, data_dir, cleaning: Cleaning, sink, report: dict) -> None:
    if spec.recipe.format == "multilingual":
        readers = _multilingual_readers(spec, data_dir)
    else:
        readers = _translation_readers(spec, data_dir)
    for split in SPLIT_NAMES:
        if split not in readers:
            continue
        counts = {"read": 0, "empty": 0, "too_long": 0, "length_ratio": 0, "duplicate": 0}
        if split == "train":
            pairs = _clean_pairs(readers[split], cleaning, counts)
        else:  # evaluation splits are never filtered
            pairs = ((source.strip(), target.strip()) for source, target in readers[split]())
        sink.open_split(split)
        kept = 0
        for source, target in pairs:
            sink.add(split, {"source": source, "target": target})
            kept += 1
        counts["read"] = counts["read"] if split == "train" else kept
        counts["kept"] = kept
        report[split] = counts


def _read_language_modeling(spec: CorpusSpec, data_dir, sink, report: dict) -> None:
    """The text of the file, line by line: its first characters the training split, the last
    ``validation_tail`` of them the validation split (cut inside a line where it falls)."""
    recipe = spec.recipe
    (file_spec,) = recipe.files.values()
    path = locate(file_spec, recipe, data_dir)
    total = sum(len(line) + 1 for line in iter_lines(path, recipe.encoding_errors))
    cut = int(total * (1.0 - float(recipe.make_splits["validation_tail"])))
    sink.open_split("train")
    sink.open_split("validation")
    position = 0
    for line in iter_lines(path, recipe.encoding_errors):
        line += "\n"
        if position + len(line) <= cut:
            sink.add("train", {"text": line})
        elif position >= cut:
            sink.add("validation", {"text": line})
        else:
            sink.add("train", {"text": line[:cut - position]})
            sink.add("validation", {"text": line[cut - position:]})
        position += len(line)
    for split, length in (("train", cut), ("validation", total - cut)):
        report[split] = {"read": length, "kept": length, "unit": "characters"}


class _PairsAsText:
    """A sink of pairs that hands another sink a ``SOURCE SEPARATOR TARGET END`` line per pair."""

    def __init__(self, sink, recipe: Recipe):
        self.sink, self.recipe = sink, recipe

    def open_split(self, split: str) -> None:
        self.sink.open_split(split)

    def add(self, split: str, row: dict) -> None:
        self.sink.add(split, {"text": f"{row['source']} {self.recipe.separator} {row['target']} {self.recipe.end}\n"})


def _read_parallel_text(spec: CorpusSpec, data_dir, sink, report: dict) -> None:
    """One text per split of the ``parallel_from`` recipe's pairs (the training split cleaned as
    that recipe says): a line ``SOURCE SEPARATOR TARGET END`` per pair."""
    recipe = spec.recipe
    pairs = resolve_corpus(f"{recipe.parallel_from}-{recipe.default_pair[0]}-{recipe.default_pair[1]}")
    _read_translation(pairs, data_dir, Cleaning.from_recipe(pairs.recipe), _PairsAsText(sink, recipe), report)


def _read_classification(spec: CorpusSpec, data_dir, sink, report: dict) -> list[str]:
    """Examples ``{"text", "label"}`` into the sink, split by split; returns the label names.
    A first pass counts, fingerprints and (for a pool without splits) assigns the examples; a
    second writes them."""
    recipe = spec.recipe
    replaced = [0]
    if recipe.format == "file_per_label":
        inputs = {None: [(file_spec, label) for label, file_spec in recipe.files.items()]}
    elif recipe.splits:
        inputs = {split: [(file_spec, None)] for split, file_spec in recipe.splits.items()}
    else:
        inputs = {None: [(file_spec, None) for file_spec in recipe.files.values()]}

    def examples(key, first_pass=False):
        for file_spec, label in inputs[key]:
            path = locate(file_spec, recipe, data_dir)
            lines = iter_lines(path, recipe.encoding_errors, replaced if first_pass else None)
            for number, line in enumerate(lines, start=1):
                if label is not None:
                    yield line.strip(), label
                    continue
                head, _, text = line.strip().partition(" ")
                if recipe.label_separator:
                    head = head.split(recipe.label_separator)[0]
                if not head:
                    raise CorpusError(f"{path}, line {number}: expected '<label> <text>', got {line!r}")
                yield text.strip(), head

    codes, counts, kept, label_codes, groups = {}, {}, {}, {}, {}  # per key: one value per non-empty example
    for key in inputs:
        read = empty = 0
        prints, label_codes[key], groups[key] = array("Q"), array("i"), array("Q")
        for text, label in examples(key, first_pass=True):
            read += 1
            if not text:
                empty += 1
                continue
            label_codes[key].append(codes.setdefault(label, len(codes)))
            if recipe.deduplicate:
                prints.append(_fingerprint(text, str(label)))
            if recipe.make_splits.get("group_by"):
                groups[key].append(_fingerprint(text))
        kept[key] = _first_occurrences(prints) if recipe.deduplicate else np.ones(len(label_codes[key]), bool)
        counts[key] = {"read": read, "empty": empty, "duplicate": int(len(kept[key]) - kept[key].sum())}
    if recipe.label_names:
        label_names = [str(recipe.label_names[k]) for k in sorted(recipe.label_names, key=str)]
        rename = {str(k): str(v) for k, v in recipe.label_names.items()}
    else:
        label_names = sorted(codes)
        rename = {name: name for name in label_names}
    for label in codes:
        if rename.get(str(label)) not in label_names:
            raise CorpusError(f"corpus {spec.name}: label '{label}' is not among {label_names}")

    if None in inputs:  # one pool: make the splits
        chosen = np.flatnonzero(kept[None])
        rank = np.argsort(np.argsort(list(codes)))  # label code -> its place in sorted order
        labels = rank[np.asarray(label_codes[None])[chosen]] if recipe.make_splits.get("stratify") else None
        grouped = np.asarray(groups[None])[chosen] if recipe.make_splits.get("group_by") else None
        names, assigned = _split_assignment(len(chosen), recipe.make_splits, groups=grouped, labels=labels)
        split_of = np.full(len(kept[None]), -1, dtype=np.int8)  # per non-empty example; -1: a duplicate
        split_of[chosen] = assigned
        report["pool"] = counts[None]
        passes = {None: [name for name in SPLIT_NAMES if name in names]}
    else:
        passes = {split: [split] for split in SPLIT_NAMES if split in inputs}
    for key, splits in passes.items():
        for split in splits:
            sink.open_split(split)
        written = dict.fromkeys(splits, 0)
        index = 0
        for text, label in examples(key):
            if not text:
                continue
            split = (names[split_of[index]] if split_of[index] >= 0 else None) if key is None \
                else (key if kept[key][index] else None)
            index += 1
            if split is not None:
                sink.add(split, {"text": text, "label": rename[str(label)]})
                written[split] += 1
        for split in splits:
            report[split] = {**({} if key is None else counts[key]), "kept": written[split]}
    if replaced[0]:
        report["undecodable_lines_replaced"] = replaced[0]
    return label_names


def _read(spec: CorpusSpec, data_dir, cleaning: Cleaning, sink) -> tuple[dict, list | None]:
    """Read, clean and split a corpus into ``sink`` (``open_split(split)``, then ``add(split,
    row)`` per example, in order); return the report of counts and filters, and the label names."""
    recipe = spec.recipe
    directory = data_directory(data_dir)
    report, label_names = {}, None
    if recipe.task == "translation":
        _read_translation(spec, directory, cleaning, sink, report)
    elif recipe.format == "parallel_text":
        _read_parallel_text(spec, directory, sink, report)
    elif recipe.task == "language_modeling":
        _read_language_modeling(spec, directory, sink, report)
    else:
        label_names = _read_classification(spec, directory, sink, report)
    if recipe.task != "language_modeling":  # a text split is never empty (its share of the characters)
        for split, rows in sink.rows.items():
            if not rows:
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
    return report, label_names


class _Columns:
    """A sink that keeps every row in memory, as columns (for ``read_corpus``, small corpora)."""

    def __init__(self):
        self.columns, self.rows = {}, {}

    def open_split(self, split: str) -> None:
        self.columns[split], self.rows[split] = {}, 0

    def add(self, split: str, row: dict) -> None:
        self.rows[split] += 1
        for column, value in row.items():
            self.columns[split].setdefault(column, []).append(value)


def read_corpus(corpus, data_dir=None, cleaning: Cleaning | None = None):
    """Read a corpus into plain columns: ``(spec, {split: {column: list}}, report, label_names)``.
    All in memory: for large corpora, ``prepare_corpus`` streams the same rows into files."""
    spec = resolve_corpus(corpus)
    if cleaning is None:
        cleaning = Cleaning.from_recipe(spec.recipe)
    sink = _Columns()
    report, label_names = _read(spec, data_dir, cleaning, sink)
    columns = sink.columns
    for values in columns.values():
        if spec.recipe.task == "language_modeling":  # one contiguous text per split
            values["text"] = ["".join(values.get("text", []))]
        elif label_names is not None:
            values["label"] = [label_names.index(name) for name in values.get("label", [])]
    return spec, columns, report, label_names


def load_corpus(corpus, data_dir=None, *, max_length=None, max_ratio=None, deduplicate=None):
    """Load a corpus as a ``datasets.DatasetDict`` (splits train / validation / test), in memory.

    Columns: ``source`` and ``target`` for translation, ``text`` for language modelling (one row
    holding the contiguous text of the split), ``text`` and ``label`` (a ClassLabel) for
    classification. Keyword filters override the recipe's cleaning of the training split.
    For a corpus too large for memory, ``prepared_dataset`` reads the prepared files instead.

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
        report, label_names = _read(spec, data_dir, cleaning, files)
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
    if recorded and (size != recorded.get("bytes", size) or _sha256_once(path, data) != recorded["sha256"]):
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
