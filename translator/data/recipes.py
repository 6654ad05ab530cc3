"""Corpus recipes: reading and checking them, and finding the files they name.

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
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from translator.files import read_yaml, search_path

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


def sha256_once(path: Path, data: bytes | None = None) -> str:
    """sha256 of a file (of ``data``, its bytes, when already read), computed once per process
    for as long as the file's size and modification time stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = sha256_of(path) if data is None else hashlib.sha256(data).hexdigest()
    return _hashed[key]


def _verify(path: Path, expected: str, what: str, fix: str = "") -> None:
    actual = sha256_once(path)
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

