"""Translating and evaluating a saved run: the Python API, the CLI, reports and comparisons."""

import json
import subprocess
import sys

import pytest
from conftest import make_task, reversal_pairs, write_config

from translator.data.corpora import read_prepared_split


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small reversal run (and a weaker one, trained for one epoch) with model.keras."""
    from translator.training.trainer import Trainer

    directory = tmp_path_factory.mktemp("translating")
    data = make_task(directory, "reverse", {"train": reversal_pairs(3000, 11), "validation": reversal_pairs(100, 12),
                                            "test": reversal_pairs(120, 13)})
    runs = {}
    for name, epochs in (("good", 8), ("weak", 1)):
        config = write_config(directory, data, model={"attention": "luong_general"},
                              training={"epochs": epochs, "batch_tokens": 1024, "bleu_every": 0}, name=name)
        runs[name] = directory / name
        Trainer(config, runs[name], log=lambda *a: None).train()
    return data, runs


SENTENCES = ["a b c", "", "l k j i h g f e", "c", "d d e e f f"]


def test_the_api_translates_and_keeps_empty_lines(trained):
    from translator import Translator

    _, runs = trained
    translator = Translator.load(runs["good"])
    output = translator.translate(SENTENCES)
    assert output[1] == "" and len(output) == len(SENTENCES)
    assert output[0] == "c b a" and output[2] == "e f g h i j k l"
    assert translator.translate("a b c") == "c b a"
    assert translator.translate(["\u200b", "\ufeff"]) == ["", ""]  # encode to no piece: empty, no crash
    in_bfloat16 = Translator.load(runs["good"], precision="bfloat16")
    assert in_bfloat16.model.decoder.output_layer.kernel.dtype == "bfloat16"
    assert in_bfloat16.translate(SENTENCES, beam_size=1) == translator.translate(SENTENCES, beam_size=1)
    with pytest.raises(ValueError, match="'float32', 'bfloat16' or 'int8'"):
        Translator.load(runs["good"], precision="float16")


def test_batch_size_and_order_never_change_a_translation(trained):
    from translator import Translator

    data, runs = trained
    translator = Translator.load(runs["weak"])  # a weak model: many near-ties, a stricter test
    sources = read_prepared_split(data["corpus"], "test", data["work_dir"])["source"]
    for beam_size in (1, 4):
        batched = translator.translate(sources, beam_size=beam_size, batch_size=64)
        assert translator.translate(sources, beam_size=beam_size, batch_size=1) == batched
        assert translator.translate(sources[::-1], beam_size=beam_size, batch_size=7)[::-1] == batched


def test_detailed_output_has_sorted_n_best_lists_and_attention(trained):
    from translator import Translator

    _, runs = trained
    details = Translator.load(runs["weak"]).translate_detailed(["a b c d", "h g"], beam_size=4, attention=True)
    for detail in details:
        scores = [score for _, score in detail.n_best]
        assert scores == sorted(scores, reverse=True) and len(scores) >= 1
        assert detail.text == detail.n_best[0][0]
        assert detail.attention.shape == (len(detail.pieces) + 1, len(detail.source_pieces))
        assert abs(detail.attention.sum(axis=1) - 1).max() < 1e-3


def test_a_saved_run_translates_the_same_in_a_fresh_process_through_api_and_cli(trained):
    from translator import Translator

    _, runs = trained
    here = Translator.load(runs["good"]).translate(SENTENCES, beam_size=3)
    code = ("import sys, json; from translator import Translator; "
            f"print(json.dumps(Translator.load(sys.argv[1]).translate({SENTENCES!r}, beam_size=3)))")
    api = subprocess.run([sys.executable, "-c", code, str(runs["good"])], capture_output=True, text=True, check=True)
    assert json.loads(api.stdout.strip().splitlines()[-1]) == here
    cli = subprocess.run([sys.executable, "-m", "translator", "translate", "--run", str(runs["good"]), "--beam-size", "3"],
                         input="\n".join(SENTENCES) + "\n", capture_output=True, text=True, check=True)
    assert cli.stdout.split("\n")[:-1] == here
    assert "translated 5 lines" in cli.stderr


def test_the_cli_handles_long_lines_bad_bytes_and_empty_lines(trained):
    _, runs = trained
    long_line = " ".join("abcdefghijkl"[i % 12] for i in range(150)).encode()  # 150 words > max_source_length 100
    lines = [b"a b", long_line, b"\xff\xfe c", b"", b"\xe2\x80\x8b"]  # not UTF-8; empty; encodes to no piece
    cli = subprocess.run([sys.executable, "-m", "translator", "translate", "--run", str(runs["weak"]), "--beam-size", "1"],
                         input=b"\n".join(lines) + b"\n", capture_output=True, check=True)
    output = cli.stdout.decode().split("\n")[:-1]
    assert len(output) == 5 and output[3] == "" and output[4] == ""
    assert "line 2 is longer than the model's limit of 100 pieces" in cli.stderr.decode()


def test_evaluate_writes_json_markdown_and_html_reports_with_signatures(trained):
    from translator.decoding.evaluation import evaluate

    _, runs = trained
    report = evaluate(runs["good"], "test", beam_size=3)
    saved = json.loads((runs["good"] / "report.json").read_text())
    assert saved["scores"]["BLEU"]["score"] == report["scores"]["BLEU"]["score"] > 90
    assert "tok:13a" in saved["scores"]["BLEU"]["signature"] and "case:mixed" in saved["scores"]["BLEU"]["signature"]
    assert "case:lc" in saved["scores"]["BLEU (lowercased)"]["signature"]
    assert {"chrF", "TER"} <= set(saved["scores"])
    assert sum(bucket["sentences"] for bucket in saved["bleu_by_source_length"]) == 120
    markdown = (runs["good"] / "report.md").read_text()
    assert "| BLEU |" in markdown and "tok:13a\\|" not in markdown.replace("\\|", "")
    page = (runs["good"] / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3  # length buckets, curves, attention
    translations = (runs["good"] / "translations" / "test.txt").read_text().split("\n")[:-1]
    assert len(translations) == 120


def test_compare_runs_paired_bootstrap(trained):
    from translator.decoding.evaluation import compare, evaluate

    _, runs = trained
    for run in runs.values():
        if not (run / "translations" / "test.txt").exists():
            evaluate(run, "test", beam_size=3)
    result = compare(runs["weak"], runs["good"], "test", samples=200)
    good = result["systems"]["good"]["BLEU"]
    assert good["p_value"] is not None and good["p_value"] < 0.05
    assert result["systems"]["weak"]["BLEU"]["score"] < good["score"]


def test_the_results_table_scores_trained_runs_and_names_the_command_for_the_rest(trained, tmp_path):
    import yaml
    from conftest import write_config

    from translator.studies.results import ResultsError, table, write_readme
    from translator.training.trainer import Trainer

    data, runs = trained
    directory = runs["good"].parent
    missing = write_config(tmp_path, data, name="missing")
    manifest = tmp_path / "results.yaml"
    manifest.write_text(yaml.safe_dump({
        "rows": [{"config": str(directory / "good.yaml"), "label": "good"},
                 {"config": str(directory / "weak.yaml"), "label": "weak"},
                 {"config": str(missing), "label": "missing", "seeds": [1, 2]}],
        "differences": [{"label": "eight epochs instead of one", "baseline": "weak", "variant": "good"}]}))
    text = table(manifest, runs_dir=directory)
    report = json.loads((runs["good"] / "report.json").read_text())
    assert report["search"] == "beam 5, length penalty 0.6"  # the recipe's decoding section (defaults here)
    good = next(line for line in text.splitlines() if line.startswith("| good |"))
    assert f"| {report['scores']['BLEU']['score']:.2f} |" in good and report["scores"]["BLEU"]["score"] > 90
    assert f"| {report['parameters']:,} |" in good and "| 8 epochs, " in good and "CPU cores" in good
    for seed in (1, 2):
        assert f"not trained: `translator train {missing} --seed {seed} --run {directory}/missing-seed{seed}`" in text
    assert "- BLEU signature: `nrefs:1|case:mixed|eff:no|tok:13a" in text
    assert "- eight epochs instead of one: +" in text
    modified = (runs["good"] / "report.json").stat().st_mtime
    undated = lambda table_text: [line for line in table_text.splitlines() if not line.startswith("Written by")]  # noqa: E731
    assert undated(table(manifest, runs_dir=directory)) == undated(text)  # reports newer than the model: reused
    assert (runs["good"] / "report.json").stat().st_mtime == modified

    readme = tmp_path / "README.md"
    readme.write_text("# Title\n<!-- results -->\nold table\n<!-- /results -->\nafter\n")
    write_readme(readme, text)
    assert readme.read_text() == f"# Title\n<!-- results -->\n{text}<!-- /results -->\nafter\n"
    readme.write_text("# no markers\n")
    with pytest.raises(ResultsError, match="<!-- results -->"):
        write_readme(readme, text)
    assert Trainer(missing, seed=7).config["training"]["seed"] == 7
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        Trainer(missing, seed=-1)


def test_translate_imports_tensorflow_without_pandas_and_leaves_it_importable():
    """`translator translate` imports TensorFlow with pandas and matplotlib hidden (Keras would
    import both, ~0.8 s of a one-line translation); afterwards they import as usual."""
    probe = ("import sys; from translator.cli import _import_tensorflow_without_dataframes_or_plots as lean; lean(); "
             "hidden = [name for name in ('pandas', 'matplotlib') if name in sys.modules]; import pandas; "
             "print('tensorflow' in sys.modules, hidden, pandas.DataFrame({'a': [1]}).shape)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True [] (1, 1)"
