"""Checkpoint averaging, the weights' moving average, ensemble decoding and subword sampling
(issue 31), on a generated reversal task: two runs of one config from two seeds."""

import json
import shutil
import sys

import numpy as np
import pytest
from conftest import kill_in_the_second_epoch_and_resume, make_task, reversal_pairs, write_config

from translator.data.corpora import read_prepared_split
from translator.reports import read_log


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs (seeds 1 and 2) of a small attention model, 8 epochs each with a cosine decay
    (as the recipes), the last 3 epochs kept."""
    from translator.training.trainer import Trainer

    directory = tmp_path_factory.mktemp("ensembles")
    data = make_task(directory, "reverse", {"train": reversal_pairs(2000, 21), "validation": reversal_pairs(100, 22),
                                            "test": reversal_pairs(150, 23)})
    config = write_config(directory, data, model={"attention": "luong_general", "units": 48},
                          training={"epochs": 8, "batch_tokens": 1024, "bleu_every": 0, "keep_checkpoints": 3,
                                    "schedule": "cosine"})
    trained = []
    for seed in (1, 2):
        trained.append(directory / f"seed{seed}")
        Trainer(config, trained[-1], seed=seed, log=lambda *a: None).train()
    return directory, data, trained


def test_averaging_the_last_epochs_gives_their_mean_and_a_run_that_translates(runs, tmp_path):
    import keras

    from translator import Translator
    from translator.models.averaging import AveragingError, average
    from translator.models.runs import load_run
    from translator.training.trainer import Trainer, TrainingError

    directory, _, (run, _) = runs
    assert sorted(path.name for path in (run / "epochs").iterdir()) == [
        "epoch-006.weights.h5", "epoch-007.weights.h5", "epoch-008.weights.h5"]
    out = average(run, last=2, out=tmp_path / "averaged", log=lambda *a: None)

    _, model = load_run(run, "seq2seq")
    expected = []
    for name in ("epoch-007.weights.h5", "epoch-008.weights.h5"):
        model.load_weights(run / "epochs" / name)
        expected.append([np.asarray(weight, np.float64) for weight in model.trainable_weights])
    averaged = keras.saving.load_model(out / "model.keras")
    for got, first, second in zip(averaged.trainable_weights, *expected):
        np.testing.assert_allclose(np.asarray(got), (first + second) / 2, rtol=1e-6, atol=1e-7)
    # The mean is not either epoch's weights (the test would pass on a copy otherwise).
    assert not np.allclose(np.asarray(averaged.trainable_weights[0]), expected[1][0])
    assert (out / "averaged.json").is_file() and (out / "tokenizers").is_dir()
    assert Translator.load(out).translate(["a b c"], beam_size=3) == ["c b a"]
    with pytest.raises(TrainingError, match="is an averaged run"):  # training would replace its model
        Trainer(directory / "toy.yaml", out).train()

    with pytest.raises(AveragingError, match=r"not all of the last 5 \(\[4, 5, 6, 7, 8\]\).*"
                                             r"keep_checkpoints: 5"):
        average(run, last=5, out=tmp_path / "too-many")
    best = average(run, best=1, out=tmp_path / "best", log=lambda *a: None)
    losses = {int(row["epoch"]): float(row["validation_loss"]) for row in read_log(run)}
    assert json.loads((best / "averaged.json").read_text())["epochs"] == [min(losses, key=losses.get)]


def read_weights(path):
    import keras

    return [np.asarray(weight) for weight in keras.saving.load_model(path).weights]


def test_moving_average_and_sampling_resume_after_kill_9_to_the_same_weights(tmp_path):
    """A run with training.ema_decay and data.sampling (BPE-dropout), killed mid-epoch and
    resumed, ends with the weights of an uninterrupted run (op determinism on)."""
    from translator.training.trainer import Trainer

    data = make_task(tmp_path, "reverse", {"train": reversal_pairs(800, 31), "validation": reversal_pairs(80, 32),
                                           "test": reversal_pairs(20, 33)})
    bpe = tmp_path / "bpe.yaml"
    bpe.write_text("model_type: bpe\nvocabulary: joint\nvocab_size: 29\n")
    from translator.data.tokenizers import train_tokenizers

    train_tokenizers(data["corpus"], data["work_dir"], recipe=str(bpe))
    data["tokenizer"] = str(bpe)
    data["sampling"] = {"alpha": 0.3}
    config = write_config(tmp_path, data, training={"epochs": 2, "batch_tokens": 512, "checkpoint_every": 5,
                                                    "bleu_every": 0, "ema_decay": 0.9, "deterministic": True,
                                                    "keep_checkpoints": 1})
    Trainer(config, tmp_path / "uninterrupted", log=lambda *a: None).train()
    steps = int((tmp_path / "uninterrupted" / "log.csv").read_text().splitlines()[-1].split(",")[1])

    run = tmp_path / "interrupted"
    kill_in_the_second_epoch_and_resume([sys.executable, "-m", "translator", "train", str(config), "--run", str(run)],
                                        run)
    assert int(run.joinpath("log.csv").read_text().splitlines()[-1].split(",")[1]) == steps

    for got, expected in zip(read_weights(run / "model.keras"), read_weights(tmp_path / "uninterrupted" / "model.keras")):
        np.testing.assert_array_equal(got, expected)
    # The epoch's saved weights are the moving average, not the last weights.
    trained = Trainer(config, tmp_path / "uninterrupted", log=lambda *a: None)
    session, _ = trained._set_up()
    trained._restore(session)
    last = [np.asarray(v) for v in session.model.trainable_weights]
    averaged = [np.asarray(v) for v in session.optimizer._model_variables_moving_average]
    session.model.load_weights(tmp_path / "uninterrupted" / "epochs" / "epoch-002.weights.h5")
    for saved_weight, average_weight in zip(session.model.trainable_weights, averaged):
        np.testing.assert_array_equal(np.asarray(saved_weight), average_weight)
    assert not np.allclose(last[0], averaged[0])


def test_sampled_batches_are_drawn_anew_each_epoch_the_same_for_a_seed(tmp_path):
    from translator.data.batching import SampledBatches
    from translator.data.tokenizers import load_tokenizers, train_tokenizers

    data = make_task(tmp_path, "reverse", {"train": reversal_pairs(600, 41), "validation": reversal_pairs(20, 42)})
    bpe = tmp_path / "bpe.yaml"
    bpe.write_text("model_type: bpe\nvocabulary: joint\nvocab_size: 29\n")
    train_tokenizers(data["corpus"], data["work_dir"], recipe=str(bpe))
    tokenizers = load_tokenizers(tmp_path / "work" / "reverse" / "tokenizers" / "bpe")
    texts = read_prepared_split(data["corpus"], "train", data["work_dir"])
    sources, targets = tokenizers["source"].encode(texts["source"]), tokenizers["target"].encode(texts["target"])

    def batches(seed=7):
        return SampledBatches(sources, targets, texts, tokenizers, {"alpha": 0.3, "nbest": -1}, (100, 100),
                              batch_tokens=256, seed=seed)

    # alpha 0 is the deterministic segmentation, the BPE merges applied as SentencePiece does.
    assert tokenizers["source"].sample(texts["source"], 0.0, seed=3) == sources
    first, again = batches(), batches()
    assert first.sampled_ids(2) == again.sampled_ids(2)  # deterministic per seed and epoch
    assert first.sampled_ids(2) != first.sampled_ids(3) != [sources, targets]
    assert first.sampled_ids(2) != [sources, targets]
    assert batches(seed=8).sampled_ids(2) != first.sampled_ids(2)
    assert all(tokenizers["source"].decode(ids) == text for ids, text in zip(first.sampled_ids(2)[0], texts["source"]))
    # A resumed epoch (skip) gives the rest of the same batches.
    whole = [tuple(array.tolist() for array in batch) for batch in again.epoch(2)]
    rest = [tuple(array.tolist() for array in batch) for batch in batches().epoch(2, skip=3)]
    assert rest == whole[3:] and first.batch_count() == len(whole)


# ----------------------------------------------------------------------------- ensembles

def bleu(translations, references) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(translations, [references]).score


def test_an_ensemble_of_one_run_is_that_run(runs):
    from translator import Translator
    from translator.decoding.ensembles import Ensemble

    _, data, (run, _) = runs
    sources = read_prepared_split(data["corpus"], "test", data["work_dir"])["source"][:60]
    single = Translator.load(run)
    one = Translator(Ensemble([single.model]), single.source_tokenizer, single.target_tokenizer)
    for beam_size in (1, 4):
        expected = single.translate_detailed(sources, beam_size=beam_size, n_best=beam_size)
        got = one.translate_detailed(sources, beam_size=beam_size, n_best=beam_size)
        assert [(g.text, g.score, g.n_best) for g in got] == [(e.text, e.score, e.n_best) for e in expected]
    # Two copies of one model: the averaging path, the same distribution, so the same search.
    twice = Translator(Ensemble([single.model, single.model]), single.source_tokenizer, single.target_tokenizer)
    expected = single.translate_detailed(sources, beam_size=4)
    got = twice.translate_detailed(sources, beam_size=4)
    assert [g.text for g in got] == [e.text for e in expected]
    assert [g.score for g in got] == pytest.approx([e.score for e in expected], abs=1e-4)


def test_an_ensemble_of_two_runs_differs_scores_at_least_the_better_and_ignores_batch_size(runs):
    from translator import Translator

    _, data, members = runs
    test = read_prepared_split(data["corpus"], "test", data["work_dir"])
    ensemble = Translator.load(members)
    singles = [Translator.load(member).translate_detailed(test["source"], beam_size=4) for member in members]
    together = ensemble.translate_detailed(test["source"], beam_size=4)
    assert [t.score for t in together] != [t.score for t in singles[0]]
    assert [t.score for t in together] != [t.score for t in singles[1]]
    scores = [bleu([t.text for t in single], test["target"]) for single in singles]
    assert bleu([t.text for t in together], test["target"]) >= max(scores)
    one_by_one = ensemble.translate_detailed(test["source"], beam_size=4, batch_size=1)
    assert [t.text for t in one_by_one] == [t.text for t in together]
    assert [t.score for t in one_by_one] == pytest.approx([t.score for t in together], abs=1e-5)


def test_an_ensemble_refuses_runs_with_another_tokenizer(runs, tmp_path):
    from translator import Translator
    from translator.decoding.ensembles import EnsembleError

    _, _, (run, _) = runs
    make_task(tmp_path, "other", {"train": reversal_pairs(200, 51, symbols="mnopqrs"),
                                  "validation": reversal_pairs(10, 52, symbols="mnopqrs")})
    other = tmp_path / "other-run"
    shutil.copytree(run, other)
    shutil.rmtree(other / "tokenizers")
    shutil.copytree(tmp_path / "work" / "other" / "tokenizers" / "other-tokenizer", other / "tokenizers")
    with pytest.raises(EnsembleError, match=r"another target tokenizer than .*same tokenizer recipe"):
        Translator.load([run, other])


def test_evaluate_and_export_take_an_ensemble(runs, tmp_path, capsys):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from translator import Translator
    from translator.cli import main

    _, data, members = runs
    arguments = [argument for member in members for argument in ("--run", str(member))]
    assert main(["evaluate", *arguments, "--beam-size", "3"]) == 0
    report_directory = members[0].parent / "ensemble-seed1+seed2"
    assert (report_directory / "report.json").is_file()
    assert "ensemble-seed1+seed2/report.json" in capsys.readouterr().out
    assert main(["evaluate", "--run", str(members[0]), "--out", str(tmp_path / "report"), "--beam-size", "1"]) == 0
    assert (tmp_path / "report" / "report.json").is_file() and not (members[0] / "report.json").exists()
    capsys.readouterr()
    assert main(["export", *arguments]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["export", *arguments, "--out", str(tmp_path / "export")]) == 0
    sentences = read_prepared_split(data["corpus"], "test", data["work_dir"])["source"][:50] + [""]
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    exported = [t.decode() for t in loaded.signatures["translate"](sentences=tf.constant(sentences))
                ["translations"].numpy().tolist()]
    assert exported == Translator.load(members).translate(sentences)
