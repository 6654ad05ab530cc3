"""Translation as continuing a text: the parallel_text corpus format and decoding after the
separator, on a generated task a small language model learns."""

import pytest
import yaml
from conftest import make_continuation_task, reversal_pairs

from translator.data.corpora import CorpusError, prepare_corpus, read_prepared_split, read_recipe
from translator.studies.continuation import translate_by_continuing


@pytest.fixture(scope="module")
def continuation(tmp_path_factory):
    directory = tmp_path_factory.mktemp("continuation")
    pairs = {"train": reversal_pairs(1500, 1, lengths=(2, 4)), "validation": reversal_pairs(50, 2, lengths=(2, 4)),
             "test": reversal_pairs(30, 3, lengths=(2, 4))}
    _, text_data = make_continuation_task(directory, pairs)
    return directory, text_data, pairs


def test_pairs_become_lines_of_text_with_separator_and_end(continuation, monkeypatch):
    directory, _, pairs = continuation
    monkeypatch.chdir(directory)  # ./corpora is where recipes are looked up first
    manifest = prepare_corpus("revtext", directory / "work", directory / "mirror")
    assert manifest["task"] == "language_modeling" and set(manifest["split_files"]) == {"train", "validation", "test"}
    text = read_prepared_split("revtext", "test", directory / "work")["text"][0]
    assert text.splitlines() == [f"{source} <sep> {target} <end>" for source, target in pairs["test"]]
    assert manifest["inputs"]  # the parallel recipe's files, with their checksums
    bad = directory / "corpora" / "badtext.yaml"
    bad.write_text("name: badtext\ntask: language_modeling\nformat: parallel_text\nparallel_from: nowhere\n"
                   "default_pair: [xx, yy]\nseparator: <sep>\nend: <end>\n")
    with pytest.raises(CorpusError, match="parallel_from: 'nowhere' is not a known corpus recipe"):
        read_recipe(bad)


def test_a_language_model_translates_by_continuing_after_the_separator(continuation, monkeypatch, tmp_path):
    from translator.models.language_models import LanguageModel
    from translator.training.trainer import Trainer

    directory, text_data, pairs = continuation
    monkeypatch.chdir(directory)
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump({
        "data": text_data,
        "model": {"type": "language_model", "cell": "lstm", "embedding_dim": 16, "units": 128, "decoder_layers": 1},
        "training": {"epochs": 40, "batch_size": 16, "sequence_length": 64, "learning_rate": 0.01,
                     "schedule": "constant", "early_stopping_patience": 0, "bleu_every": 0}}))
    Trainer(config, tmp_path / "run", log=lambda *a: None).train()
    model = LanguageModel.load(tmp_path / "run")
    sources = [source for source, _ in pairs["test"]]
    translated = translate_by_continuing(model, ["", *sources])
    assert translated[0] == "" and len(translated) == len(sources) + 1
    correct = sum(hypothesis == target for hypothesis, (_, target) in zip(translated[1:], pairs["test"]))
    assert correct >= 0.6 * len(sources)  # it learned to reverse (chance: about 1 in 12 ** length)
    assert all("<end>" not in hypothesis and "<sep>" not in hypothesis for hypothesis in translated)
    with pytest.raises(TypeError, match="sentences must be a string or a list of strings"):
        translate_by_continuing(model, None)
