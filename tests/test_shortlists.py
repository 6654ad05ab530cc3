"""Lexical shortlists (issue 32): built from the training pairs, used by greedy and beam search
in `Translator`, the export and `translator serve`, on the export tests' weak reversal run (varied
outputs)."""

import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def run(translation):
    run, _, sentences = translation
    return run, [s for s in sentences if len(s) < 40]


def test_the_shortlist_command_keeps_each_symbols_own_translation_first(run):
    from translator.data.tokenizers import load_tokenizers
    from translator.decoding.shortlists import SHORTLIST_FILE, Shortlist

    run, _ = run
    completed = subprocess.run([sys.executable, "-m", "translator", "shortlist", "--run", str(run),
                                "--per-source", "1", "--frequent", "2"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert f"wrote {run / SHORTLIST_FILE}" in completed.stdout
    shortlist = Shortlist.load(run / SHORTLIST_FILE)
    tokenizers = load_tokenizers(run / "tokenizers")
    source, target = tokenizers["source"], tokenizers["target"]
    for symbol in "abcdefghijkl":  # the targets are the sources in capitals, reversed
        (piece,) = source.encode(symbol)
        assert target.decode([int(shortlist.table[piece, 0])]) == symbol.upper()
    assert shortlist.frequent.size == 2 and shortlist.table.shape == (source.vocabulary_size, 1)


def test_the_pieces_of_a_batch_are_the_specials_the_frequent_and_its_sources_candidates():
    import tensorflow as tf

    from translator.decoding.shortlists import Shortlist

    table = np.zeros([10, 2], np.int32)
    table[5], table[6] = [7, 9], [8, 0]
    shortlist = Shortlist(table, np.array([4], np.int32), 12)
    pieces = shortlist.pieces(tf.constant([[5, 0, 0], [6, 5, 0]], tf.int32)).numpy().tolist()
    assert pieces == [0, 1, 2, 3, 4, 7, 8, 9]


def test_a_shortlist_of_every_piece_gives_the_full_searchs_output_byte_for_byte(run):
    from translator import Translator
    from translator.decoding.shortlists import Shortlist

    run, sentences = run
    full = Translator.load(run)
    everything = Translator.load(run)
    everything.shortlist = Shortlist.every_piece(full.source_tokenizer.vocabulary_size,
                                                 full.target_tokenizer.vocabulary_size)
    for beam_size in (1, 4):
        expected = full.translate_detailed(sentences, beam_size=beam_size)
        got = everything.translate_detailed(sentences, beam_size=beam_size)
        assert [t.text for t in got] == [t.text for t in expected]
        assert [t.score for t in got] == [t.score for t in expected]
    assert len({t.text for t in expected}) > 20  # a weak model: varied outputs, not one string


def test_decoding_writes_only_the_batchs_shortlist_pieces(run):
    from translator import Translator
    from translator.decoding.shortlists import SHORTLIST_FILE, Shortlist, build_for_run

    run, sentences = run
    build_for_run(run, per_source=1, frequent=1)
    shortlisted = Translator.load(run, shortlist=True)
    assert isinstance(shortlisted.shortlist, Shortlist)
    full = Translator.load(run)
    frequent = {shortlisted.target_tokenizer.decode([int(i)]) for i in shortlisted.shortlist.frequent}
    changed = 0
    for sentence in [s for s in sentences if s.strip()][:30]:
        for beam_size in (1, 4):
            (text,) = shortlisted.translate([sentence], beam_size=beam_size)
            assert set(text.split()) <= set(sentence.upper().split()) | frequent, (sentence, text)
            changed += text != full.translate([sentence], beam_size=beam_size)[0]
    assert changed  # the weak model writes other pieces when it may
    # The config key turns it on too; a missing file says how to make it.
    (run / SHORTLIST_FILE).rename(run / "elsewhere.npz")
    try:
        with pytest.raises(ValueError, match="translator shortlist --run"):
            Translator.load(run, shortlist=True)
    finally:
        (run / "elsewhere.npz").rename(run / SHORTLIST_FILE)


def test_export_and_serve_search_the_shortlist_as_translator_does(run, tmp_path):
    import tensorflow as tf

    from translator import Translator
    from translator.decoding.shortlists import build_for_run
    from translator.service.export import export
    from translator.service.serving import Backend

    run, sentences = run
    build_for_run(run, per_source=2, frequent=2)
    translator = Translator.load(run, shortlist=True)
    sentences = sentences[:30] + sentences[-9:]  # with the edge cases
    # One sentence a batch: its shortlist is its own (a batch's is the union of its sentences').
    expected = [translator.translate(sentence) for sentence in sentences]
    full = Translator.load(run)
    assert expected != [full.translate(sentence) for sentence in sentences]
    export(run, tmp_path / "export", shortlist=True)
    assert json.loads((tmp_path / "export" / "export.json").read_text())["shortlist"] is True
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    exported = [loaded.signatures["translate"](sentences=tf.constant([s]))["translations"].numpy()[0].decode()
                for s in sentences]
    assert exported == expected
    backend = Backend.from_run(run, shortlist=True)
    assert [backend.translate([s], translator.beam_size)[0][0][0] for s in sentences] == expected


def test_the_shortlist_takes_ibm_model_1s_translations_not_the_most_frequent_neighbours():
    from translator.decoding.shortlists import build_shortlist

    # das Haus / the house, das Buch / the book, ein Buch / a book: "the" is in two of
    # "Buch"'s sentences, as "book" is, but Model 1 explains it by "das".
    das, haus, buch, ein, the, house, book, a = 4, 5, 6, 7, 4, 5, 6, 7
    sources = [[das, haus], [das, buch], [ein, buch]]
    targets = [[the, house], [the, book], [a, book]]
    shortlist = build_shortlist(sources, targets, 8, 8, per_source=1, frequent=1, iterations=10)
    assert shortlist.table[[das, haus, buch, ein], 0].tolist() == [the, house, book, a]
    assert shortlist.table[:4].tolist() == [[0]] * 4  # padding and the specials bring nothing
    assert shortlist.frequent.tolist() == [the]  # in two sentences, as "book": the lower id first


def test_the_bench_table_compares_each_row_with_todays_fastest_of_its_search():
    from translator.studies.shortlist_bench import markdown

    def row(setting, beam_size, batch_size, speed, bleu, words):
        return {"setting": setting, "precision": "bfloat16", "beam_size": beam_size, "batch_size": batch_size,
                "sentences_per_second": speed, "bleu": bleu, "mean_output_words": words}

    lines = markdown({"run": "runs/r", "length_penalty": 2.0, "shortlist": {"per_source": 10, "frequent": 300},
                      "reference_mean_words": 12.0,
                      "rows": [row("today", 1, 500, 2000.0, 37.0, 12.0), row("today", 1, 64, 2500.0, 37.0, 12.0),
                               row("today", 5, 64, 400.0, 39.0, 12.0), row("shortlist", 5, 32, 900.0, 38.9, 12.12)]})
    assert lines[-1] == "| shortlist | bfloat16 | beam 5 | 32 | 900.0 | 2.25 | 38.90 | -0.10 | 12.12 | +1.0% |"
    assert "| today | bfloat16 | greedy | 500 | 2,000.0 | 0.80 |" in lines[4]
