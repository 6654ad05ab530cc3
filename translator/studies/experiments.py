"""`translator experiments` (`make experiments`): the seeds' claims about RNNs, measured with
this toolkit, in one report.

Every claim of the documents this project grew from (``../shared/seeds/``) that can be
measured on a 2-core CPU is one experiment here: the seed it comes from, the claim in one line,
the recipe in ``configs/experiments/`` (settings, result, hardware and time), and a function
that trains what is missing and measures. Results are cached as JSON in
``experiments/results/`` as they are measured, so an interrupted run resumes and a run without
``--train`` only renders what exists (and says what is missing). The output is
``experiments/report.html`` (standalone, plots embedded) and the README section "What the seeds
claim, measured".
"""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from translator.files import atomic_write_text, read_yaml, replace_between
from translator.models.runs import RunBusy, file_lock
from translator.studies.claims import (  # noqa: F401  (every claim's pieces: importable from here, as before)
    RECIPES,
    Experiment,
    ExperimentError,
    PlannedRun,
    continuation_runs,
    html_interpretable_cells,
    interpretable_cells_runs,
    language_model_runs,
    measure_continuation,
    measure_interpretable_cells,
    measure_language_models,
    measure_paired_runs,
    measure_vanishing_gradients,
    paired_runs,
    planned_run,
    plot_language_models,
    plot_paired_runs,
    plot_vanishing_gradients,
    recipe_path,
    summarize_continuation,
    summarize_interpretable_cells,
    summarize_language_models,
    summarize_paired_runs,
    summarize_vanishing_gradients,
)

README_START, README_END = "<!-- experiments:start -->", "<!-- experiments:end -->"
SEEDS = {
    "why": "\"Why RNNs work\"",
    "karpathy": "Karpathy, \"The Unreasonable Effectiveness of Recurrent Neural Networks\"",
    "parr": "Parr, \"Explaining RNNs without neural networks\"",
    "stenzel": "Stenzel's encoder-decoder notes",
    "primer": "the RNN/LSTM/GRU primer",
}


# ----------------------------------------------------------------------------- the list

EXPERIMENTS = [
    Experiment("reversal", SEEDS["why"], "reading the source backwards helps a lot (Sutskever et al. 2014)",
               measure_paired_runs, summarize_paired_runs, plot_paired_runs, runs=paired_runs),
    Experiment("lstm-vs-gru", SEEDS["why"], "you can modify the LSTM's internals quite a bit and get similar results",
               measure_paired_runs, summarize_paired_runs, plot_paired_runs, runs=paired_runs),
    Experiment("vanishing-gradients", SEEDS["primer"],
               "a simple RNN's gradient vanishes with distance, so it cannot learn long-term dependencies; "
               "LSTM and GRU gates fix it",
               measure_vanishing_gradients, summarize_vanishing_gradients, plot_vanishing_gradients),
    Experiment("sliding-window", SEEDS["why"], "an MLP over the last N tokens is what an RNN replaced, and does worse",
               measure_language_models, summarize_language_models, plot_language_models, runs=language_model_runs),
    Experiment("translation-as-continuation", SEEDS["why"],
               "translation can be done by one language model continuing 'source <sep>'",
               measure_continuation, summarize_continuation, runs=continuation_runs),
    Experiment("decoder-swap", SEEDS["why"], "you can swap out the decoder while reusing the encoder",
               measure_paired_runs, summarize_paired_runs, plot_paired_runs, runs=paired_runs),
    Experiment("context-every-step", SEEDS["stenzel"], "feeding the context vector at every decoder step helps",
               measure_paired_runs, summarize_paired_runs, plot_paired_runs, runs=paired_runs),
    Experiment("interpretable-cells", SEEDS["karpathy"],
               "some cells of a character model track things a reader can name",
               measure_interpretable_cells, summarize_interpretable_cells, None, html_interpretable_cells,
               runs=interpretable_cells_runs),
]


def read_recipe(name: str, recipes: Path = RECIPES) -> dict:
    path = Path(recipes) / f"{name}.yaml"
    if not path.is_file():
        raise ExperimentError(f"{path} not found: every experiment's recipe lives in {recipes}")
    recipe = read_yaml(path, ExperimentError)
    if not isinstance(recipe, dict):
        raise ExperimentError(f"{path}: a recipe is a YAML mapping of settings")
    return recipe


def run(train: bool = False, only: str | None = None, output_dir: str | Path = "experiments",
        readme: str | Path | None = "README.md", log=print, recipes: Path = RECIPES, jobs: int = 1) -> dict:
    """Measure (with ``train``: train what is missing, only the experiment ``only`` if given, in
    ``jobs`` worker processes) and render the report and the README section; returns {name: status}."""
    names = [experiment.name for experiment in EXPERIMENTS]
    if only is not None and only not in names:
        raise ExperimentError(f"unknown experiment '{only}'; the experiments are: {', '.join(names)}")
    output = Path(output_dir)
    if train and jobs > 1:
        if Path(recipes) != RECIPES:
            raise ExperimentError(f"jobs > 1 runs workers on the recipes of {RECIPES}; use jobs=1 for {recipes}")
        train_in_workers(jobs, only, output, log)
    elif train:
        measure_all(only, output, recipes, log)
    rows, figures, status = [], {}, {}
    for experiment in EXPERIMENTS:
        if experiment.measure is None:
            status[experiment.name] = "not implemented yet"
        else:
            recipe = read_recipe(experiment.name, recipes)
            try:
                with _experiment_lock(output, experiment):
                    results, save = _results(output, experiment)
                    complete = experiment.measure(recipe, results, False, save)
            except RunBusy as busy:  # being measured by another process: shown as missing until it is done
                log(f"  {experiment.name}: {busy}")
                complete = False
            status[experiment.name] = "measured" if complete else "missing: run with --train"
        row = {"name": experiment.name, "seed": experiment.seed, "claim": experiment.claim, "figure": "-",
               "verdict": f"not measured yet (`translator experiments --train --only {experiment.name}`)"
               if status[experiment.name].startswith("missing") else status[experiment.name]}
        if status[experiment.name] == "measured":
            row["figure"], row["verdict"] = experiment.summary(results, recipe)
            if experiment.plot is not None:
                figures[experiment.name] = experiment.plot(results, recipe)
            if experiment.html is not None:
                row["html"] = experiment.html(results, recipe)
        rows.append(row)
        log(f"  {experiment.name}: {row['verdict']}")
    note = training_summary(output, recipes)
    _write_report(output / "report.html", rows, figures, note)
    if readme:
        write_readme(readme, rows, note)
    return status


def _results(output: Path, experiment: Experiment) -> tuple[dict, object]:
    """An experiment's cached results (``output/results/NAME.json``) and the function that saves them."""
    path = output / "results" / f"{experiment.name}.json"
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def save():
        atomic_write_text(path, json.dumps(results, indent=2) + "\n")

    return results, save


def _experiment_lock(output: Path, experiment: Experiment):
    return file_lock(output / "results" / f".{experiment.name}.lock",
                     f"experiment {experiment.name} is being measured by another process")


def measure_all(only: str | None, output: Path, recipes: Path = RECIPES, log=print, wait_seconds: float = 30) -> None:
    """Train, then measure, every experiment (or ``only``). First the runs they need (each
    once, in the order the experiments list them: the long ones first), each while holding
    its lock (`run_lock`); then each experiment while holding its own
    (``output/results/.NAME.lock``). A run or experiment that another process holds (RunBusy)
    is left for later: the others go on, and it is tried again every ``wait_seconds`` until
    done. So several of these (`train_in_workers`) share the work run by run, and one alone
    does it all in order."""
    selected = [e for e in EXPERIMENTS if e.measure is not None and only in (None, e.name)]
    planned = {}
    for experiment in selected:
        for run in experiment.runs(read_recipe(experiment.name, recipes)) if experiment.runs else []:
            planned.setdefault(run.run, run)
    _take_turns(list(planned.values()), PlannedRun.train, lambda planned: str(planned.run), log, wait_seconds)

    def measure(experiment):
        with _experiment_lock(output, experiment):
            log(f"{experiment.name}: measuring (cached pieces are reused) ...")
            results, save = _results(output, experiment)
            if not experiment.measure(read_recipe(experiment.name, recipes), results, True, save):
                raise ExperimentError(f"{experiment.name}: still incomplete after training; see the messages above")

    _take_turns(selected, measure, lambda experiment: experiment.name, log, wait_seconds)


def _take_turns(items: list, attempt, name, log, wait_seconds: float) -> None:
    """``attempt(item)`` for each item; one that raises RunBusy (another process holds it) is
    tried again after the others, every ``wait_seconds``, until none is left."""
    announced = set()
    while items:
        waiting = []
        for item in items:
            try:
                attempt(item)
            except RunBusy as busy:
                if name(item) not in announced:
                    log(f"{name(item)}: waiting, {busy}")
                    announced.add(name(item))
                waiting.append(item)
        items = waiting
        if items:
            time.sleep(wait_seconds)


def worker_command(only: str | None, output: Path) -> list[str]:
    """The command one worker of `train_in_workers` runs: `measure_all` in a Python process of its
    own (the parent renders the report and the README once they have all ended)."""
    return [sys.executable, "-c", "import sys; from translator.studies.experiments import work; sys.exit(work(*sys.argv[1:]))",
            str(output), only or ""]


def work(output: str, only: str = "") -> int:
    """A worker's `measure_all`; on Ctrl-C (the run saved, and said how to resume) exit status
    130 without a traceback."""
    try:
        measure_all(only or None, Path(output))
    except KeyboardInterrupt:
        return 130
    return 0


def train_in_workers(jobs: int, only: str | None, output: Path, log=print) -> None:
    """`measure_all` in ``jobs`` worker processes at once, each pinned to a CPU of its own when
    there are that many (as ``taskset -c N`` would; on 2 cores, two one-thread trainings finish
    sooner than two-thread ones in turn). Their output is relayed line by line, prefixed with
    the worker; a worker that fails raises ExperimentError once all have ended."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = len(cpus) >= jobs
    workers, relays = [], []
    for number in range(jobs):
        name = f"worker {number + 1}" + (f", CPU {cpus[number]}" if pinned else "")
        pin = (lambda cpu=cpus[number]: os.sched_setaffinity(0, {cpu})) if pinned else None
        # a process group of its own: Ctrl-C in a terminal reaches the parent alone, which passes
        # it on once (a second one would stop a worker at once, without saving)
        process = subprocess.Popen(worker_command(only, output), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, bufsize=1, preexec_fn=pin, process_group=0)

        def relay(process=process, name=name):
            for line in process.stdout:
                log(f"[{name}] {line.rstrip()}")

        relays.append(threading.Thread(target=relay, daemon=True))
        relays[-1].start()
        workers.append((name, process))

    def interrupt(number, frame):  # SIGINT (even when started in the background, where it is ignored) and SIGTERM
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [(name, process.wait()) for name, process in workers]
    except KeyboardInterrupt:
        for _, process in workers:  # each stops after its current step and saves its state
            process.send_signal(signal.SIGINT)
        for _, process in workers:
            process.wait()
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    for relay in relays:
        relay.join()
    if any(code == 130 for _, code in codes):  # stopped from outside: resumable, not failed
        raise KeyboardInterrupt
    failed = [f"{name} (exit status {code})" for name, code in codes if code != 0]
    if failed:
        raise ExperimentError(f"{', '.join(failed)} failed; the reason is in its output above. Finished pieces "
                              f"are kept: run the same command again to resume")


def training_summary(output: Path, recipes: Path = RECIPES) -> str:
    """One sentence: how much training the experiments' figures took, from each finished run's
    log.csv (a run two experiments share counts once) and the vanishing-gradients models'
    recorded times, and how many runs are still to train."""
    from translator.reports import read_log

    planned = {}
    for experiment in EXPERIMENTS:
        if experiment.runs is not None:
            for run in experiment.runs(read_recipe(experiment.name, recipes)):
                planned.setdefault(run.run, run)
    finished = [run for run in planned if (run / "model.keras").is_file() and (run / "log.csv").is_file()]
    seconds = sum(float(read_log(run)[-1]["train_seconds"]) for run in finished)
    vanishing = output / "results" / "vanishing-gradients.json"
    if vanishing.is_file():
        seconds += sum(json.loads(vanishing.read_text(encoding="utf-8")).get("train_seconds", {}).values())
    missing = len(planned) - len(finished)
    return (f"Training behind these figures: {len(finished)} of {len(planned)} runs and the vanishing-gradients "
            f"models, {seconds / 3600:.1f} hours in all, one core each (each run's log.csv; a run two experiments "
            f"share counts once)." + (f" Still to train: {missing} runs." if missing else ""))


def _write_report(path: Path, rows: list[dict], figures: dict, note: str = "") -> None:
    from translator.reports import png

    sections = []
    for row in rows:
        picture = (f'<img alt="{html.escape(row["name"])}" src="data:image/png;base64,{png(figures[row["name"]])}">'
                   if row["name"] in figures else "")
        sections.append(f"<h2>{html.escape(row['name'])}</h2><p><b>Claim</b> ({html.escape(row['seed'])}): "
                        f"{html.escape(row['claim'])}</p><p><b>Measured:</b> {html.escape(row['figure'])}</p>"
                        f"<p><b>Verdict:</b> {html.escape(row['verdict'])}</p>{picture}{row.get('html', '')}")
    atomic_write_text(path, "<!doctype html><html><head><meta charset=\"utf-8\"><title>What the seeds claim, "
                            "measured</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
                            "img{max-width:100%}</style></head><body><h1>What the seeds claim, measured</h1>"
                            f"<p>{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `translator experiments`. "
                            f"{html.escape(note)}</p>" + "".join(sections) + "</body></html>\n")


def markdown_table(rows: list[dict], note: str = "") -> str:
    lines = ["| experiment | seed | claim | our figure | verdict |", "|---|---|---|---|---|"]
    for row in rows:
        cells = [row["name"], row["seed"], row["claim"], row["figure"], row["verdict"]]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


def write_readme(readme: str | Path, rows: list[dict], note: str = "") -> None:
    replace_between(readme, README_START, README_END, markdown_table(rows, note), ExperimentError)
