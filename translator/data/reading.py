"""Reading a corpus from its recipe's files: rows of every task and format, cleaned and split.

Cleaning applies to the training split only (evaluation splits are only stripped, so scores
stay comparable with published ones): strip, drop empty lines, an optional maximum length in
words, an optional source/target length ratio, optional de-duplication; every count is kept.
Corpora without a published split get one made deterministically from the recipe's seed.
`iter_lines` is the one line reader of raw and prepared files (`translator.data.prepared`).
"""

from __future__ import annotations

import gzip
import hashlib
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from translator.checks import check_bool, check_number, check_positive_int
from translator.data.recipes import (
    SPLIT_NAMES,
    CorpusError,
    CorpusSpec,
    FileSpec,
    Recipe,
    data_directory,
    locate,
    resolve_corpus,
    target_tag,
)


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


def _label_names(spec: CorpusSpec, labels) -> tuple[list[str], dict]:
    """The corpus's label names (the recipe's ``label_names``, else the labels found, sorted) and
    the name of each label as found in the files; an error names a label that has none."""
    recipe = spec.recipe
    if recipe.label_names:
        label_names = [str(recipe.label_names[k]) for k in sorted(recipe.label_names, key=str)]
        rename = {str(k): str(v) for k, v in recipe.label_names.items()}
    else:
        label_names = sorted(labels)
        rename = {name: name for name in label_names}
    for label in labels:
        if rename.get(str(label)) not in label_names:
            raise CorpusError(f"corpus {spec.name}: label '{label}' is not among {label_names}")
    return label_names, rename


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
    label_names, rename = _label_names(spec, codes)

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


def read_into(spec: CorpusSpec, data_dir, cleaning: Cleaning, sink) -> tuple[dict, list | None]:
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
    report, label_names = read_into(spec, data_dir, cleaning, sink)
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

