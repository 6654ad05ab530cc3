"""The seeds' claims, one section each: the runs an experiment needs, how it measures them,
its summary and its figure. `translator.studies.experiments` lists them and runs them."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

from translator.files import atomic_write_text
from translator.models.runs import RunBusy

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "experiments"


class ExperimentError(ValueError):
    """An experiment cannot run as asked (the message says why and what to do)."""


@dataclass
class Experiment:
    """One claim and how it is measured. ``measure(recipe, results, train, save)`` fills in the
    ``results`` dict (saving it with ``save()`` after each piece, so that a run resumes) and
    returns True when every piece is there; ``summary(results, recipe)`` gives our figure and
    the verdict (holds / does not hold / mixed); ``plot(results, recipe)`` a matplotlib figure.
    ``html(results, recipe)``, if given, adds HTML of its own to the report; ``runs(recipe)``
    lists the training runs it needs, as `PlannedRun`s, so that workers can train them before
    anything is measured. An experiment without ``measure`` is listed as not implemented yet."""

    name: str
    seed: str
    claim: str
    measure: object = None
    summary: object = None
    plot: object = None
    html: object = None
    runs: object = None


@dataclass
class PlannedRun:
    """A training run an experiment needs: its config, its directory, the seed (None: the
    config's), and the runs that must be trained before it starts (one it initialises from)."""

    config: Path
    run: Path
    seed: int | None = None
    needs: tuple = ()

    def train(self) -> None:
        """Train the run (resuming it) unless it has its model; RunBusy when another process
        trains it, or when a run it needs is not trained yet."""
        from translator.training.trainer import train_if_missing

        for needed in self.needs:
            if not (needed / "model.keras").is_file():
                raise RunBusy(f"{self.run} starts from {needed}, which is not trained yet")
        train_if_missing(self.config, self.run, self.seed)


def recipe_path(path: str) -> Path:
    """A training config named in an experiment recipe: absolute, or relative to the repository."""
    path = Path(path)
    return path if path.is_absolute() else RECIPES.parent.parent / path


def planned_run(entry: dict, recipe: dict, seed: int | None = None, needs: tuple = ()) -> PlannedRun:
    """The run of a recipe entry ({config, ...}): ``RUNS_DIR/NAME`` (``runs_dir`` of the recipe,
    default runs/), or ``RUNS_DIR/NAME-seedN`` for one seed of several."""
    from translator.config import load_config

    path = recipe_path(entry["config"])
    name = load_config(path)["name"] + ("" if seed is None else f"-seed{seed}")
    return PlannedRun(path, Path(recipe.get("runs_dir", "runs")) / name, seed, needs)


# ----------------------------------------------------------------------------- 1, 2, 7: pairs of recipes

def paired_runs(recipe: dict) -> list[PlannedRun]:
    """The runs of ``requires``, then of each pair, seed and side; the pairs' runs need those of ``requires``."""
    required = [planned_run(entry, recipe, entry["seed"]) for entry in recipe.get("requires", [])]
    needs = tuple(planned.run for planned in required)
    return required + [planned_run(pair[side], recipe, seed, needs) for pair in recipe["pairs"]
                       for seed in recipe["seeds"] for side in ("baseline", "variant")]


def measure_paired_runs(recipe: dict, results: dict, train: bool, save) -> bool:
    """Every pair of recipe ``pairs`` ({baseline: {config, label}, variant: {config, label}}),
    one run per seed each (``RUNS_DIR/NAME-seedN``, trained when missing and ``train``, resumable
    as any run), scored on the test split with the recipe's decoding settings and compared seed
    by seed with paired bootstrap resampling (`translator compare`). Runs listed under
    ``requires`` ({config, seed}: one a variant starts from, say) are trained first."""
    from translator.decoding.evaluation import compare
    from translator.reports import read_log
    from translator.studies.results import scored_report

    def report(planned):
        return scored_report(planned.run, "test", train, {"config": str(planned.config), "path": planned.config},
                             planned.seed)

    complete = True
    for required in recipe.get("requires", []):
        if report(planned_run(required, recipe, required["seed"])) is None:
            return False
    for number, pair in enumerate(recipe["pairs"]):
        for seed in recipe["seeds"]:
            key = f"{number}/{seed}"
            if key in results.get("comparisons", {}):
                continue
            scored = {}
            for side in ("baseline", "variant"):
                planned = planned_run(pair[side], recipe, seed)
                found = report(planned)
                if found is None:
                    break
                scored[side] = (planned.run, {**{name: found["scores"][name]["score"]
                                                 for name in ("BLEU", "BLEU (lowercased)", "chrF")},
                                              "train_minutes": round(float(read_log(planned.run)[-1]["train_seconds"])
                                                                     / 60, 1)})
            if len(scored) < 2:
                complete = False
                continue
            compared = compare(scored["baseline"][0], scored["variant"][0], "test", recipe.get("samples", 1000))
            bleu = compared["systems"][scored["variant"][0].name]["BLEU"]
            results.setdefault("comparisons", {})[key] = {
                "baseline": scored["baseline"][1], "variant": scored["variant"][1],
                "bleu_difference": round(scored["variant"][1]["BLEU"] - scored["baseline"][1]["BLEU"], 2),
                "p_value": bleu["p_value"]}
            save()
    return complete


def summarize_paired_runs(results: dict, recipe: dict) -> tuple[str, str]:
    """Per pair: the mean BLEU difference (variant - baseline) and each seed's p-value. The
    verdict follows the recipe's ``expect``: ``better`` (the variant wins, significantly) or
    ``similar`` (no significant difference); a baseline below ``minimum_baseline_bleu_lowercased``
    makes the comparison one of unconverged models, and says so. Pairs whose verdicts differ
    make the claim's verdict "mixed", each pair's own written after its figure."""
    figures, verdicts = [], []
    for number, pair in enumerate(recipe["pairs"]):
        compared = [results["comparisons"][f"{number}/{seed}"] for seed in recipe["seeds"]]
        difference = sum(c["bleu_difference"] for c in compared) / len(compared)
        significant = [c["p_value"] is not None and c["p_value"] < 0.05 for c in compared]
        baselines = [c["baseline"]["BLEU (lowercased)"] for c in compared]
        p_values = ", ".join("-" if c["p_value"] is None else f"{c['p_value']:.3f}" for c in compared)
        minutes = {side: sum(c[side]["train_minutes"] for c in compared) / len(compared)
                   for side in ("baseline", "variant")}
        figures.append(f"{pair['variant']['label']} vs {pair['baseline']['label']}: {difference:+.2f} BLEU "
                       f"(p = {p_values}; baseline lowercased BLEU {', '.join(f'{b:.2f}' for b in baselines)}; "
                       f"training {minutes['variant']:.0f} vs {minutes['baseline']:.0f} min)")
        minimum = recipe.get("minimum_baseline_bleu_lowercased")
        if minimum is not None and min(baselines) < minimum:
            verdicts.append(f"not measured: the baseline reached {min(baselines):.2f} < {minimum} lowercased BLEU")
        elif recipe["expect"] == "better":
            verdicts.append("holds" if difference > 0 and all(significant) else
                            "does not hold" if difference <= 0 or not any(significant) else "mixed")
        else:
            verdicts.append("holds" if not any(significant) else "does not hold" if all(significant) else "mixed")
    if len(set(verdicts)) == 1:
        return "; ".join(figures), verdicts[0]
    # pairs that disagree: each pair's verdict goes with its figure, and the claim's is "mixed"
    figures = [f"{figure}: {verdict}" for figure, verdict in zip(figures, verdicts)]
    return "; ".join(figures), "mixed"


def plot_paired_runs(results: dict, recipe: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 0.9 + 0.8 * len(recipe["pairs"]) * 2))
    labels, position = [], 0
    for number, pair in enumerate(recipe["pairs"]):
        for side in ("baseline", "variant"):
            scores = [results["comparisons"][f"{number}/{seed}"][side]["BLEU"] for seed in recipe["seeds"]]
            axis.barh(position, sum(scores) / len(scores), color="#9ab" if side == "baseline" else "#c96")
            axis.plot(scores, [position] * len(scores), "k.")
            labels.append(pair[side]["label"])
            position += 1
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("BLEU on test2016 (bars: mean over seeds, dots: each seed)")
    return figure


# ----------------------------------------------------------------------------- 3. vanishing gradients

def measure_vanishing_gradients(recipe: dict, results: dict, train: bool, save) -> bool:
    """Per cell: accuracy on the first-token task at every distance (a model of its own each),
    and the gradient norms by distance (up to the longest) at initialisation and after training
    at ``gradients_after_training_at``."""
    import keras

    from translator.studies.gradient_flow import (
        first_token_task,
        gradient_norms_by_distance,
        task_classifier,
        train_on_first_token,
    )

    distances, symbols, seed = recipe["distances"], recipe["symbols"], recipe["seed"]
    if recipe["gradients_after_training_at"] not in distances:
        raise ExperimentError(f"vanishing-gradients: gradients_after_training_at is "
                              f"{recipe['gradients_after_training_at']}, not one of the distances {distances}")
    probe = first_token_task(256, max(distances), symbols, seed=seed + 7)  # the gradients' inputs
    complete = True
    for cell in recipe["cells"]:
        for distance in distances:
            key = f"{cell}/{distance}"
            if key in results.get("accuracy", {}):
                continue
            if not train:
                complete = False
                continue
            keras.utils.set_random_seed(seed)
            model = task_classifier(cell, symbols, recipe["units"], recipe["embedding_dim"])
            norms = results.setdefault("gradient_norms", {}).setdefault(cell, {})
            norms["initial"] = [float(x) for x in gradient_norms_by_distance(model, *probe)]
            started = time.time()
            accuracy = train_on_first_token(model, distance, symbols, recipe["examples"], recipe["epochs"],
                                            recipe["batch_size"], recipe["learning_rate"], seed)
            results.setdefault("train_seconds", {})[key] = round(time.time() - started, 1)
            if distance == recipe["gradients_after_training_at"]:
                norms["trained"] = [float(x) for x in gradient_norms_by_distance(model, *probe)]
            results.setdefault("accuracy", {})[key] = round(accuracy, 4)  # last: the piece is complete
            save()
    return complete


def summarize_vanishing_gradients(results: dict, recipe: dict) -> tuple[str, str]:
    """Our figure: how far each cell carries the first token (accuracy >= 90%), and how much of
    the gradient reaches back ``gradients_after_training_at`` steps; the verdict compares the
    simple RNN's reach with the gated cells'."""
    accuracy, norms, span = results["accuracy"], results["gradient_norms"], recipe["gradients_after_training_at"]
    reach = {cell: max([d for d in recipe["distances"] if accuracy[f"{cell}/{d}"] >= 0.9], default=0)
             for cell in recipe["cells"]}
    parts = [f"{cell} learns up to d={reach[cell]}, gradient at d={span} "
             f"{_relative_gradient(norms[cell]['initial'], span):.0e} of d=0's at initialisation, "
             f"{_relative_gradient(norms[cell]['trained'], span):.0e} trained" for cell in recipe["cells"]]
    gated = [reach[cell] for cell in recipe["cells"] if cell != "rnn"]
    verdict = "holds" if reach["rnn"] < min(gated) else "does not hold" if reach["rnn"] >= max(gated) else "mixed"
    return (f"distances {', '.join(map(str, recipe['distances']))}, chance {1 / recipe['symbols']:.0%}; "
            + "; ".join(parts)), verdict


def _relative_gradient(norms: list[float], distance: int) -> float:
    return norms[distance] / max(norms[0], 1e-30)


def plot_vanishing_gradients(results: dict, recipe: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for index, (cell, norms) in enumerate(results["gradient_norms"].items()):
        for stage, style in (("initial", "--"), ("trained", "-")):
            relative = [value / max(norms[stage][0], 1e-30) for value in norms[stage]]
            left.semilogy(range(len(relative)), relative, style, color=f"C{index}", label=f"{cell}, {stage}")
    left.set_xlabel("distance d (steps before the last)")
    left.set_ylabel("|dL/dx| relative to d = 0")
    left.set_title("gradient of the last step's loss by distance")
    left.legend(fontsize=8)
    for index, cell in enumerate(recipe["cells"]):
        distances = [d for d in recipe["distances"] if f"{cell}/{d}" in results["accuracy"]]
        right.plot(distances, [results["accuracy"][f"{cell}/{d}"] for d in distances], "o-", color=f"C{index}",
                   label=cell)
    right.axhline(1 / recipe["symbols"], color="grey", linestyle=":", label="chance")
    right.set_xscale("log")
    right.set_xlabel("distance d")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1.05)
    right.set_title("first token after d distractors")
    right.legend(fontsize=8)
    return figure


# ----------------------------------------------------------------------------- 4. sliding window

def measure_language_models(recipe: dict, results: dict, train: bool, save) -> bool:
    """Each of recipe ``models`` ({config, label}: language-model recipes), trained when missing
    and ``train``: its best validation loss (nats per token), parameters and training minutes."""
    from translator.models.language_models import LanguageModel
    from translator.models.seq2seq import count_parameters
    from translator.reports import read_log

    complete = True
    for entry in recipe["models"]:
        if entry["label"] in results.get("models", {}):
            continue
        _, _, run = _trained_run(entry, recipe, train)
        if run is None:
            complete = False
            continue
        log = read_log(run)
        results.setdefault("models", {})[entry["label"]] = {
            "run": str(run), "validation_loss": min(float(row["validation_loss"]) for row in log),
            "parameters": count_parameters(LanguageModel.load(run)),
            "train_minutes": round(float(log[-1]["train_seconds"]) / 60, 1)}
        save()
    return complete


def language_model_runs(recipe: dict) -> list[PlannedRun]:
    return [planned_run(entry, recipe) for entry in recipe["models"]]


def summarize_language_models(results: dict, recipe: dict) -> tuple[str, str]:
    models = results["models"]
    figure = "; ".join(f"{label}: {found['validation_loss']:.4f} nats/char ({found['parameters'] / 1e6:.2f}M "
                       f"parameters, {found['train_minutes']:.0f} min)" for label, found in models.items())
    baseline = models[recipe["baseline"]]["validation_loss"]
    others = [found["validation_loss"] for label, found in models.items() if label != recipe["baseline"]]
    verdict = "holds" if all(baseline < other for other in others) else \
        "does not hold" if all(baseline >= other for other in others) else "mixed"
    return figure, verdict


def plot_language_models(results: dict, recipe: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 0.8 + 0.5 * len(results["models"])))
    labels = list(results["models"])
    axis.barh(range(len(labels)), [results["models"][label]["validation_loss"] for label in labels],
              color=["#c96" if label == recipe["baseline"] else "#9ab" for label in labels])
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("best validation loss, nats per character (lower is better)")
    return figure


# ----------------------------------------------------------------------------- 5. translation as continuation

CONTINUATION_HOLDS, CONTINUATION_MIXED = 0.8, 0.4  # the language model's BLEU / the encoder-decoder's


def _trained_run(entry: dict, recipe: dict, train: bool):
    """``(config path, config, run)`` of a recipe entry ({config, label}), training the run when it
    has no model yet and ``train``; run is None when it is missing."""
    from translator.config import load_config

    planned = planned_run(entry, recipe)
    if not (planned.run / "model.keras").is_file():
        if not train:
            return planned.config, load_config(planned.config), None
        planned.train()  # RunBusy when another process trains it (another experiment may share it)
    return planned.config, load_config(planned.config), planned.run


def continuation_runs(recipe: dict) -> list[PlannedRun]:
    return [planned_run(recipe[side], recipe) for side in ("encoder_decoder", "language_model")]


def measure_continuation(recipe: dict, results: dict, train: bool, save) -> bool:
    """Both models trained (when missing and ``train``), each decoding the test split of
    ``test_corpus`` greedily: the encoder-decoder with `translator evaluate`, the language model
    by continuing after the separator (`translator.studies.continuation`); BLEU, parameters, minutes."""
    from translator.data.corpora import read_prepared_split, resolve_corpus
    from translator.decoding.evaluation import evaluate, score
    from translator.models.language_models import LanguageModel
    from translator.models.seq2seq import count_parameters
    from translator.reports import read_log
    from translator.studies.continuation import translate_by_continuing

    complete = True
    for side in ("encoder_decoder", "language_model"):
        if side in results.get("models", {}):
            continue
        _, config, run = _trained_run(recipe[side], recipe, train)
        if run is None:
            complete = False
            continue
        if side == "encoder_decoder":
            report = evaluate(run, "test", beam_size=1)
            bleu, parameters = report["scores"]["BLEU"]["score"], report["parameters"]
        else:
            model = LanguageModel.load(run)
            corpus = resolve_corpus(config["data"]["corpus"]).recipe
            test = read_prepared_split(recipe["test_corpus"], "test", config["data"]["work_dir"])
            hypotheses = translate_by_continuing(model, test["source"], corpus.separator, corpus.end)
            atomic_write_text(run / "translations" / "test-continued.txt", "".join(h + "\n" for h in hypotheses))
            bleu, parameters = score(hypotheses, test["target"])["BLEU"]["score"], count_parameters(model)
        results.setdefault("models", {})[side] = {
            "label": recipe[side]["label"], "run": str(run), "bleu": round(bleu, 2), "parameters": parameters,
            "train_minutes": round(float(read_log(run)[-1]["train_seconds"]) / 60, 1)}
        save()
    return complete


def summarize_continuation(results: dict, recipe: dict) -> tuple[str, str]:
    models = results["models"]
    figure = "; ".join(f"{found['label']}: {found['bleu']:.2f} BLEU greedy ({found['parameters'] / 1e6:.2f}M "
                       f"parameters, {found['train_minutes']:.0f} min)" for found in models.values())
    share = models["language_model"]["bleu"] / max(models["encoder_decoder"]["bleu"], 1e-9)
    verdict = "holds" if share >= CONTINUATION_HOLDS else "mixed" if share >= CONTINUATION_MIXED else "does not hold"
    return f"{figure}; the language model reaches {share:.0%} of the encoder-decoder's BLEU", verdict


# ----------------------------------------------------------------------------- 8. interpretable cells

CORRELATION_THAT_HOLDS = 0.5  # |r| a cell needs with a feature for the claim to hold


def measure_interpretable_cells(recipe: dict, results: dict, train: bool, save) -> bool:
    """The character language model of ``recipe["config"]`` (trained when missing and ``train``),
    read over the first ``characters`` of its validation text: for each feature of
    `translator.studies.cell_activations.text_features`, the best-correlated cell, and the first
    ``shown_characters`` coloured by it. Cached results of another run are measured again."""
    _, config, run = _trained_run({"config": recipe["config"]}, recipe, train)
    if run is None:
        return False
    if "cells" in results and results["run"] == str(run):
        return True
    from translator.data.corpora import read_prepared_split
    from translator.models.language_models import LanguageModel
    from translator.studies.cell_activations import (
        best_cells,
        cell_activations,
        coloured_html,
        text_features,
    )

    model = LanguageModel.load(run)
    text = read_prepared_split(config["data"]["corpus"], "validation", config["data"]["work_dir"])["text"][0]
    text = text[:recipe["characters"]]
    ids = model.tokenizer.encode([text])[0]
    if len(ids) != len(text):
        raise ExperimentError(f"interpretable-cells: {run}'s tokenizer is not one piece per character "
                              f"({len(ids)} pieces for {len(text)} characters); use a character-level run")
    activations = cell_activations(model, ids)
    cells = best_cells(activations, text_features(text))
    shown = recipe["shown_characters"]
    results.update({"run": str(run), "characters": len(text), "cells": cells,
                    "html": {name: coloured_html(text[:shown], activations[:shown, found["cell"]])
                             for name, found in cells.items()}})
    save()
    return True


def interpretable_cells_runs(recipe: dict) -> list[PlannedRun]:
    return [planned_run({"config": recipe["config"]}, recipe)]


def summarize_interpretable_cells(results: dict, recipe: dict) -> tuple[str, str]:
    cells = results["cells"]
    figure = "; ".join(f"{name.replace('_', ' ')}: cell {found['cell']}, r = {found['correlation']:+.2f}"
                       for name, found in cells.items())
    strongest = max(abs(found["correlation"]) for found in cells.values())
    verdict = "holds" if strongest >= CORRELATION_THAT_HOLDS else \
        "mixed" if strongest >= CORRELATION_THAT_HOLDS / 2 else "does not hold"
    return f"{figure} (in {results['run']}, over {results['characters']:,} validation characters)", verdict


def html_interpretable_cells(results: dict, recipe: dict) -> str:
    return "".join(f"<h3>{html.escape(name.replace('_', ' '))}: cell {results['cells'][name]['cell']} "
                   f"(r = {results['cells'][name]['correlation']:+.2f})</h3>{page}"
                   for name, page in results["html"].items())
