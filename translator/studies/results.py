"""The results table of README.md: the recipes of ``configs/results.yaml``, scored the same way.

``translator results`` (``make results``) reads the rows of configs/results.yaml, scores each
trained run on its test split with ``translator evaluate`` (beam size and length penalty from the
recipe's ``decoding`` section; a report.json newer than the model with the same settings is
reused), and writes the table between the ``<!-- results -->`` and ``<!-- /results -->`` lines
of README.md. ``--train`` first trains the runs that have no model yet (``translator train``,
which resumes an interrupted run); without it they show as "not trained". A row with ``seeds``
is one run per seed, ``runs/NAME-seedN``; a row with ``corpus`` (and ``target_language``) scores
the run on another prepared corpus, as one direction of a multilingual model (``translator evaluate
--corpus C --target-language L``, its report in ``RUN/C/``); a ``difference`` compares two rows'
mean BLEU.
A row with ``ensemble`` (run names) scores the ensemble of those runs (``translator evaluate --run A
--run B``, its report in ``runs/ensemble-A+B``); ``command`` says what makes them.

Each row names the command that made it, the parameters, the training time (log.csv), the
hardware that trained it (machines.txt) and the scores; the BLEU, lowercased BLEU and chrF
signatures follow the table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from translator.config import load_config
from translator.files import read_yaml, replace_between

START, END = "<!-- results -->", "<!-- /results -->"
SCORES = ("BLEU", "BLEU (lowercased)", "chrF")


class ResultsError(ValueError):
    """configs/results.yaml or README.md is not as expected (the message says how to fix it)."""


def read_rows(manifest: str | Path) -> tuple[list[dict], list[dict]]:
    """The rows and differences of a results manifest, each row with its runs [(seed, run name)]."""
    manifest = Path(manifest)
    raw = read_yaml(manifest, ResultsError) or {}
    rows = raw.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ResultsError(f"{manifest}: expected a list 'rows' of {{config: PATH, label: TEXT, seeds: [N, ...]}}")
    out = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or "config" not in row:
            raise ResultsError(f"{manifest}: row {number} needs a 'config' (a path such as configs/NAME.yaml)")
        allowed = ("config", "label", "seeds", "corpus", "target_language", "ensemble", "command")
        unknown = set(row) - set(allowed)
        if unknown:
            raise ResultsError(f"{manifest}: row {number} has unknown keys {sorted(unknown)}; "
                               f"allowed: {', '.join(allowed)}")
        ensemble = row.get("ensemble")
        if ensemble is not None and (not isinstance(ensemble, list) or len(ensemble) < 2
                                     or not all(isinstance(member, str) for member in ensemble)):
            raise ResultsError(f"{manifest}: row {number} 'ensemble' must be a list of two or more run names")
        config_path = Path(row["config"])
        if not config_path.is_absolute() and not config_path.exists():
            config_path = manifest.parent.parent / config_path
        name = load_config(config_path)["name"]
        seeds = row.get("seeds")
        if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(s, int) and s >= 0 for s in seeds)):
            raise ResultsError(f"{manifest}: row {number} 'seeds' must be a list of integers >= 0")
        runs = [(seed, f"{name}-seed{seed}") for seed in seeds] if seeds else [(None, name)]
        if ensemble:
            runs = [(None, "ensemble-" + "+".join(ensemble))]  # as translator.decoding.ensembles.ensemble_directory
        out.append({"config": str(row["config"]), "path": config_path, "label": row.get("label", name),
                    "runs": runs, "corpus": row.get("corpus"), "target_language": row.get("target_language"),
                    "ensemble": ensemble, "command": row.get("command")})
    differences = raw.get("differences") or []
    labels = {row["label"] for row in out}
    for difference in differences:
        if not isinstance(difference, dict) or not {"label", "baseline", "variant"} <= set(difference) \
                or not {difference["baseline"], difference["variant"]} <= labels:
            raise ResultsError(f"{manifest}: a difference is {{label: TEXT, baseline: ROW LABEL, variant: ROW LABEL}} "
                               f"naming two row labels; got {difference!r}")
    return out, differences


def scored_report(run: Path, split: str, train: bool, row: dict, seed) -> dict | None:
    """The run's report.json on ``split``: reused when newer than the model with the recipe's
    decoding settings, else made by `evaluate`; None when the run has no model (and not ``train``).
    Training and scoring hold the run's lock (`run_lock`): RunBusy when another process has it."""
    from translator.decoding.evaluation import evaluate
    from translator.models.runs import run_lock
    from translator.training.trainer import train_if_missing

    if row.get("ensemble"):
        return _ensemble_report(run, split, row)
    model = run / "model.keras"
    config = load_config(row["path"])
    decoding = config["decoding"]
    settings = (split, decoding["beam_size"], decoding["length_penalty"])
    target_language = row.get("target_language")
    corpus = row.get("corpus") if row.get("corpus") != config["data"]["corpus"] else None
    reports = run / corpus if corpus else run  # where evaluate writes the report
    if not model.is_file() and not train:
        return None
    report = _fresh_report(run, reports, settings)
    if report is not None:
        return report
    with run_lock(run):
        if train:
            train_if_missing(row["path"], run, seed)
        report = _fresh_report(run, reports, settings)  # another process may have scored it meanwhile
        if report is not None:
            return report
        other = f" --corpus {corpus}" if corpus else ""
        other += f" --target-language {target_language}" if target_language else ""
        print(f"evaluating: translator evaluate --run {run} --split {split} --beam-size {decoding['beam_size']} "
              f"--length-penalty {decoding['length_penalty']}{other}", flush=True)
        return evaluate(run, split, beam_size=decoding["beam_size"], length_penalty=decoding["length_penalty"],
                        corpus=corpus, target_language=target_language)


def _ensemble_report(run: Path, split: str, row: dict) -> dict | None:
    """The report of the ensemble of ``row["ensemble"]`` (runs beside ``run``, its directory);
    None while one of them has no model."""
    from translator.decoding.evaluation import evaluate

    members = [run.parent / name for name in row["ensemble"]]
    if not all((member / "model.keras").is_file() for member in members):
        return None
    decoding = load_config(row["path"])["decoding"]
    settings = (split, decoding["beam_size"], decoding["length_penalty"])
    report = _fresh_report(members, run, settings)
    if report is None:
        print(f"evaluating: translator evaluate {' '.join(f'--run {m}' for m in members)} --split {split} "
              f"--beam-size {decoding['beam_size']} --length-penalty {decoding['length_penalty']}", flush=True)
        report = evaluate(members, split, beam_size=decoding["beam_size"],
                          length_penalty=decoding["length_penalty"], out=run)
    return report


def _fresh_report(run, reports: Path, settings: tuple) -> dict | None:
    """``reports``/report.json when it is newer than the run's model.keras (every run's, for a
    list of runs) and made with ``settings`` (split, beam size, length penalty), else None."""
    models, path = [Path(each) / "model.keras" for each in (run if isinstance(run, list) else [run])], \
        reports / "report.json"
    if not (all(model.is_file() for model in models) and path.is_file()
            and all(path.stat().st_mtime > model.stat().st_mtime for model in models)):
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    found = (report["split"], report["beam_size"], report["length_penalty"])
    return report if found == settings and "parameters" in report else None


def _training(run: Path, members=None) -> tuple[str, str]:
    """("N epochs, M min", hardware) from the run's log.csv and machines.txt; for an ensemble
    (``members``, its runs) the sum over them: ("K runs x N epochs, M min in all", hardware)."""
    from translator.reports import read_log

    logs = [read_log(each) for each in members or [run]]
    minutes = sum(float(log[-1]["train_seconds"]) for log in logs) / 60
    names = []
    for each in members or [run]:
        machines = each / "machines.txt"
        for line in machines.read_text(encoding="utf-8").splitlines() if machines.is_file() else []:
            name = line.split("\t")[-1]
            if name not in names:
                names.append(name)
    epochs = "/".join(sorted({str(len(log)) for log in logs}))
    done = f"{len(logs)} runs x {epochs} epochs, {minutes:.1f} min in all" if members else \
        f"{epochs} epochs, {minutes:.1f} min"
    return done, " + ".join(names) or "not recorded"


def table(manifest: str | Path, runs_dir: str | Path = "runs", split: str = "test", train: bool = False) -> str:
    """The results table (Markdown) of every row of ``manifest``."""
    from translator.training.trainer import train_command

    rows, differences = read_rows(manifest)
    lines = ["| recipe | run | BLEU | BLEU (lowercased) | chrF | parameters | decoding | training | hardware |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |"]
    signatures, bleu_by_label = {}, {}
    for row in rows:
        for seed, name in row["runs"]:
            run = Path(runs_dir) / name
            report = scored_report(run, split, train, row, seed)
            if report is None:
                command = row["command"] or train_command(row["config"], run, seed)
                lines.append(f"| {row['label']} | {name} | not trained: `{command}` | | | | | | |")
                continue
            scores = report["scores"]
            for metric in SCORES:
                signatures.setdefault(metric, set()).add(scores[metric]["signature"])
            bleu_by_label.setdefault(row["label"], []).append(scores["BLEU"]["score"])
            training, machine = _training(run, [run.parent / m for m in row["ensemble"]] if row["ensemble"] else None)
            shown = f"`{name}`" + (f" on `{row['corpus']}`" if row["corpus"] else "")
            lines.append(f"| {row['label']} | {shown} | {scores['BLEU']['score']:.2f} | "
                         f"{scores['BLEU (lowercased)']['score']:.2f} | {scores['chrF']['score']:.2f} | "
                         f"{report['parameters']:,} | {report['search']} | {training} | {machine} |")
    lines.append("")
    lines.append(f"Written by `translator results` (split {split}) on {time.strftime('%Y-%m-%d', time.gmtime())}.")
    for metric, found in signatures.items():
        lines.append(f"- {metric} signature: " + "; ".join(f"`{s}`" for s in sorted(found)))
    for difference in differences:
        baseline, variant = (bleu_by_label.get(difference[k], []) for k in ("baseline", "variant"))
        if not baseline or not variant:
            lines.append(f"- {difference['label']}: not measured (train both rows first)")
            continue
        mean = lambda values: sum(values) / len(values)  # noqa: E731
        lines.append(f"- {difference['label']}: {mean(variant) - mean(baseline):+.2f} BLEU "
                     f"({difference['variant']}: {', '.join(f'{b:.2f}' for b in variant)}; "
                     f"{difference['baseline']}: {', '.join(f'{b:.2f}' for b in baseline)})")
    return "\n".join(lines) + "\n"


def write_readme(readme: str | Path, text: str) -> None:
    """Replace what lies between the results markers of ``readme`` with ``text`` (atomically)."""
    replace_between(readme, START, END, text, ResultsError)
