"""`make bench`'s decoding that does less work (issue 32): a trained run's greedy and beam-5
search of test2016 as it runs today (the run's precision, the whole vocabulary), with the run's
lexical shortlist (`translator.decoding.shortlists`), in int8 (`translator.models.quantization`) and with both,
side by side in one process: sentences/s, BLEU (sacreBLEU, cased) and mean output length.

Each setting is named with the batch size it runs at (sentences per batch): today's greedy at
the bench's 500 and `Translator`'s default 64, today's beam 5 at 64; a shortlist is the union of
its batch's sentences', so it runs at smaller batches too. A ratio compares a row with the
fastest of today's rows of the same search, and so does its BLEU difference.
"""

from __future__ import annotations

import time
from pathlib import Path

CORPUS = "multi30k-de-en"
# (name, precision: None for the run's own, shortlist, beam size, batch size)
SETTINGS = [
    ("today", None, False, 1, 500), ("today", None, False, 1, 64), ("today", None, False, 5, 64),
    ("shortlist", None, True, 1, 64), ("shortlist", None, True, 1, 128),
    ("shortlist", None, True, 5, 32), ("shortlist", None, True, 5, 64),
    ("int8", "int8", False, 1, 64), ("int8", "int8", False, 5, 64),
    ("int8 + shortlist", "int8", True, 1, 128), ("int8 + shortlist", "int8", True, 5, 32),
]


def phase_decode_less(run: str) -> dict:
    """Every setting of `SETTINGS` on `run` (its shortlist built first when it has none)."""
    import sacrebleu

    from translator.data.corpora import read_prepared_split
    from translator.decoding.shortlists import SHORTLIST_FILE, build_for_run
    from translator.decoding.translator import Translator

    if not (Path(run) / SHORTLIST_FILE).is_file():
        build_for_run(run)
    test = read_prepared_split(CORPUS, "test")
    sources, references = test["source"], test["target"]
    translators, rows = {}, []
    for name, precision, shortlist, beam_size, batch_size in SETTINGS:
        key = (precision, shortlist)
        if key not in translators:
            translators[key] = Translator.load(run, precision=precision, shortlist=shortlist)
        translator = translators[key]
        translator.translate(sources, beam_size=beam_size, batch_size=batch_size)  # warm-up: tracing
        started = time.perf_counter()
        outputs = translator.translate(sources, beam_size=beam_size, batch_size=batch_size)
        elapsed = time.perf_counter() - started
        rows.append({"setting": name, "precision": precision or translator.model.dtype_policy.compute_dtype,
                     "beam_size": beam_size, "batch_size": batch_size,
                     "sentences_per_second": round(len(outputs) / elapsed, 1),
                     "bleu": round(sacrebleu.corpus_bleu(outputs, [references]).score, 2),
                     "mean_output_words": round(sum(len(o.split()) for o in outputs) / len(outputs), 2)})
    shortlist = translators[(None, True)].shortlist
    return {"run": run, "rows": rows, "length_penalty": translators[(None, False)].length_penalty,
            "shortlist": {"per_source": int(shortlist.table.shape[1]), "frequent": int(shortlist.frequent.size)},
            "reference_mean_words": round(sum(len(t.split()) for t in references) / len(references), 2)}


def markdown(results: dict) -> list[str]:
    """The table of one run's `phase_decode_less`, as lines."""
    rows = results["rows"]
    lines = [f"`{results['run']}`, test2016, length penalty {results['length_penalty']}, shortlist of "
             f"{results['shortlist']['per_source']} pieces per source piece and {results['shortlist']['frequent']} "
             f"frequent ones (reference: {results['reference_mean_words']} words):", "",
             "| decoding | precision | search | batch | sentences/s | × today | BLEU | Δ BLEU | output words | "
             "Δ length |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        today = max((r for r in rows if r["setting"] == "today" and r["beam_size"] == row["beam_size"]),
                    key=lambda r: r["sentences_per_second"])
        search = "greedy" if row["beam_size"] == 1 else f"beam {row['beam_size']}"
        lines.append(f"| {row['setting']} | {row['precision']} | {search} | {row['batch_size']} | "
                     f"{row['sentences_per_second']:,.1f} | "
                     f"{row['sentences_per_second'] / today['sentences_per_second']:.2f} | {row['bleu']:.2f} | "
                     f"{row['bleu'] - today['bleu']:+.2f} | {row['mean_output_words']} | "
                     f"{row['mean_output_words'] / today['mean_output_words'] - 1:+.1%} |")
    return lines
