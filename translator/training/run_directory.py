"""A run directory's record of what it trains on: ``config.yaml``, a copy of the tokenizers
and ``data.json``, the data's fingerprint, which a resumed run must match (`check_same_data`).
`translator.training.trainer` trains in it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import yaml

from translator.config import validate
from translator.data.corpora import read_manifest
from translator.data.tokenizers import find_recipe
from translator.files import atomic_write_text, read_yaml


class TrainingError(RuntimeError):
    """Training cannot start or go on (the message says why and what to do)."""


def prepare_run_directory(config: dict, run: Path, chief: bool = True) -> tuple[dict, Path]:
    """Create (or check, when resuming) the run directory; copy the tokenizers into it. Returns
    the corpus manifest and the tokenizers' directory. Only the chief of a multi-worker run
    writes (``chief=False`` checks the same things); until the chief has written the run's
    config, the other workers read the tokenizers from the corpus, whence the chief copies them."""
    data = config["data"]
    corpus_dir, manifest = read_manifest(data["corpus"], data["work_dir"])
    expected = TASK_OF_MODEL[config["model"]["type"]]
    if manifest["task"] != expected:
        raise TrainingError(f"corpus {data['corpus']} is a {manifest['task']} corpus, but model.type "
                            f"'{config['model']['type']}' trains on a {expected} corpus; set data.corpus "
                            f"or model.type to match")
    init_from = config["training"]["init_from"]
    if init_from:  # fine-tuning: the parent's tokenizers (translator.training.fine_tuning)
        from translator.training import fine_tuning

        source = fine_tuning.parent_tokenizers(config)
    else:
        source = corpus_dir / "tokenizers" / find_recipe(data["corpus"], data["tokenizer"]).stem
    if not (source / "card.json").is_file():
        raise FileNotFoundError(f"{source}/card.json not found: run `translator tokenizers {data['corpus']}"
                                f"{' --recipe ' + data['tokenizer'] if data['tokenizer'] else ''}` first")
    saved_config = run / "config.yaml"
    if (run / "averaged.json").is_file():
        raise TrainingError(f"{run} is an averaged run (`translator average`, see its averaged.json): it has no "
                            f"training state to resume, and training would replace its model; train into "
                            f"another --run")
    if saved_config.is_file():
        previous = read_yaml(saved_config, TrainingError)
        previous = validate(previous, str(saved_config))  # keys added to the schema since: their defaults
        decoding_changed = previous["decoding"] != config["decoding"]
        previous["decoding"] = config["decoding"]  # decoding never changes training: the new one is taken
        if previous != config:
            changed = sorted(f"{section}.{key}" for section in config if isinstance(config[section], dict)
                             for key in config[section]
                             if previous.get(section, {}).get(key) != config[section][key])
            raise TrainingError(
                f"{run} holds a run with a different config (changed: {', '.join(changed) or 'name'}); "
                f"resuming it would mix two experiments. Use another RUN=, or delete {run} to start over."
            )
        if decoding_changed and chief:
            atomic_write_text(saved_config, yaml.safe_dump(config, sort_keys=False))
        check_same_data(run, corpus_dir, manifest, source, write=chief)
    elif not chief:
        return manifest, source
    else:
        unknown_rates = fine_tuning.check_unknown_rate(config, source) if init_from else None
        run.mkdir(parents=True, exist_ok=True)
        if (run / "tokenizers").exists():
            shutil.rmtree(run / "tokenizers")
        shutil.copytree(source, run / "tokenizers")
        atomic_write_text(run / "data.json", json.dumps(data_fingerprint(manifest, source), indent=2) + "\n")
        atomic_write_text(saved_config, yaml.safe_dump(config, sort_keys=False))
        if init_from:
            fine_tuning.record_parent(run, config, unknown_rates)
    return manifest, run / "tokenizers"


FINGERPRINT_VERSION = 2  # data.json's: 1 hashed every tokenizer setting but two added later (see below)


def data_fingerprint(manifest: dict, tokenizer_directory: Path) -> dict:
    """What a run trains on: the sha256 of every prepared file (from the corpus manifest, which
    the readers check the files against), and the tokenizers' vocabularies (their ``.vocab``
    files: the ``.model`` bytes also hold the temporary paths they were trained from, so a
    tokenizer trained again identically has other bytes) and settings, those at their default
    (`translator.data.tokenizers.RECIPE_DEFAULTS`) left out: a recipe key added later, at its
    default, leaves the fingerprint of a tokenizer trained again as it was."""
    from translator.data.tokenizers import RECIPE_DEFAULTS

    card = json.loads((tokenizer_directory / "card.json").read_text(encoding="utf-8"))
    settings = {name: value for name, value in card["settings"].items()
                if name not in RECIPE_DEFAULTS or value != RECIPE_DEFAULTS[name]}
    return _fingerprint(manifest, tokenizer_directory, settings)


def _fingerprint(manifest: dict, tokenizer_directory: Path, settings: dict, version: int = FINGERPRINT_VERSION):
    outputs = {name: recorded if isinstance(recorded, str) else recorded["sha256"]
               for name, recorded in manifest["outputs"].items()}
    tokenizers = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
                  for path in sorted(tokenizer_directory.glob("*.vocab"))}
    tokenizers["settings"] = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    fingerprint = {"corpus": manifest["corpus"], "prepared_files": outputs, "tokenizers": tokenizers}
    return {**fingerprint, "version": version} if version > 1 else fingerprint


def version_1_fingerprint(manifest: dict, tokenizer_directory: Path) -> dict:
    """The data.json of runs recorded before `FINGERPRINT_VERSION` 2 (2026-12-07): every
    tokenizer setting hashed but the two keys added after runs began recording, at their
    defaults. `check_same_data` compares an old record with it, then rewrites it as version 2."""
    card = json.loads((tokenizer_directory / "card.json").read_text(encoding="utf-8"))
    added_later = {"user_defined_symbols": [], "hard_vocab_limit": True}
    settings = {name: value for name, value in card["settings"].items()
                if not (name in added_later and value == added_later[name])}
    return _fingerprint(manifest, tokenizer_directory, settings, version=1)


def check_same_data(run: Path, corpus_dir: Path, manifest: dict, tokenizer_directory: Path,
                    write: bool = True) -> None:
    """Refuse to resume a run whose corpus or tokenizers changed since it started (``run/data.json``).
    ``write``: whether this process writes the run (the chief of a multi-worker run)."""
    path = run / "data.json"
    current = data_fingerprint(manifest, tokenizer_directory)
    if not path.is_file():  # a run started before runs recorded their data: from now on it does
        if write:
            atomic_write_text(path, json.dumps(current, indent=2) + "\n")
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))
    compared = current if recorded.get("version", 1) == FINGERPRINT_VERSION else \
        version_1_fingerprint(manifest, tokenizer_directory)

    def differing(part):
        before, now = recorded.get(part, {}), compared[part]
        return [name for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]

    changed = [str(corpus_dir / name) for name in differing("prepared_files")]
    changed += [f"tokenizer {name}" for name in differing("tokenizers")]
    if changed:
        raise TrainingError(
            f"{run} was trained on other data than {corpus_dir} holds now (changed since it started: "
            f"{', '.join(changed)}); resuming would continue on different data. Start a new run (--run "
            f"another directory), delete {run} to start over, or prepare the data as it was."
        )
    if compared is not current and write:  # the same data, recorded the old way: recorded anew
        atomic_write_text(path, json.dumps(current, indent=2) + "\n")


TASK_OF_MODEL = {"seq2seq": "translation", "language_model": "language_modeling", "classifier": "classification"}
