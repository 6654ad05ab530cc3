"""Evaluation: translate a split, score it with sacrebleu, write a report you can trust.

``translator evaluate --run RUN --split test`` writes into the run directory:

    translations/SPLIT.txt   the system output, one line per source line
    report.json              every score with its sacrebleu signature, settings, per-bucket BLEU
    report.md                the same as tables
    report.html              a standalone page (plots embedded): BLEU by source length,
                             training and validation curves, attention heatmaps, best and
                             worst sentences

Scores: BLEU (sacrebleu's default: 13a tokenization, cased), chrF and TER, each with its
signature, plus lowercased 13a BLEU to set beside older published numbers (many papers and
tutorials report lowercased, tokenized BLEU). ``translator compare RUN_A RUN_B`` tests the
difference with sacrebleu's paired bootstrap resampling.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np

from translator.data.corpora import read_prepared_split
from translator.files import atomic_write_text
from translator.machine import hardware
from translator.models.runs import read_run_config
from translator.reports import png, read_log

LENGTH_BUCKETS = [(1, 10), (11, 15), (16, 20), (21, 30), (31, 1000)]


def _metrics():
    from sacrebleu.metrics import BLEU, CHRF, TER

    return {"BLEU": BLEU(), "chrF": CHRF(), "TER": TER(), "BLEU (lowercased)": BLEU(lowercase=True)}


def score(hypotheses, references) -> dict:
    """sacrebleu scores with their signatures: {name: {"score": float, "signature": str, "text": str}}."""
    results = {}
    for name, metric in _metrics().items():
        value = metric.corpus_score(hypotheses, [references])
        results[name] = {"score": round(value.score, 2), "signature": str(metric.get_signature()),
                         "text": str(value)}
    return results


def _bleu_by_length(sources, hypotheses, references):
    from sacrebleu.metrics import BLEU

    rows = []
    for low, high in LENGTH_BUCKETS:
        indices = [i for i, s in enumerate(sources) if low <= len(s.split()) <= high]
        if not indices:
            continue
        value = BLEU().corpus_score([hypotheses[i] for i in indices], [[references[i] for i in indices]])
        label = f"{low}-{high}" if high < 1000 else f"{low}+"
        rows.append({"source_words": label, "sentences": len(indices), "BLEU": round(value.score, 2)})
    return rows


def _sentence_extremes(sources, hypotheses, references, count=5):
    from sacrebleu.metrics import BLEU

    metric = BLEU(effective_order=True)
    scores = [metric.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)]
    order = np.argsort(scores, kind="stable")
    pick = lambda indices: [{"line": int(i) + 1, "BLEU": round(scores[i], 1), "source": sources[i],  # noqa: E731
                             "hypothesis": hypotheses[i], "reference": references[i]} for i in indices]
    return pick(order[::-1][:count]), pick(order[:count])


# ----------------------------------------------------------------------------- plots

def _plots(report: dict, log: list[dict], attention_examples) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    buckets = report["bleu_by_source_length"]
    figure, axis = plt.subplots(figsize=(6, 3.2))
    axis.bar([b["source_words"] for b in buckets], [b["BLEU"] for b in buckets], color="#4c72b0")
    for index, bucket in enumerate(buckets):
        axis.text(index, bucket["BLEU"], f"n={bucket['sentences']}", ha="center", va="bottom", fontsize=8)
    axis.set_xlabel("source length (words)")
    axis.set_ylabel("BLEU")
    axis.set_title("BLEU by source length", pad=14)
    plots["bleu_by_length"] = png(figure)

    if log:
        from matplotlib.ticker import MaxNLocator

        epochs = [int(row["epoch"]) for row in log]
        bleu = [float(row["validation_bleu"]) if row.get("validation_bleu") else np.nan for row in log]
        with_bleu = not np.isnan(bleu).all()  # runs with bleu_every: 0 have no BLEU curve
        figure, axes = plt.subplots(1, 2 if with_bleu else 1, figsize=(10 if with_bleu else 5, 3.2), squeeze=False)
        axes = axes[0]
        for key, label in (("train_loss", "training loss"), ("validation_loss", "validation loss")):
            values = [float(row[key]) if row.get(key) else np.nan for row in log]
            axes[0].plot(epochs, values, marker="o", label=label)
        axes[0].set_ylabel("cross-entropy (nats per token)")
        axes[0].legend()
        axes[0].set_title("loss")
        if with_bleu:
            axes[1].plot(epochs, bleu, marker="o", color="#55a868")
            axes[1].set_ylabel("BLEU (greedy, validation sample)")
            axes[1].set_title("validation BLEU")
        for axis in axes:
            axis.set_xlabel("epoch")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        plots["curves"] = png(figure)

    for number, example in enumerate(attention_examples):
        weights = example.attention
        figure, axis = plt.subplots(figsize=(0.45 * weights.shape[1] + 2, 0.35 * weights.shape[0] + 1.5))
        axis.imshow(weights, cmap="Greys", aspect="auto", vmin=0.0, vmax=1.0)
        axis.set_xticks(range(weights.shape[1]), example.source_pieces, rotation=90, fontsize=8)
        axis.set_yticks(range(weights.shape[0]), [*example.pieces, "<eos>"][:weights.shape[0]], fontsize=8)
        axis.set_title("attention (rows: output pieces, columns: source pieces)", fontsize=9)
        plots[f"attention_{number}"] = png(figure)
    return plots


# ----------------------------------------------------------------------------- reports

def _markdown(report: dict) -> str:
    lines = [f"# Evaluation of {report['run']} on {report['corpus']} {report['split']}", "",
             f"{report['sentences']:,} sentences, {report['search']}, {report['seconds']:.1f} s "
             f"({report['sentences_per_second']:.1f} sentences/s) on {report['hardware']}.", "",
             "| metric | score | sacrebleu signature |", "| --- | ---: | --- |"]
    for name, value in report["scores"].items():
        signature = value["signature"].replace("|", "\\|")  # a bare | would end the table cell
        lines.append(f"| {name} | {value['score']:.2f} | `{signature}` |")
    lines += ["", "## BLEU by source length", "", "| source words | sentences | BLEU |", "| --- | ---: | ---: |"]
    lines += [f"| {b['source_words']} | {b['sentences']} | {b['BLEU']:.2f} |" for b in report["bleu_by_source_length"]]
    for title, key in (("Best sentences", "best"), ("Worst sentences", "worst")):
        lines += ["", f"## {title} (sentence BLEU)", ""]
        for row in report[key]:
            lines += [f"- line {row['line']}, BLEU {row['BLEU']:.1f}", f"  - source: {row['source']}",
                      f"  - output: {row['hypothesis']}", f"  - reference: {row['reference']}"]
    return "\n".join(lines) + "\n"


def _html(report: dict, plots: dict[str, str]) -> str:
    escape = html.escape
    rows = "".join(f"<tr><td>{escape(n)}</td><td class=num>{v['score']:.2f}</td><td><code>{escape(v['signature'])}</code></td></tr>"
                   for n, v in report["scores"].items())
    image = lambda key, alt: f'<img alt="{alt}" src="data:image/png;base64,{plots[key]}">' if key in plots else ""  # noqa: E731

    def sentences(key):
        return "".join(f"<tr><td class=num>{r['line']}</td><td class=num>{r['BLEU']:.1f}</td><td>{escape(r['source'])}</td>"
                       f"<td>{escape(r['hypothesis'])}</td><td>{escape(r['reference'])}</td></tr>" for r in report[key])

    attention = "".join(image(key, "attention heatmap") for key in sorted(plots) if key.startswith("attention_"))
    header = "<tr><th>line</th><th>BLEU</th><th>source</th><th>output</th><th>reference</th></tr>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(report['run'])}: {escape(report['split'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
th {{ background: #f3f3f3; }} .num {{ text-align: right; }} img {{ max-width: 100%; margin: 0.5em 0; display: block; }}
code {{ font-size: 85%; }}
</style></head><body>
<h1>{escape(report['run'])} on {escape(report['corpus'])} {escape(report['split'])}</h1>
<p>{report['sentences']:,} sentences; {escape(report['search'])}; {report['seconds']:.1f} s
({report['sentences_per_second']:.1f} sentences/s) on {escape(report['hardware'])}; {escape(report['created'])}.</p>
<h2>Scores</h2><table><tr><th>metric</th><th>score</th><th>sacrebleu signature</th></tr>{rows}</table>
<h2>BLEU by source length</h2>{image("bleu_by_length", "BLEU by source length")}
<h2>Training</h2>{image("curves", "training and validation curves") or "<p>No training log.</p>"}
<h2>Attention</h2>{attention or "<p>This model has no attention.</p>"}
<h2>Best sentences</h2><table>{header}{sentences("best")}</table>
<h2>Worst sentences</h2><table>{header}{sentences("worst")}</table>
</body></html>
"""


def evaluate(run, split: str = "test", beam_size: int | None = None, length_penalty: float | None = None,
             batch_size: int = 64, translator=None, out=None, corpus: str | None = None,
             target_language: str | None = None, shortlist: bool | None = None) -> dict:
    """Translate ``split`` of the run's corpus, score it, and write the report files into ``run``
    (or ``out``). ``run`` may be a list of translation runs: their ensemble is evaluated, on the
    first run's corpus, and the report goes to ``out`` (default ``runs/ensemble-A+B``).

    ``beam_size`` and ``length_penalty`` default (None) to the run's ``decoding`` config.
    ``corpus``: a prepared corpus other than the run's (the report then goes to ``run/CORPUS``);
    ``target_language``: the language a multilingual model writes (see `Translator.translate`);
    ``shortlist``: as `Translator.load` (None: the run's config)."""
    from translator.decoding.ensembles import ensemble_directory
    from translator.decoding.translator import MOSTLY_UNKNOWN, Translator
    from translator.models.seq2seq import count_parameters

    members = None
    if isinstance(run, (list, tuple)):  # an ensemble: its report goes to `out`
        members = [Path(each) for each in run]
        translator = translator or Translator.load(members, shortlist=shortlist)
        config = read_run_config(members[0])
        source, run = None, Path(out) if out else ensemble_directory(members)
    else:
        source = Path(run)  # the run read from; `run` is where the report goes
        config = read_run_config(source)
        run = Path(out) if out else source
        if not out and corpus and corpus != config["data"]["corpus"]:  # another corpus: a report of its own
            run = source / corpus
    kind = config["model"].get("type", "seq2seq")
    if kind == "classifier":
        from translator.models.classifiers import evaluate_classifier
        return evaluate_classifier(source or run, split)
    if kind == "language_model":
        raise ValueError(f"{run} is a language model: its validation loss (nats per token) is in "
                         f"{run / 'log.csv'}; generate text with `translator sample --run {run}`")
    data = config["data"]
    corpus = corpus or data["corpus"]
    columns = read_prepared_split(corpus, split, data["work_dir"])
    sources, references = columns["source"], columns["target"]
    translator = translator or Translator.load(source, shortlist=shortlist)
    beam_size = translator.beam_size if beam_size is None else beam_size
    length_penalty = translator.length_penalty if length_penalty is None else length_penalty
    started = time.time()
    language = {"target_language": target_language} if target_language else {}  # an ExportedTranslator has none
    hypotheses = translator.translate(sources, beam_size=beam_size, length_penalty=length_penalty,
                                      batch_size=batch_size, **language)
    seconds = time.time() - started
    atomic_write_text(run / "translations" / f"{split}.txt", "".join(h + "\n" for h in hypotheses))
    best, worst = _sentence_extremes(sources, hypotheses, references)
    report = {
        "run": run.name, "corpus": corpus, "split": split, "target_language": target_language, "sentences": len(sources),
        "search": f"beam {beam_size}, length penalty {length_penalty}" if beam_size > 1 else "greedy",
        "beam_size": beam_size, "length_penalty": length_penalty,
        "seconds": round(seconds, 2), "sentences_per_second": round(len(sources) / max(seconds, 1e-9), 1),
        "hardware": hardware(), "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scores": score(hypotheses, references),
        "bleu_by_source_length": _bleu_by_length(sources, hypotheses, references),
        "mostly_unknown_sentences": sum(share > MOSTLY_UNKNOWN for share in translator.unknown_shares(sources)),
        "best": best, "worst": worst, "translations": f"translations/{split}.txt",
        "model": config["model"], "parameters": count_parameters(translator.model),
        "directory": str(run),
    }
    if members:
        report["ensemble"] = [str(member) for member in members]
    examples = []
    if config["model"].get("attention"):
        shortest = sorted(range(len(sources)), key=lambda i: len(sources[i]))[len(sources) // 3:][:3]
        examples = translator.translate_detailed([sources[i] for i in shortest], beam_size=beam_size,
                                                 length_penalty=length_penalty, attention=True, **language)
    plots = _plots(report, read_log(source) if source else [], examples)
    atomic_write_text(run / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(run / "report.md", _markdown(report))
    atomic_write_text(run / "report.html", _html(report, plots))
    return report


def compare(run_a, run_b, split: str = "test", samples: int = 1000) -> dict:
    """Paired bootstrap resampling (sacrebleu) of two evaluated runs on the same split."""
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    runs = [Path(run_a), Path(run_b)]
    systems, references = [], None
    for run in runs:
        path = run / "translations" / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `translator evaluate --run {run} --split {split}` first")
        config = read_run_config(run)
        target = read_prepared_split(config["data"]["corpus"], split, config["data"]["work_dir"])["target"]
        if references is not None and target != references:
            raise ValueError(f"{runs[0]} and {run} were evaluated on different references; compare runs of one corpus")
        references = target
        systems.append((run.name, path.read_bytes().decode("utf-8").split("\n")[:-1]))
    signatures, results = PairedTest(systems, {"BLEU": BLEU(), "chrF": CHRF()}, [references],
                                     test_type="bs", n_samples=samples)()
    out = {"split": split, "samples": samples, "systems": {}, "signatures": {k: str(v) for k, v in signatures.items()}}
    for index, (name, _) in enumerate(systems):
        out["systems"][name] = {metric: {"score": round(r[index].score, 2), "mean": r[index].mean,
                                         "ci95": r[index].ci, "p_value": r[index].p_value}
                                for metric, r in results.items() if metric != "System"}
    return out
