"""Tokenizers: fixed special ids, exact round trips, the card, and bad recipes."""

import json
import subprocess
import sys
import unicodedata

import pytest

from translator.data.corpora import prepare_corpus, read_prepared_split
from translator.data.tokenizers import Tokenizer, TokenizerError, load_tokenizers, train_tokenizers


@pytest.fixture(scope="module")
def work(mirror, tmp_path_factory):
    directory = tmp_path_factory.mktemp("work")
    for corpus in ("multi30k-de-en", "tinyshakespeare", "names"):
        prepare_corpus(corpus, directory, mirror)
    return directory


def test_multi30k_tokenizers_have_fixed_ids_low_unk_rate_and_exact_round_trips(work):
    card = train_tokenizers("multi30k-de-en", work)
    assert card["sides"] == {"source": "de", "target": "en"}
    assert card["models"]["de"]["validation_source"]["unk_rate"] < 0.005
    assert card["models"]["en"]["validation_target"]["unk_rate"] < 0.005
    tokenizers = load_tokenizers(card["directory"])
    validation = read_prepared_split("multi30k-de-en", "validation", work)
    for side in ("source", "target"):
        tokenizer = tokenizers[side]
        assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.sos_id, tokenizer.eos_id) == (0, 1, 2, 3)
        assert [tokenizer.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<sos>", "<eos>"]
        # Exact on normal text; SentencePiece's NFKC normalization maps the rest (here a
        # no-break space in "120\xa0cm") to its normal form.
        sentences = validation[side]
        normal = [s for s in sentences if unicodedata.normalize("NFKC", s) == s and "  " not in s]
        assert len(normal) > 0.99 * len(sentences)
        assert tokenizer.decode(tokenizer.encode(normal)) == normal
        others = [s for s in sentences if s not in normal]
        if others:
            assert tokenizer.decode(tokenizer.encode(others)) == [unicodedata.normalize("NFKC", s) for s in others]
    ids = tokenizers["target"].encode(["A dog runs."], add_sos=True, add_eos=True)[0]
    assert ids[0] == 2 and ids[-1] == 3
    assert tokenizers["target"].decode(ids) == "A dog runs."
    saved = json.loads((work / "multi30k-de-en" / "tokenizers" / "multi30k" / "card.json").read_text())
    assert saved["settings"]["model_type"] == "bpe" and saved["models"]["de"]["vocabulary_size"] == 8000


def test_joint_vocabulary_serves_both_sides(work):
    card = train_tokenizers("multi30k-de-en", work, recipe="multi30k-joint8k")
    assert card["sides"] == {"source": "joint", "target": "joint"}
    tokenizers = load_tokenizers(card["directory"])
    assert tokenizers["source"].model_file == tokenizers["target"].model_file


def test_character_mode_gives_the_text_back_exactly_newlines_included(work):
    card = train_tokenizers("tinyshakespeare", work)
    tokenizer = load_tokenizers(card["directory"])["text"]
    assert tokenizer.vocabulary_size == 65 + 4  # 65 distinct characters plus pad, unk, <sos>, <eos>
    text = read_prepared_split("tinyshakespeare", "validation", work)["text"][0]
    ids = tokenizer.encode(text)
    assert len(ids) == len(text) and tokenizer.decode(ids) == text
    assert card["models"]["text"]["validation_text"]["unk_rate"] == 0.0


def test_names_are_tokenized_per_character(work):
    card = train_tokenizers("names", work)
    tokenizer = load_tokenizers(card["directory"])["text"]
    assert tokenizer.encode_as_pieces("Müller") == ["M", "ü", "l", "l", "e", "r"]


def test_a_bad_recipe_key_is_named(work, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model_type: bpe\nvocab_sise: 100\n")
    with pytest.raises(TokenizerError, match=r"unknown key\(s\) \['vocab_sise'\]"):
        train_tokenizers("names", work, recipe=str(recipe))
    recipe.write_text("model_type: wordpiece\n")
    with pytest.raises(TokenizerError, match="model_type: 'wordpiece' is not one of"):
        train_tokenizers("names", work, recipe=str(recipe))


def test_an_impossible_vocabulary_size_says_how_to_fix_it(work, tmp_path):
    recipe = tmp_path / "huge.yaml"
    recipe.write_text("model_type: unigram\nvocab_size: 50000\n")
    with pytest.raises(TokenizerError, match="Lower vocab_size"):
        train_tokenizers("names", work, recipe=str(recipe))


def test_tokenizers_before_data_says_to_prepare_the_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="translator data sst2"):
        train_tokenizers("sst2", tmp_path)


def test_a_model_with_other_special_ids_is_refused(tmp_path):
    import sentencepiece

    text = tmp_path / "text.txt"
    text.write_text("a b c d e f\n" * 20)
    sentencepiece.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "default"),
                                             vocab_size=10, model_type="char", minloglevel=2)
    with pytest.raises(TokenizerError, match=r"expected \(0, 1, 2, 3\)"):
        Tokenizer(tmp_path / "default.model")


def test_help_and_import_do_not_load_tensorflow():
    code = ("import sys, translator, translator.cli; translator.cli.build_parser().format_help(); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)
