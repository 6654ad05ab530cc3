"""`translator experiments`: rendering what exists, naming what is missing, resuming, and the
README section; on a tiny recipe (the real ones take minutes to hours)."""

import json

import pytest

from translator.studies.experiments import EXPERIMENTS, ExperimentError, run

TINY = """cells: [rnn, lstm, gru]
distances: [1, 3]
gradients_after_training_at: 3
symbols: 3
units: 4
embedding_dim: 4
examples: 60
epochs: 1
batch_size: 30
learning_rate: 0.01
seed: 1
"""


@pytest.fixture
def place(tmp_path, monkeypatch):
    """The real recipes, but a tiny vanishing-gradients one, and an empty runs/ (cwd)."""
    import shutil

    from translator.studies.experiments import RECIPES

    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES, recipes)
    (recipes / "vanishing-gradients.yaml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\n<!-- experiments:start -->\nold table\n<!-- experiments:end -->\n\nrest\n")
    return tmp_path, recipes, readme


def test_without_train_it_renders_and_names_what_is_missing(place):
    directory, recipes, readme = place
    status = run(train=False, output_dir=directory / "out", readme=readme, log=lambda *a: None, recipes=recipes)
    assert status["vanishing-gradients"] == "missing: run with --train"
    assert status["reversal"] == "missing: run with --train"  # its runs are not in ./runs
    assert status["decoder-swap"] == "missing: run with --train"
    assert status["sliding-window"] == "missing: run with --train"
    assert status["translation-as-continuation"] == "missing: run with --train"
    assert set(status) == {experiment.name for experiment in EXPERIMENTS}
    text = readme.read_text()
    assert "old table" not in text and text.endswith("<!-- experiments:end -->\n\nrest\n")
    assert "| vanishing-gradients | the RNN/LSTM/GRU primer |" in text
    assert "Training behind these figures: 0 of 24 runs and the vanishing-gradients models, 0.0 hours" in text
    assert "Still to train: 24 runs." in text
    assert (directory / "out" / "report.html").is_file()
    assert not (directory / "out" / "results" / "vanishing-gradients.json").exists()


def test_train_measures_caches_and_resumes(place):
    directory, recipes, readme = place
    out = directory / "out"
    status = run(train=True, only="vanishing-gradients", output_dir=out, readme=readme, log=lambda *a: None,
                 recipes=recipes)
    assert status["vanishing-gradients"] == "measured"
    results = json.loads((out / "results" / "vanishing-gradients.json").read_text())
    assert set(results["accuracy"]) == {f"{cell}/{d}" for cell in ("rnn", "lstm", "gru") for d in (1, 3)}
    assert all(0 <= value <= 1 for value in results["accuracy"].values())
    assert len(results["gradient_norms"]["lstm"]["initial"]) == 4  # d = 0 .. 3 at the longest distance
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<b>Verdict:</b>" in html
    row = next(line for line in readme.read_text().splitlines() if line.startswith("| vanishing-gradients"))
    assert any(verdict in row for verdict in ("| holds |", "| does not hold |", "| mixed |"))

    results["accuracy"]["rnn/1"] = 0.123456  # a cached piece is reused, never measured again
    (out / "results" / "vanishing-gradients.json").write_text(json.dumps(results))
    run(train=True, only="vanishing-gradients", output_dir=out, readme=None, log=lambda *a: None, recipes=recipes)
    assert json.loads((out / "results" / "vanishing-gradients.json").read_text())["accuracy"]["rnn/1"] == 0.123456


def test_an_unknown_experiment_or_a_missing_section_is_named(place):
    directory, recipes, readme = place
    with pytest.raises(ExperimentError, match="unknown experiment 'vanish'; the experiments are: reversal"):
        run(only="vanish", output_dir=directory / "out", readme=None, recipes=recipes)
    readme.write_text("# no section\n")
    with pytest.raises(ExperimentError, match="expected one line '<!-- experiments:start -->'"):
        run(output_dir=directory / "out", readme=readme, log=lambda *a: None, recipes=recipes)


def test_every_experiment_recipe_names_training_configs_that_load():
    from translator.config import load_config
    from translator.studies.experiments import RECIPES, read_recipe, recipe_path

    names = {experiment.name for experiment in EXPERIMENTS}
    for path in sorted(RECIPES.glob("*.yaml")):
        if path.stem in names:  # an experiment's recipe: every config it names loads
            recipe = read_recipe(path.stem)
            named = [pair[side] for pair in recipe.get("pairs", []) for side in ("baseline", "variant")]
            named += recipe.get("models", []) + recipe.get("requires", [])
            named += [{"config": recipe["config"]}] if "config" in recipe else []
            for entry in named:
                load_config(recipe_path(entry["config"]))
        else:  # a training config of an experiment
            load_config(path)


def test_a_paired_experiment_trains_scores_and_compares_both_sides(place):
    import yaml
    from conftest import make_task, reversal_pairs, write_config

    tmp_path, recipes, _ = place
    data = make_task(tmp_path, "pair", {"train": reversal_pairs(400, 1), "validation": reversal_pairs(30, 2),
                                        "test": reversal_pairs(30, 3)})
    training = {"epochs": 1, "bleu_every": 0, "batch_tokens": 512}
    forward = write_config(tmp_path, data, training=training, name="forward")
    backward = write_config(tmp_path, data, model={"reverse_source": True}, training=training, name="backward")
    (recipes / "reversal.yaml").write_text(yaml.safe_dump({
        "pairs": [{"baseline": {"config": str(forward), "label": "forward"},
                   "variant": {"config": str(backward), "label": "backward"}}],
        "seeds": [5], "expect": "better", "samples": 100, "runs_dir": str(tmp_path / "runs")}))
    readme = tmp_path / "README.md"
    status = run(train=False, only="reversal", output_dir=tmp_path / "out", readme=None, log=lambda *a: None,
                 recipes=recipes)
    assert status["reversal"] == "missing: run with --train" and not (tmp_path / "runs").exists()
    status = run(train=True, only="reversal", output_dir=tmp_path / "out", readme=readme, log=lambda *a: None,
                 recipes=recipes)
    assert status["reversal"] == "measured"
    assert {p.name for p in (tmp_path / "runs").iterdir()} == {"forward-seed5", "backward-seed5"}
    compared = json.loads((tmp_path / "out" / "results" / "reversal.json").read_text())["comparisons"]["0/5"]
    assert compared["bleu_difference"] == round(compared["variant"]["BLEU"] - compared["baseline"]["BLEU"], 2)
    assert 0 <= compared["p_value"] <= 1
    row = next(line for line in readme.read_text().splitlines() if line.startswith("| reversal"))
    assert "backward vs forward:" in row and "BLEU (p = " in row
    minutes = sum(float(line.split(",")[header.split(",").index("train_seconds")])
                  for run in ("forward-seed5", "backward-seed5")
                  for header, *_, line in [(tmp_path / "runs" / run / "log.csv").read_text().split()]) / 60
    assert f"Training behind these figures: 2 of 24 runs and the vanishing-gradients models, {minutes / 60:.1f} " \
           f"hours in all" in readme.read_text()


def test_paired_verdicts_are_one_of_three_and_pairs_that_disagree_make_the_claim_mixed():
    from translator.studies.experiments import summarize_paired_runs

    def side(bleu):
        return {"BLEU": bleu, "BLEU (lowercased)": bleu, "train_minutes": 10.0}

    def comparison(difference, p_value):
        return {"baseline": side(30.0), "variant": side(30.0 + difference), "bleu_difference": difference,
                "p_value": p_value}

    pair = {"baseline": {"label": "lstm"}, "variant": {"label": "gru"}}
    recipe = {"pairs": [pair, pair], "seeds": [1, 2], "expect": "similar"}
    similar = {"0/1": comparison(0.3, 0.2), "0/2": comparison(-0.1, 0.3)}
    figure, verdict = summarize_paired_runs({"comparisons": {**similar, "1/1": comparison(-0.5, 0.4),
                                                             "1/2": comparison(0.1, 0.6)}}, recipe)
    assert verdict == "holds" and figure.startswith("gru vs lstm: +0.10 BLEU (p = 0.200, 0.300;")
    figure, verdict = summarize_paired_runs({"comparisons": {**similar, "1/1": comparison(-0.7, 0.026),
                                                             "1/2": comparison(-0.6, 0.154)}}, recipe)
    assert verdict == "mixed"
    assert [part.rsplit(": ", 1)[1] for part in figure.split("; ") if part.endswith(("holds", "mixed"))] \
        == ["holds", "mixed"]
    recipe["expect"] = "better"
    _, verdict = summarize_paired_runs({"comparisons": {"0/1": comparison(0.9, 0.01), "0/2": comparison(0.8, 0.02),
                                                        "1/1": comparison(0.9, 0.01), "1/2": comparison(0.7, 0.03)}},
                                       recipe)
    assert verdict == "holds"


def test_interpretable_cells_trains_a_character_model_and_finds_a_cell_per_feature(place):
    import yaml
    from conftest import prepare, write_text_corpus

    tmp_path, recipes, readme = place
    text = "ROMEO:\nto be or not\n\nJULIET:\nthat is it\n\n" * 120
    data = prepare(tmp_path, write_text_corpus(tmp_path, text), tmp_path / "toytext-tokenizer.yaml")
    config = tmp_path / "charlm.yaml"
    config.write_text(yaml.safe_dump({
        "data": data, "model": {"type": "language_model", "cell": "lstm", "embedding_dim": 8, "units": 16,
                                "decoder_layers": 1},
        "training": {"epochs": 1, "batch_size": 4, "sequence_length": 32, "bleu_every": 0}}))
    (recipes / "interpretable-cells.yaml").write_text(yaml.safe_dump({
        "config": str(config), "characters": 300, "shown_characters": 40, "runs_dir": str(tmp_path / "runs")}))
    status = run(train=True, only="interpretable-cells", output_dir=tmp_path / "out", readme=readme,
                 log=lambda *a: None, recipes=recipes)
    assert status["interpretable-cells"] == "measured" and (tmp_path / "runs" / "charlm" / "model.keras").is_file()
    results = json.loads((tmp_path / "out" / "results" / "interpretable-cells.json").read_text())
    assert set(results["cells"]) == {"position_in_line", "in_speaker_name", "characters_to_line_end"}
    assert all(0 <= found["cell"] < 16 and -1 <= found["correlation"] <= 1 for found in results["cells"].values())
    assert (tmp_path / "out" / "report.html").read_text().count("<span style=") == 3 * 40
    row = next(line for line in readme.read_text().splitlines() if line.startswith("| interpretable-cells"))
    assert "position in line: cell" in row


def test_the_sliding_window_experiment_compares_language_models(place):
    import yaml
    from conftest import prepare, write_text_corpus

    tmp_path, recipes, readme = place
    text = "ROMEO:\nto be or not\n\nJULIET:\nthat is it\n\n" * 100
    data = prepare(tmp_path, write_text_corpus(tmp_path, text), tmp_path / "toytext-tokenizer.yaml")
    models = []
    for label, model in (("lstm", {"cell": "lstm", "units": 16}), ("window 4", {"window": 4, "units": 16})):
        config = tmp_path / f"{label.replace(' ', '-')}.yaml"
        config.write_text(yaml.safe_dump({
            "data": data, "model": {"type": "language_model", "embedding_dim": 8, "decoder_layers": 1, **model},
            "training": {"epochs": 1, "batch_size": 4, "sequence_length": 32, "bleu_every": 0}}))
        models.append({"config": str(config), "label": label})
    (recipes / "sliding-window.yaml").write_text(yaml.safe_dump({
        "models": models, "baseline": "lstm", "runs_dir": str(tmp_path / "runs")}))
    status = run(train=True, only="sliding-window", output_dir=tmp_path / "out", readme=readme,
                 log=lambda *a: None, recipes=recipes)
    assert status["sliding-window"] == "measured"
    found = json.loads((tmp_path / "out" / "results" / "sliding-window.json").read_text())["models"]
    assert set(found) == {"lstm", "window 4"} and all(0 < m["validation_loss"] < 10 for m in found.values())
    assert found["window 4"]["parameters"] > 0 and found["window 4"]["run"].endswith("window-4")
    row = next(line for line in readme.read_text().splitlines() if line.startswith("| sliding-window"))
    assert "window 4: " in row and "nats/char" in row


def test_translation_as_continuation_scores_a_language_model_beside_an_encoder_decoder(place):
    import yaml
    from conftest import make_continuation_task, reversal_pairs, write_config

    tmp_path, recipes, readme = place  # the working directory: ./corpora is searched for recipes
    pairs = {split: reversal_pairs(count, seed, lengths=(2, 3))
             for split, count, seed in (("train", 300, 1), ("validation", 20, 2), ("test", 20, 3))}
    data, text_data = make_continuation_task(tmp_path, pairs)
    language_model = tmp_path / "lm.yaml"
    language_model.write_text(yaml.safe_dump({
        "data": text_data,
        "model": {"type": "language_model", "cell": "gru", "embedding_dim": 8, "units": 16, "decoder_layers": 1},
        "training": {"epochs": 1, "batch_size": 4, "sequence_length": 16, "bleu_every": 0}}))
    seq2seq = write_config(tmp_path, data, training={"epochs": 1, "bleu_every": 0}, name="s2s")
    (recipes / "translation-as-continuation.yaml").write_text(yaml.safe_dump({
        "language_model": {"config": str(language_model), "label": "LM"},
        "encoder_decoder": {"config": str(seq2seq), "label": "seq2seq"},
        "test_corpus": data["corpus"], "runs_dir": str(tmp_path / "runs")}))
    status = run(train=True, only="translation-as-continuation", output_dir=tmp_path / "out", readme=readme,
                 log=lambda *a: None, recipes=recipes)
    assert status["translation-as-continuation"] == "measured"
    models = json.loads((tmp_path / "out" / "results" / "translation-as-continuation.json").read_text())["models"]
    assert set(models) == {"encoder_decoder", "language_model"}
    assert all(0 <= found["bleu"] <= 100 and found["parameters"] > 0 for found in models.values())
    continued = (tmp_path / "runs" / "lm" / "translations" / "test-continued.txt").read_text().splitlines()
    assert len(continued) == 20
    row = next(line for line in readme.read_text().splitlines() if line.startswith("| translation-as-continuation"))
    assert "of the encoder-decoder's BLEU" in row


# ----------------------------------------------------------------------------- two workers at once

def _hold_lock(path, seconds):
    """A child process that holds `file_lock(path)` for `seconds` (started once it holds it)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from translator.models.runs import file_lock
with file_lock({str(path)!r}, "busy"):
    print("held", flush=True)
    time.sleep({seconds})
"""], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_lock_held_by_another_process_is_refused_at_once_and_freed_when_it_ends(tmp_path):
    from translator.models.runs import RunBusy, run_lock

    run_dir = tmp_path / "runs" / "r"
    child = _hold_lock(run_dir / ".lock", 60)
    try:
        with pytest.raises(RunBusy, match=rf"runs/r is being trained or scored by another process \(pid {child.pid},"):
            with run_lock(run_dir):
                pass
    finally:
        child.kill()
        child.wait()
    with run_lock(run_dir), run_lock(run_dir):  # free again, and re-entrant in one process
        assert (run_dir / ".lock").read_text().strip() == str(__import__("os").getpid())


def test_scoring_a_run_another_process_trains_says_so(tmp_path):
    from conftest import make_task, reversal_pairs, write_config

    from translator.models.runs import RunBusy
    from translator.studies.results import scored_report

    data = make_task(tmp_path, "pair", {"train": reversal_pairs(40, 1), "validation": reversal_pairs(10, 2)})
    config = write_config(tmp_path, data, name="busy")
    child = _hold_lock(tmp_path / "runs" / "busy" / ".lock", 60)
    try:
        with pytest.raises(RunBusy, match="being trained or scored by another process"):
            scored_report(tmp_path / "runs" / "busy", "test", True, {"config": str(config), "path": config}, None)
    finally:
        child.kill()
        child.wait()
    assert not (tmp_path / "runs" / "busy" / "model.keras").exists()


def test_measure_all_leaves_a_busy_experiment_for_later_and_comes_back(tmp_path, monkeypatch):
    from translator.studies import experiments

    measured = []

    def measure(name):
        def record(recipe, results, train, save):
            assert train and recipe == {"setting": name}
            measured.append(name)
            return True
        return record

    monkeypatch.setattr(experiments, "EXPERIMENTS", [experiments.Experiment(name, "seed", "claim", measure(name))
                                                     for name in ("a", "b")])
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name in ("a", "b"):
        (recipes / f"{name}.yaml").write_text(f"setting: {name}\n")
    out = tmp_path / "out"
    child = _hold_lock(out / "results" / ".a.lock", 2)  # another worker measures "a" for 2 s
    lines = []
    experiments.measure_all(None, out, recipes, log=lines.append, wait_seconds=0.2)
    child.wait()
    assert measured == ["b", "a"]
    assert any(line.startswith("a: waiting, experiment a is being measured by another process") for line in lines)


def test_workers_run_at_once_each_on_a_cpu_of_its_own_and_a_failure_is_named(tmp_path, monkeypatch):
    import ast
    import os
    import sys

    from translator.studies import experiments

    script = "import os, sys; print(sorted(os.sched_getaffinity(0))); sys.exit(int(sys.argv[1]))"
    monkeypatch.setattr(experiments, "worker_command", lambda only, output: [sys.executable, "-c", script,
                                                                             next(codes)])
    codes = iter(["0", "130"])  # a worker stopped with Ctrl-C: interrupted, not failed
    with pytest.raises(KeyboardInterrupt):
        experiments.train_in_workers(2, None, tmp_path, log=lambda line: None)
    codes = iter(["0", "3"])
    lines = []
    with pytest.raises(ExperimentError, match=r"^worker 2(, CPU \d+)? \(exit status 3\) failed") as failure:
        experiments.train_in_workers(2, None, tmp_path, log=lines.append)
    assert "worker 1" not in str(failure.value)
    assert len(lines) == 2  # each worker's one line, relayed with its name
    found = dict(line[1:].split("] ") for line in lines)
    assert {name.split(",")[0] for name in found} == {"worker 1", "worker 2"}
    if len(os.sched_getaffinity(0)) >= 2:  # pinned: one CPU each, the one its name says, not the same
        cpus = {name: ast.literal_eval(allowed) for name, allowed in found.items()}
        assert all(allowed == [int(name.split("CPU ")[1])] for name, allowed in cpus.items())
        assert len({tuple(allowed) for allowed in cpus.values()}) == 2


def test_a_run_that_starts_from_another_waits_for_it_and_shared_runs_are_named_alike(tmp_path):
    from translator.models.runs import RunBusy
    from translator.studies.experiments import PlannedRun, paired_runs, read_recipe

    swap = paired_runs({**read_recipe("decoder-swap"), "runs_dir": str(tmp_path)})
    encoder = tmp_path / "multi30k-de-en-gru-cho-seed1234"
    assert swap[0].run == encoder and swap[0].needs == ()
    assert {planned.run.name for planned in swap[1:]} == {f"decoder-swap-{kind}-seed{seed}" for kind in
                                                          ("scratch", "frozen") for seed in (1234, 2)}
    assert all(planned.needs == (encoder,) for planned in swap[1:])
    with pytest.raises(RunBusy, match="decoder-swap-scratch-seed1234 starts from .*gru-cho-seed1234, which is "
                                      "not trained yet"):
        swap[1].train()
    assert not swap[1].run.exists()  # nothing was started
    # the run context-every-step trains is the one decoder-swap starts from, and lstm-vs-gru's
    # no-attention LSTM is reversal's baseline: each is planned under one name, so trained once
    context = paired_runs({**read_recipe("context-every-step"), "runs_dir": str(tmp_path)})
    assert encoder in {planned.run for planned in context}
    lstm = {planned.run for planned in paired_runs({**read_recipe("lstm-vs-gru"), "runs_dir": str(tmp_path)})}
    assert {planned.run for planned in paired_runs({**read_recipe("reversal"), "runs_dir": str(tmp_path)})
            if "forward" in planned.run.name} <= lstm
    assert isinstance(swap[0], PlannedRun) and swap[0].seed == 1234
