"""Your own data: a corpus recipe written from your files, so that every later stage (tokenizers,
train, evaluate, export) treats them as it treats the public corpora: checksums, cleaning,
splits and the manifest.

Three forms, as ``translator data --from-files/--from-tsv/--from-dataset`` takes them:
  * ``recipe_from_files``: two line-aligned files (``train.de``, ``train.en``), the languages read from
    their suffixes unless given;
  * ``recipe_from_tsv``: one tab-separated file, its columns named by language (``en,de``);
  * ``recipe_from_dataset``: a Hugging Face dataset, saved to disk (``save_to_disk``), a local parquet,
    json or csv file or folder, or a hub id; its rows are written out as tab-separated files
    beside the recipe (the recipe then names those, with their checksums).

Validation and test sets come from ``valid=`` and ``test=`` (or the dataset's own splits); when
there is no validation set, 2% of the training pairs become validation and 2% test, drawn from a
recorded seed. The recipe goes to ``corpora/NAME.yaml`` in the working directory, where every
stage looks; a tokenizer recipe ``tokenizers/NAME.yaml`` (BPE, 8,000 pieces per language at
most) is written beside it unless one exists. Writing again replaces a recipe written here,
never one written by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from translator.data.corpora import CorpusError, count_lines, sha256_of
from translator.files import atomic_write_text

WRITTEN_HERE = "# Written by `translator data --from-"  # the first line of every recipe written here
CARVED = {"seed": 1234, "validation": 0.02, "test": 0.02}
TOKENIZER_RECIPE = """{header}
# the corpus recipe again leaves it as it is).
# One BPE model per language, of at most 8,000 pieces (fewer when the corpus is small: SentencePiece
# stops where the corpus runs out of merges). Edit it and run `translator tokenizers {name}` again.
model_type: bpe
vocabulary: separate
vocab_size: 8000
hard_vocab_limit: false
character_coverage: 1.0
"""
LANGUAGE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def recipe_from_files(name: str, train, valid=None, test=None, languages=None,
                      recipes: str | Path = "corpora") -> Path:
    """Write the recipe of two line-aligned files (``train``: [source file, target file]); returns
    its path (``prepare_corpus(name)`` then prepares it). ``languages``: [source, target], read
    from the files' suffixes (``.de``) when None."""
    train = [Path(path) for path in train]
    languages = _languages(languages or [path.suffix[1:] for path in train], "--languages", train)
    splits = {"train": train}
    for split, paths in (("validation", valid), ("test", test)):
        if paths and len(paths) != 2:
            raise CorpusError(f"--{'valid' if split == 'validation' else 'test'}: give two files, SRC TGT "
                              f"(like the training files {train[0]} {train[1]}); got {len(paths)}")
        if paths:
            splits[split] = [Path(path) for path in paths]
    _check_splits(splits)
    lines = ["format: parallel          # one sentence per line, one file per language, line-aligned",
             f"languages: [{', '.join(languages)}]", f"default_pair: [{', '.join(languages)}]"]
    if len(splits) == 1:
        lines += _carved() + ["files:"] + [f"  {language}: {_file(path)}" for language, path in zip(languages, train)]
    else:
        lines.append("splits:")
        for split, paths in splits.items():
            lines += [f"  {split}:"] + [f"    {language}: {_file(path)}" for language, path in zip(languages, paths)]
    description = f"Line-aligned files {', '.join(str(path) for path in train)} and the evaluation files below."
    return _write(name, "files", description, lines, recipes)


def recipe_from_tsv(name: str, path, columns, valid=None, test=None, recipes: str | Path = "corpora") -> Path:
    """Write the recipe of a tab-separated file whose columns are ``columns`` (languages, the
    first two the default direction; more columns than named are ignored); returns its path."""
    columns = _languages(columns, "--columns", [path])
    splits = {"train": [Path(path)]}
    for split, other in (("validation", valid), ("test", test)):
        if other:
            splits[split] = [Path(other)]
    _check_splits(splits)
    lines = ["format: tsv                # one pair per line, columns in this order",
             f"columns: [{', '.join(columns)}]", f"languages: [{', '.join(columns)}]",
             f"default_pair: [{', '.join(columns[:2])}]"]
    if len(splits) == 1:
        lines += _carved() + ["files:", f"  pairs: {_file(Path(path))}"]
    else:
        lines += ["splits:"] + [f"  {split}: {_file(paths[0])}" for split, paths in splits.items()]
    return _write(name, "tsv", f"Tab-separated pairs from {path}.", lines, recipes)


def recipe_from_dataset(name: str, dataset: str, columns, recipes: str | Path = "corpora") -> Path:
    """Write the rows of a Hugging Face dataset (``columns``: two of its columns, or two keys of
    its ``translation`` column) as tab-separated files beside the recipe, one per split (train,
    and validation and test when it has them; a dataset with a test split but no validation split
    gives 2% of its training rows to validation), then the recipe of those files; returns its path."""
    columns = _languages(columns, "--columns", [dataset])
    if len(columns) != 2:
        raise CorpusError(f"--columns {','.join(columns)}: name two columns of {dataset} (source,target)")
    loaded = _load_dataset(dataset)
    names = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation",
             "test": "test"}
    unknown = [split for split in loaded if split not in names]
    if "train" not in loaded:
        raise CorpusError(f"{dataset}: no 'train' split (it has {', '.join(loaded) or 'none'}); a corpus needs one")
    if "test" in loaded and not {"validation", "valid", "dev"} & set(loaded):  # checkpoints need a validation set
        held_out = loaded["train"].train_test_split(test_size=CARVED["validation"], seed=CARVED["seed"])
        loaded["train"], loaded["validation"] = held_out["train"], held_out["test"]
    out = Path(recipes) / name
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, rows in loaded.items():
        if split in names:
            written[names[split]] = _export_split(rows, columns, out / f"{names[split]}.tsv", f"{dataset}, {split}")
    description = f"Rows of the dataset {dataset} (columns {', '.join(columns)}), written out as {out}/*.tsv."
    if unknown:
        description += f" Splits left out: {', '.join(unknown)}."
    lines = ["format: tsv                # one pair per line, columns in this order",
             f"columns: [{', '.join(columns)}]", f"languages: [{', '.join(columns)}]",
             f"default_pair: [{', '.join(columns)}]"]
    if "validation" not in written:
        lines += _carved() + ["files:", f"  pairs: {_file(written['train'], relative_to=out.parent)}"]
    else:
        lines += ["splits:"] + [f"  {split}: {_file(path, relative_to=out.parent)}" for split, path in written.items()]
    return _write(name, "dataset", description, lines, recipes)


# ----------------------------------------------------------------------------- the parts

def _languages(values, option: str, files) -> list[str]:
    values = [value.strip() for value in (values.split(",") if isinstance(values, str) else values)]
    for value in values:
        if not LANGUAGE.match(value):
            raise CorpusError(
                f"{option}: '{value}' (from {', '.join(map(str, files))}) is not a language name: letters, digits "
                f"and '_', starting with a letter (a name like 'de', 'en' or 'pt_br'); give them with {option} "
                f"SRC,TGT")
    if len(values) < 2 or len(set(values)) != len(values):
        raise CorpusError(f"{option}: expected two different languages (SRC,TGT), got {','.join(values) or 'none'}")
    return values


def _check_splits(splits: dict) -> None:
    if "test" in splits and "validation" not in splits:
        raise CorpusError("--test without --valid: give a validation set too (checkpoints are chosen on it), "
                          "or neither, and 2% of the training pairs become each")
    for split, paths in splits.items():
        for path in paths:
            if not path.is_file():
                raise CorpusError(f"{path} ({split}): no such file")
            if count_lines(path) == 0:
                raise CorpusError(f"{path} ({split}): the file is empty; a corpus needs sentences in it")


def _carved() -> list[str]:
    return ["make_splits:              # no validation set given: carved from the training pairs",
            f"  seed: {CARVED['seed']}", f"  validation: {CARVED['validation']}", f"  test: {CARVED['test']}"]


def _file(path: Path, relative_to: Path | None = None) -> str:
    """A recipe's file entry: its path (absolute, or relative to the recipe) and sha256."""
    shown = path.resolve().relative_to(relative_to.resolve()) if relative_to else path.resolve()
    return "{path: " + _quoted(str(shown)) + f", sha256: {sha256_of(path)}" + "}"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _write(name: str, form: str, description: str, lines: list, recipes) -> Path:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise CorpusError(f"--name '{name}': use letters, digits, '_', '.' and '-' (it names the recipe file "
                          f"and work/{name}/)")
    recipes = Path(recipes)
    path = recipes / f"{name}.yaml"
    if path.is_file() and not path.read_text(encoding="utf-8").startswith(WRITTEN_HERE):
        raise CorpusError(f"{path} exists and was not written by `translator data --from-...`; choose another "
                          f"--name (it would replace that recipe)")
    header = f"{WRITTEN_HERE}{form}` (the sha256 of each file as it was then; write it again after editing the"
    text = "\n".join([
        f"{header} files).", f"name: {name}", f"description: {_quoted(description)}",
        "license: 'your own data'", "citation: ''", "task: translation", *lines]) + "\n"
    recipes.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    tokenizer = recipes.parent / "tokenizers" / f"{name}.yaml"
    if not tokenizer.is_file():
        tokenizer.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(tokenizer, TOKENIZER_RECIPE.format(
            header=f"{WRITTEN_HERE}{form}` for corpora/{name}.yaml, once (it is yours to edit: writing", name=name))
    return path


def _load_dataset(dataset: str) -> dict:
    """split -> rows of a dataset saved to disk, a local data file or folder, or a hub id."""
    import datasets

    path = Path(dataset)
    try:
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
            loaded = datasets.load_from_disk(str(path))
        elif path.is_file():
            builder = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}.get(path.suffix)
            if builder is None:
                raise CorpusError(f"{path}: a dataset file is .parquet, .json, .jsonl or .csv; for line-aligned "
                                  f"text files use --from-files, for tab-separated ones --from-tsv")
            loaded = datasets.load_dataset(builder, data_files=str(path))
        else:  # a folder of data files, or a hub id (downloaded by `datasets` into its cache)
            loaded = datasets.load_dataset(dataset)
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        if isinstance(error, CorpusError):
            raise
        raise CorpusError(f"{dataset}: could not load it as a dataset ({error}); give a folder written by "
                          f"save_to_disk, a parquet/json/csv file or folder, or a hub id") from None
    return {"train": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)


def _export_split(rows, columns: list, path: Path, where: str) -> Path:
    """One split's (source, target) columns as a tab-separated file; tabs and line breaks inside
    a sentence become spaces (a TSV line holds one pair)."""
    nested = "translation" in rows.column_names and not set(columns) <= set(rows.column_names)
    missing = [] if nested else [column for column in columns if column not in rows.column_names]
    if missing:
        raise CorpusError(f"{where}: no column {', '.join(missing)}; it has {', '.join(rows.column_names)} "
                          f"(or give two keys of its 'translation' column)")
    lines = []
    for number, row in enumerate(rows, start=1):
        values = row["translation"] if nested else row
        fields = []
        for column in columns:
            value = values.get(column)
            if not isinstance(value, str):
                raise CorpusError(f"{where}, row {number}: column '{column}' is {value!r}, not text")
            fields.append(" ".join(value.split("\t")).replace("\r", " ").replace("\n", " "))
        lines.append("\t".join(fields) + "\n")
    if not lines:
        raise CorpusError(f"{where}: the split has no rows")
    atomic_write_text(path, "".join(lines))
    return path

