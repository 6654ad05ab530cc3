"""Corpus recipes: the real mirror, the splits we make, and every kind of bad input."""

import json
import socket
import urllib.error
import urllib.request
import zipfile

import pytest
from conftest import sha256, write_parallel_recipe

from translator.data.corpora import (
    ChecksumError,
    CorpusError,
    known_recipes,
    load_corpus,
    prepare_corpus,
    read_corpus,
    read_prepared_split,
    resolve_corpus,
)

ALL_CORPORA = ["multi30k", "tatoeba-spa-eng", "iwslt15-en-vi", "tinyshakespeare", "names", "sst2", "trec"]


def test_every_issue_corpus_has_a_recipe_with_license_citation_and_checksums():
    recipes = known_recipes()
    for name in ALL_CORPORA:
        recipe = resolve_corpus(name).recipe
        assert recipe.license and recipe.citation and recipe.description, name
        for spec in recipe.file_specs():
            assert spec.url.startswith("https://") and len(spec.sha256) == 64, (name, spec)
    assert set(ALL_CORPORA) <= set(recipes)


def test_multi30k_de_en_from_the_mirror_has_the_published_split_sizes(mirror):
    corpus = load_corpus("multi30k-de-en", data_dir=mirror)
    assert {split: corpus[split].num_rows for split in corpus} == {"train": 29000, "validation": 1014, "test": 1000}
    assert corpus["train"].column_names == ["source", "target"]
    first = corpus["train"][0]
    assert first["source"].startswith("Zwei junge weiße Männer") and first["target"].startswith("Two young")


def test_any_multi30k_pair_and_a_clear_error_for_a_language_it_lacks(mirror):
    spec, columns, _, _ = read_corpus("multi30k-cs-fr", data_dir=mirror)
    assert (spec.source_language, spec.target_language) == ("cs", "fr")
    assert len(columns["test"]["source"]) == 1000
    with pytest.raises(CorpusError, match="language 'xx' is not in recipe"):
        resolve_corpus("multi30k-de-xx")


def test_unknown_corpus_lists_the_known_ones():
    with pytest.raises(CorpusError) as error:
        resolve_corpus("multi31k")
    message = str(error.value)
    assert "unknown corpus 'multi31k'" in message
    for name in ALL_CORPORA:
        assert name in message


def test_a_file_missing_from_the_mirror_names_the_file_the_directory_and_the_url(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_corpus("multi30k-de-en", data_dir=tmp_path)
    message = str(error.value)
    assert "multi30k/train.de.gz" in message or "multi30k/train.en.gz" in message
    assert str(tmp_path) in message
    assert "https://raw.githubusercontent.com/multi30k/dataset/" in message


def test_parallel_files_with_different_line_counts_name_both_files_and_counts(tmp_path):
    recipe = write_parallel_recipe(tmp_path, ["a", "b", "c"], ["x", "y"])
    with pytest.raises(CorpusError) as error:
        read_corpus(recipe, data_dir=tmp_path / "mirror")
    message = str(error.value)
    assert "train.xx has 3 lines" in message and "train.yy has 2" in message


def test_a_line_that_is_not_utf8_names_the_file_and_line(tmp_path):
    recipe = write_parallel_recipe(tmp_path, ["good", b"bad \xf0 byte", "fine"], ["x", "y", "z"], gz=True)
    with pytest.raises(CorpusError) as error:
        read_corpus(recipe, data_dir=tmp_path / "mirror")
    assert "train.xx.gz, line 2: not valid UTF-8" in str(error.value)
    assert "encoding_errors: replace" in str(error.value)


def test_a_corpus_empty_after_filtering_reports_the_filter_counts(tmp_path):
    recipe = write_parallel_recipe(tmp_path, ["one two three four", "  "], ["uno dos tres cuatro", "x"])
    with pytest.raises(CorpusError) as error:
        load_corpus(recipe, data_dir=tmp_path / "mirror", max_length=2)
    message = str(error.value)
    assert "train split is empty after filtering" in message
    assert "'empty': 1" in message and "'too_long': 1" in message


def test_cleaning_counts_each_filter(tmp_path):
    sources = ["a b", "", "a b", "a b c d e f g h", "one", "x y z"]
    targets = ["c d", "e", "c d", "short", "uno", "x y z"]
    recipe = write_parallel_recipe(tmp_path, sources, targets)
    from translator.data.corpora import Cleaning

    _, columns, report, _ = read_corpus(recipe, tmp_path / "mirror", Cleaning(max_length=6, max_ratio=2.0, deduplicate=True))
    assert report["train"] == {"read": 6, "empty": 1, "too_long": 1, "length_ratio": 0, "duplicate": 1, "kept": 3}
    assert columns["train"]["source"] == ["a b", "one", "x y z"]


def test_download_verifies_the_checksum_and_deletes_a_bad_file(tmp_path, monkeypatch):
    recipe = write_parallel_recipe(tmp_path, ["a"], ["b"])
    text = recipe.read_text().replace(sha256(b"a\n"), "0" * 64)
    recipe.write_text(text)
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("TRANSLATOR_DATA", raising=False)
    with pytest.raises(ChecksumError) as error:
        read_corpus(recipe)
    assert "deleted and not used" in str(error.value)
    left = [p for p in cache.rglob("*") if p.is_file()]
    assert not any("train.xx" in p.name or p.name.startswith(".download") for p in left), left


def test_download_into_the_cache_then_reuse_without_downloading(tmp_path, monkeypatch):
    recipe = write_parallel_recipe(tmp_path, ["a", "b"], ["c", "d"])
    monkeypatch.delenv("TRANSLATOR_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _, columns, _, _ = read_corpus(recipe)
    assert columns["train"]["target"] == ["c", "d"]
    cached = tmp_path / "cache" / "translator" / "toy" / "train.xx"
    assert cached.is_file()

    def no_network(*args, **kwargs):
        raise AssertionError("a cached, verified file must not be downloaded again")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert read_corpus(recipe)[1]["train"]["source"] == ["a", "b"]


def test_download_of_an_archive_member(tmp_path, monkeypatch):
    member = b"en\tes\nGo.\tVe.\nHi.\tHola.\n"
    archive = tmp_path / "pairs.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("spa-eng/spa.txt", member)
    recipe = tmp_path / "pairs.yaml"
    recipe.write_text(
        "name: pairs\ntask: translation\nformat: tsv\ncolumns: [en, es]\nlanguages: [en, es]\n"
        "default_pair: [es, en]\nmake_splits: {seed: 1, validation: 0, test: 0}\nfiles:\n  pairs:\n"
        f"    path: pairs/pairs.tsv.gz\n    sha256: {'1' * 64}\n    url: {archive.as_uri()}\n"
        f"    download_sha256: {sha256(archive.read_bytes())}\n    archive_member: spa-eng/spa.txt\n"
        f"    archive_member_sha256: {sha256(member)}\n"
    )
    monkeypatch.delenv("TRANSLATOR_DATA", raising=False)
    _, columns, _, _ = read_corpus(recipe)
    assert columns == {"train": {"source": ["es", "Ve.", "Hola."], "target": ["en", "Go.", "Hi."]}}


def test_a_failed_download_says_how_to_use_a_mirror_instead(tmp_path, monkeypatch):
    recipe = write_parallel_recipe(tmp_path, ["a"], ["b"])
    monkeypatch.delenv("TRANSLATOR_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(CorpusError, match="could not download .*TRANSLATOR_DATA"):
        read_corpus(recipe)
    assert not list((tmp_path / "cache").rglob("*.xx"))  # nothing half-written is left


def test_nothing_touches_the_network_when_the_mirror_has_the_files(mirror, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    for name in ALL_CORPORA:
        dataset = load_corpus(name, data_dir=mirror)
        assert dataset["validation"].num_rows > 0


def test_tatoeba_split_is_deterministic_and_keeps_each_english_sentence_in_one_split(mirror):
    _, first, report, _ = read_corpus("tatoeba-spa-eng", data_dir=mirror)
    _, second, _, _ = read_corpus("tatoeba-spa-eng", data_dir=mirror)
    assert first == second
    assert sum(report[s]["read"] for s in ("train", "validation", "test")) == 116964
    english = {split: set(first[split]["target"]) for split in first}
    assert not english["train"] & english["test"] and not english["train"] & english["validation"]
    assert first["train"]["source"][0] == "Ve."  # Spanish -> English by default


def test_names_split_is_stratified_deduplicated_grouped_and_seeded(mirror):
    corpus = load_corpus("names", data_dir=mirror)
    labels = corpus["train"].features["label"].names
    assert len(labels) == 18
    for split in ("train", "validation", "test"):
        assert set(corpus[split]["label"]) == set(range(18)), split
    pairs = [pair for split in corpus for pair in zip(corpus[split]["text"], corpus[split]["label"])]
    assert len(pairs) == len(set(pairs)) == 18015  # 20,074 lines less the exact duplicates
    texts = {split: set(corpus[split]["text"]) for split in corpus}
    assert sum(len(t) for t in texts.values()) == len(set.union(*texts.values()))  # no name in two splits
    abel = [split for split in corpus for text in corpus[split]["text"] if text == "Abel"]
    assert len(abel) == 5 and len(set(abel)) == 1  # listed under five languages, all in one split


def test_tinyshakespeare_is_split_like_nanogpt(mirror):
    corpus = load_corpus("tinyshakespeare", data_dir=mirror)
    train, validation = corpus["train"]["text"][0], corpus["validation"]["text"][0]
    original = (mirror / "tinyshakespeare" / "input.txt").read_text()
    assert train + validation == original
    assert len(train) == int(len(original) * 0.9)


def test_trec_replaces_its_one_bad_byte_as_its_recipe_says(mirror):
    _, columns, report, labels = read_corpus("trec", data_dir=mirror)
    assert labels == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert report["undecodable_lines_replaced"] == 1
    assert sum(len(columns[s]["text"]) for s in columns) == 5452


def test_prepare_writes_splits_and_a_manifest_atomically(mirror, tmp_path):
    manifest = prepare_corpus("multi30k-de-en", tmp_path, mirror)
    directory = tmp_path / "multi30k-de-en"
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["manifest.json", "train.de", "train.en", "validation.de", "validation.en", "test.de", "test.en"]
    )
    saved = json.loads((directory / "manifest.json").read_text())
    assert saved["counts"]["train"]["kept"] == 29000 and saved == manifest
    written = (directory / "test.de").read_bytes()
    assert saved["outputs"]["test.de"] == {"sha256": sha256(written), "bytes": len(written), "lines": 1000}
    assert saved["inputs"]["multi30k/train.de.gz"] == "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"
    back = read_prepared_split("multi30k-de-en", "test", tmp_path)
    assert len(back["source"]) == len(back["target"]) == 1000


def test_carriage_returns_and_line_separators_inside_sentences_keep_pairs_aligned(tmp_path):
    recipe = write_parallel_recipe(tmp_path, ["a\rb", "c\u2028d", "e"], ["x", "y", "z"])
    prepare_corpus(recipe, tmp_path / "work", tmp_path / "mirror")
    back = read_prepared_split(recipe, "train", tmp_path / "work")
    assert back == {"source": ["a\rb", "c\u2028d", "e"], "target": ["x", "y", "z"]}


def test_cli_data_prints_the_counts_and_errors_cleanly(mirror, tmp_path, capsys):
    from translator.cli import main

    assert main(["data", "multi30k-de-en", "--data-dir", str(mirror), "--work-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "29,000" in out and "1,014" in out and "1,000" in out
    assert main(["data", "nonexistent", "--work-dir", str(tmp_path)]) == 2
    assert "unknown corpus 'nonexistent'" in capsys.readouterr().err
