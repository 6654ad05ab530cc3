"""Corpora that do not fit in memory (issue 20): `translator data` writes its files line by line,
the training pairs stream from them a window at a time, and the prepared splits read as
Hugging Face datasets without being loaded whole."""

import collections
import gzip
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import make_task, reversal_pairs, sha256, write_config

from translator.data.corpora import (
    iter_prepared_split,
    prepare_corpus,
    prepared_dataset,
    read_corpus,
    read_prepared_split,
)

# sha256 (first 16 digits) of the files the in-memory `translator data` (before issue 20, at
# f955484) wrote for the generated corpora below: the streaming one must write the same bytes.
BEFORE_STREAMING = {
    "gentsv": {"train.es": "0e47d13978db9a81", "train.en": "02599981d94404ac", "validation.es": "3e890730cf7cd403",
               "validation.en": "15338f1a5814cd70", "test.es": "b7796cb8a7aae6ac", "test.en": "2d179a37224d8cd3"},
    "genpar": {"train.yy": "4de9c2f9992084e9", "train.xx": "d597e834c0119733", "validation.yy": "34b80605e44258d4",
               "validation.xx": "66108b19b3d47b68", "test.yy": "46195333e9945259", "test.xx": "6c940fabc6409628"},
    "gencls": {"train.jsonl": "60599d12deb60e4a", "validation.jsonl": "366ff0a51030d4ef",
               "test.jsonl": "499cf971e0710aba"},
    "gentext": {"train.txt": "c74c4ac67b00b755", "validation.txt": "207c4352545e70af"},
}


def write_generated_corpora(directory: Path) -> list[Path]:
    """Recipes over generated files that take every path of `translator data`: a gzipped TSV
    split by group with every filter, parallel files, a stratified grouped deduplicated
    classification pool with a label separator, and a text cut inside a line."""
    rng = random.Random(7)
    words = [f"w{i}" for i in range(40)] + ["", "  ", "ä", "x\ry"]

    def sentence():
        return " ".join(rng.choice(words) for _ in range(rng.randint(0, 9)))

    mirror = directory / "mirror" / "gen"
    mirror.mkdir(parents=True)

    def put(name, data):
        (mirror / name).write_bytes(data)
        return f"    path: gen/{name}\n    url: {(mirror / name).as_uri()}\n    sha256: {sha256(data)}\n"

    rows = [f"{sentence()}\t{sentence()}\textra" for _ in range(3000)] + ["a b\tc d\tz"] * 5
    rng.shuffle(rows)
    tsv = put("pairs.tsv.gz", gzip.compress(("\n".join(rows) + "\n").encode(), mtime=0))
    (directory / "gentsv.yaml").write_text(
        "name: gentsv\ntask: translation\nformat: tsv\ncolumns: [en, es, note]\nlanguages: [en, es]\n"
        "default_pair: [es, en]\nmake_splits:\n  seed: 3\n  validation: 0.1\n  test: 0.05\n  group_by: en\n"
        "cleaning:\n  max_length: 7\n  max_ratio: 2.5\n  deduplicate: true\nfiles:\n  pairs:\n" + tsv)
    splits = ""
    for split, count in (("train", 2000), ("validation", 100), ("test", 50)):
        sources = [sentence() for _ in range(count)] + ["same one"] * 3
        targets = [sentence() for _ in range(count)] + ["same two"] * 3
        splits += f"  {split}:\n"
        for language, lines in (("xx", sources), ("yy", targets)):
            splits += f"    {language}:\n" + put(f"{split}.{language}", ("\n".join(lines) + "\n").encode()).replace(
                "    ", "      ")
    (directory / "genpar.yaml").write_text(
        "name: genpar\ntask: translation\nformat: parallel\nlanguages: [xx, yy]\ndefault_pair: [yy, xx]\n"
        "cleaning:\n  max_length: 8\n  deduplicate: true\nsplits:\n" + splits)
    labelled = [f"{rng.choice(['A', 'B', 'C:x'])} {sentence()}" for _ in range(1500)] + ["A dup"] * 4 + ["B dup"] * 2
    examples = put("labelled.txt", ("\n".join(labelled) + "\n").encode())
    (directory / "gencls.yaml").write_text(
        "name: gencls\ntask: classification\nformat: label_first\nlabel_separator: ':'\ndeduplicate: true\n"
        "make_splits:\n  seed: 5\n  validation: 0.1\n  test: 0.2\n  stratify: true\n  group_by: text\n"
        "files:\n  examples:\n" + examples)
    text = put("text.txt", "".join(sentence() + "\n" for _ in range(2000)).encode())
    (directory / "gentext.yaml").write_text(
        "name: gentext\ntask: language_modeling\nformat: text\nmake_splits:\n  validation_tail: 0.13\n"
        "files:\n  text:\n" + text)
    return [directory / f"{name}.yaml" for name in BEFORE_STREAMING]


def test_streaming_data_writes_the_bytes_the_in_memory_preparation_wrote(tmp_path):
    for recipe in write_generated_corpora(tmp_path):
        manifest = prepare_corpus(recipe, tmp_path / "work", tmp_path / "mirror")
        written = {name: info["sha256"][:16] for name, info in manifest["outputs"].items()}
        assert written == BEFORE_STREAMING[recipe.stem], recipe.stem
        for name, info in manifest["outputs"].items():  # the manifest's record, made while streaming
            data = (tmp_path / "work" / recipe.stem / name).read_bytes()
            assert (info["sha256"], info["bytes"], info["lines"]) == (sha256(data), len(data), data.count(b"\n"))
        # read_corpus (in memory) and the prepared files hold the same rows
        _, columns, _, labels = read_corpus(recipe, tmp_path / "mirror")
        for split, values in columns.items():
            prepared = read_prepared_split(recipe, split, tmp_path / "work")
            if labels is not None:
                prepared["label"] = [labels.index(name) for name in prepared["label"]]
            assert prepared == values, (recipe.stem, split)


def test_prepared_splits_stream_and_read_as_datasets(tmp_path):
    recipes = write_generated_corpora(tmp_path)
    for recipe in recipes:
        prepare_corpus(recipe, tmp_path / "work", tmp_path / "mirror")
    work = tmp_path / "work"
    pairs = read_prepared_split(recipes[0], "train", work)
    rows = list(iter_prepared_split(recipes[0], "train", work))
    assert rows == [{"source": s, "target": t} for s, t in zip(pairs["source"], pairs["target"])]
    for streaming in (True, False):
        dataset = prepared_dataset(recipes[0], "train", work, streaming=streaming)
        assert list(dataset) == rows
    examples = prepared_dataset(recipes[2], "validation", work, streaming=False)
    expected = read_prepared_split(recipes[2], "validation", work)
    assert examples["text"] == expected["text"]
    assert [examples.features["label"].int2str(y) for y in examples["label"]] == expected["label"]
    text = "".join(row["text"] + "\n" for row in prepared_dataset(recipes[3], "train", work))
    assert text.rstrip("\n") == read_prepared_split(recipes[3], "train", work)["text"][0].rstrip("\n")


@pytest.fixture(scope="module")
def reversal(tmp_path_factory):
    directory = tmp_path_factory.mktemp("streaming")
    return directory, make_task(directory, "stream", {"train": reversal_pairs(1500, 11, lengths=(1, 12)),
                                                      "validation": reversal_pairs(40, 12)})


def translation_task(directory: Path, data: dict, name: str, **data_settings):
    from translator.config import load_config
    from translator.data.tokenizers import find_recipe, load_tokenizers
    from translator.training.translation_task import TranslationTask

    config = load_config(write_config(directory, {**data, **data_settings}, name=name,
                                      training={"batch_tokens": 120, "max_batch_size": 16, "seed": 3}))
    recipe = find_recipe(data["corpus"], data["tokenizer"])
    tokenizers = load_tokenizers(Path(data["work_dir"]) / Path(data["corpus"]).stem / "tokenizers" / recipe.stem)
    return TranslationTask(config, tokenizers, log=lambda *a: None)


def rows_of(batch) -> list[tuple]:
    """The (source, target) id tuples of a batch, padding removed."""
    source, target_input, _ = batch
    return [(tuple(s[s > 0]), tuple(t[t > 0][1:])) for s, t in zip(source, target_input)]


def test_streaming_batches_serve_every_pair_once_within_the_budget_deterministically(reversal, tmp_path):
    from translator.data.batching import StreamingBatches
    from translator.training.translation_task import read_pairs

    directory, data = reversal
    task = translation_task(tmp_path, data, "streamed", stream=True, stream_window=97)
    batches = task.train_batches
    assert isinstance(batches, StreamingBatches) and batches.window_count == 16  # ceil(1500 / 97)
    sources, targets, _ = read_pairs(task.config, "train", task.tokenizers, limit_length=True)
    everything = collections.Counter(zip(map(tuple, sources), map(tuple, targets)))
    epochs = {}
    for epoch in (0, 1):
        epochs[epoch] = list(batches.epoch(epoch))
        assert len(epochs[epoch]) == task.batches_per_epoch()
        assert collections.Counter(row for batch in epochs[epoch] for row in rows_of(batch)) == everything
        for source, target_input, _ in epochs[epoch]:
            longest = max(source.shape[1], target_input.shape[1])
            assert len(source) == 1 or len(source) * longest <= 120
            assert len(source) <= 16
    assert [rows_of(b) for b in epochs[0]] != [rows_of(b) for b in epochs[1]]  # another order each epoch
    again = translation_task(tmp_path, data, "again", stream=True, stream_window=97).train_batches
    for skip in (0, 5, 17, len(epochs[1]) - 1):  # the same order again, and resumable by skipping
        resumed = list(again.epoch(1, skip=skip))
        assert len(resumed) == len(epochs[1]) - skip
        assert all(np.array_equal(a, b) for x, y in zip(resumed, epochs[1][skip:]) for a, b in zip(x, y))
    sharded = list(again.epoch(1, shards=3, shard_ids=(0, 1, 2)))  # a global batch cut across replicas
    for index, batch in enumerate(epochs[1]):
        assert sum((rows_of(sharded[3 * index + shard]) for shard in range(3)), []) == rows_of(batch)


def test_pairs_in_memory_are_the_one_window_case_of_streamed_pairs():
    """One batch maker: a streamed corpus of one window gives the in-memory batches, epoch by
    epoch, resumed and sharded (each window is a `TranslationBatches`)."""
    from translator.data.batching import StreamingBatches, TranslationBatches

    rng = random.Random(7)
    sources = [[rng.randrange(4, 50) for _ in range(rng.randrange(1, 20))] for _ in range(600)]
    targets = [[rng.randrange(4, 50) for _ in range(rng.randrange(1, 20))] for _ in range(600)]
    in_memory = TranslationBatches(sources, targets, batch_tokens=200, max_batch_size=32, seed=5)
    streamed = StreamingBatches(lambda window: (sources, targets), 1, batch_tokens=200, max_batch_size=32, seed=5)
    assert streamed.batch_count() == in_memory.batch_count() and len(streamed) == len(in_memory)
    assert streamed.padding_fraction() == in_memory.padding_fraction()
    for epoch, skip, shards in [(0, 0, 1), (1, 0, 1), (2, 7, 1), (3, 0, 3)]:
        ours = list(streamed.epoch(epoch, skip, shards, tuple(range(shards))))
        theirs = list(in_memory.epoch(epoch, skip, shards, tuple(range(shards))))
        assert len(ours) == len(theirs) > 0
        assert all(np.array_equal(a, b) for x, y in zip(ours, theirs) for a, b in zip(x, y))


def test_a_second_streamed_task_reads_the_first_pass_instead_of_tokenizing_again(reversal, tmp_path, monkeypatch):
    """The first pass over a streamed corpus (batches per window) is kept beside the prepared
    files: a resumed run (a new task, same data and settings) tokenizes nothing to count, and
    an epoch tokenizes each pair once (a first pass and the first epoch after it: twice, as
    counting a window's batches needs its pieces and holding them all is what streaming avoids)."""
    from translator.data.tokenizers import Tokenizer

    directory, data = reversal
    calls = []
    encode = Tokenizer.encode
    monkeypatch.setattr(Tokenizer, "encode", lambda self, texts, **kw: calls.append(len(texts)) or
                        encode(self, texts, **kw))
    first = translation_task(tmp_path, data, "first", stream=True, stream_window=211)
    assert sum(calls) == 2 * 1500 + 2 * 40  # both sides of every training pair once, and the validation pairs
    calls.clear()
    resumed = translation_task(tmp_path, data, "resumed", stream=True, stream_window=211)
    assert sum(calls) == 2 * 40  # the validation pairs only
    assert resumed.train_batches.counts() == first.train_batches.counts()
    calls.clear()
    epoch = list(resumed.train_batches.epoch(1))
    assert sum(calls) == 2 * 1500  # an epoch tokenizes every pair once, window by window
    assert [len(b[0]) for b in epoch] == [len(b[0]) for b in first.train_batches.epoch(1)]
    calls.clear()
    translation_task(tmp_path, data, "other-window", stream=True, stream_window=307)  # other windows: counted anew
    assert sum(calls) == 2 * 1500 + 2 * 40


def test_data_stream_auto_keeps_small_corpora_in_memory(reversal, tmp_path, monkeypatch):
    from translator.data.batching import StreamingBatches, TranslationBatches
    from translator.training import translation_task as task_module

    _, data = reversal
    assert isinstance(translation_task(tmp_path, data, "auto").train_batches, TranslationBatches)
    assert isinstance(translation_task(tmp_path, data, "off", stream=False).train_batches, TranslationBatches)
    monkeypatch.setattr(task_module, "STREAM_PAIRS", 1000)
    assert isinstance(translation_task(tmp_path, data, "large", stream_window=400).train_batches, StreamingBatches)


def test_training_on_streamed_pairs_runs_its_epochs(reversal, tmp_path):
    from test_training import read_log

    from translator.training.trainer import Trainer

    _, data = reversal
    config = write_config(tmp_path, {**data, "stream": True, "stream_window": 500}, name="streamed",
                          training={"epochs": 2, "batch_tokens": 512, "bleu_every": 0})
    messages = []
    Trainer(config, tmp_path / "run", log=messages.append).train()
    assert any("streamed in windows of 500" in message for message in messages)
    log = read_log(tmp_path / "run")
    assert len(log) == 2 and float(log[-1]["validation_loss"]) < float(log[0]["validation_loss"])


def test_scale_bench_generates_its_corpus_and_measures_a_stage_alone(mirror, tmp_path):
    import sys

    from translator.studies.scale_bench import generate_corpus, measure

    recipe = generate_corpus(1000, tmp_path, mirror)
    manifest = prepare_corpus(recipe, tmp_path / "work", tmp_path / "mirror")
    assert manifest["counts"]["train"]["kept"] == 1000 and manifest["counts"]["validation"]["kept"] == 1014
    ballast = bytearray(300 * 2**20)  # this process's memory must not count in the stage's peak
    ballast[::4096] = b"1" * len(ballast[::4096])  # (touched, so resident)
    small = measure([sys.executable, "-c", "pass"], tmp_path / "small.log")
    large = measure([sys.executable, "-c", "x = bytearray(200 * 2**20); x[::4096] = b'1' * len(x[::4096])"],
                    tmp_path / "large.log")
    assert small["peak_memory_mib"] < 100 < 200 < large["peak_memory_mib"] < 300, (small, large, len(ballast))
