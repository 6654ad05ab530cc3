"""One model for several directions (issue 30; Johnson et al. 2017): a multilingual corpus tags
each source sentence with its target language, and `target_language=` picks the language."""

import json
import random

import pytest
from conftest import sha256, write_config

PAIRS = 2000  # training pairs of each direction


def write_three_languages(directory, count: int, seed: int):
    """A recipe `tri` of three line-aligned languages: xx (symbols), yy (their reversal) and zz
    (the same symbols, upper-cased); its mirror files under directory/mirror/tri."""
    generator = random.Random(seed)
    mirror = directory / "mirror" / "tri"
    mirror.mkdir(parents=True)
    entries = []
    splits = {"train": count, "validation": 60, "test": 60}
    for split, size in splits.items():
        rows = []
        for _ in range(size):
            symbols = [generator.choice("abcdefgh") for _ in range(generator.randint(3, 7))]
            rows.append((" ".join(symbols), " ".join(reversed(symbols)), " ".join(symbols).upper()))
        entries.append(f"  {split}:")
        for column, language in enumerate(("xx", "yy", "zz")):
            data = "".join(row[column] + "\n" for row in rows).encode()
            (mirror / f"{split}.{language}").write_bytes(data)
            entries.append(f"    {language}:\n      path: tri/{split}.{language}\n"
                           f"      url: {(mirror / f'{split}.{language}').as_uri()}\n      sha256: {sha256(data)}")
    corpora = directory / "corpora"
    corpora.mkdir()
    (corpora / "tri.yaml").write_text("name: tri\ntask: translation\nformat: parallel\nlanguages: [xx, yy, zz]\n"
                                      "default_pair: [xx, yy]\nsplits:\n" + "\n".join(entries) + "\n")
    (corpora / "tri-multi.yaml").write_text("name: tri-multi\ntask: translation\nformat: multilingual\n"
                                            "parallel_from: tri\ndirections: [xx-yy, xx-zz]\n")
    (directory / "tri-tokenizer.yaml").write_text(
        'model_type: word\nvocabulary: joint\nvocab_size: 40\nhard_vocab_limit: false\nuser_defined_symbols: ["<2yy>", "<2zz>"]\n')


@pytest.fixture(scope="module")
def multilingual_run(tmp_path_factory):
    import contextlib

    from translator.data.corpora import prepare_corpus
    from translator.data.tokenizers import train_tokenizers
    from translator.training.trainer import Trainer

    directory = tmp_path_factory.mktemp("multilingual")
    write_three_languages(directory, PAIRS, 61)
    with contextlib.chdir(directory):  # where ./corpora/tri-multi.yaml is found
        manifest = prepare_corpus("tri-multi", "work", "mirror")
        for pair in ("xx-yy", "xx-zz", "yy-zz"):
            prepare_corpus(f"tri-{pair}", "work", "mirror")
        train_tokenizers("tri-multi", "work", recipe=str(directory / "tri-tokenizer.yaml"))
        config = write_config(directory, {"corpus": "tri-multi", "tokenizer": str(directory / "tri-tokenizer.yaml"),
                                          "work_dir": "work"},
                              model={"attention": "luong_general", "units": 64},
                              training={"epochs": 8, "batch_tokens": 1024, "bleu_every": 0, "schedule": "cosine"})
        Trainer(config, directory / "run", log=lambda *a: None).train()
        yield directory, manifest


def test_the_corpus_tags_every_source_with_its_target_language(multilingual_run):
    directory, manifest = multilingual_run
    assert manifest["counts"]["train"]["kept"] == 2 * PAIRS  # two directions of the same pairs
    sources = (directory / "work" / "tri-multi" / "train.src").read_text().splitlines()
    targets = (directory / "work" / "tri-multi" / "train.tgt").read_text().splitlines()
    assert sources[0].startswith("<2yy> ") and sources[PAIRS].startswith("<2zz> ")
    assert sources[0][len("<2yy> "):] == sources[PAIRS][len("<2zz> "):]  # the same sentence, two targets
    assert targets[PAIRS] == sources[PAIRS][len("<2zz> "):].upper()


def test_the_target_language_chooses_what_the_model_writes(multilingual_run):
    import contextlib

    from translator import Translator
    from translator.decoding.evaluation import evaluate

    directory, _ = multilingual_run
    translator = Translator.load(directory / "run")
    assert translator.target_languages == ["yy", "zz"]
    assert translator.translate(["a b c d", "h g f"], target_language="yy") == ["d c b a", "f g h"]
    assert translator.translate(["a b c d", "h g f"], target_language="zz") == ["A B C D", "H G F"]
    assert translator.translate("<2zz> e f g") == "E F G"  # tagged already: as the corpus's own splits
    with pytest.raises(ValueError, match="multilingual model: it writes yy, zz; say which with target_language="):
        translator.translate(["a b c"])
    with pytest.raises(ValueError, match="'xx' is not one this model writes: yy, zz"):
        translator.translate(["a b c"], target_language="xx")
    with contextlib.chdir(directory):
        report = evaluate(directory / "run", "test", beam_size=3, corpus="tri-xx-zz", target_language="zz")
        assert report["corpus"] == "tri-xx-zz" and report["scores"]["BLEU"]["score"] > 90
        assert json.loads((directory / "run" / "tri-xx-zz" / "report.json").read_text())["target_language"] == "zz"
        # Zero-shot: yy was never a source language; whatever it gives is measured, not asserted.
        zero_shot = evaluate(directory / "run", "test", beam_size=3, corpus="tri-yy-zz", target_language="zz")
        assert 0 <= zero_shot["scores"]["BLEU"]["score"] <= 100


def test_a_one_pair_model_refuses_a_target_language(tmp_path):
    from conftest import make_task, reversal_pairs

    from translator import Translator
    from translator.training.trainer import Trainer

    data = make_task(tmp_path, "reverse", {"train": reversal_pairs(200, 62), "validation": reversal_pairs(20, 63)})
    config = write_config(tmp_path, data, training={"epochs": 1, "bleu_every": 0})
    Trainer(config, tmp_path / "run", log=lambda *a: None).train()
    translator = Translator.load(tmp_path / "run")
    assert translator.target_languages == []
    with pytest.raises(ValueError, match="translates one language pair and knows no target-language tags"):
        translator.translate(["a b"], target_language="yy")
