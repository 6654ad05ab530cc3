"""Fine-tuning: a new run that starts from a trained run's weights and keeps its tokenizers
(``translator train CONFIG --init-from RUN``, or ``training.init_from: RUN`` in the config).

The new run trains on the config's corpus (a new domain, a few thousand in-domain pairs) with
the config's training settings; its model section must be the parent's. The corpus is read with
the parent's tokenizers, so a corpus much of whose text they do not know (a new script, another
language) is refused with the figure: fine-tuning cannot learn pieces the vocabulary lacks. The
run records where it started in ``init_from.json``: the parent, the sha256 of its model file and
the validation loss and BLEU of the parent's weights on the new corpus (the run's epoch 0).
A resumed run continues from its own checkpoints; the parent is read once, at the start.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from translator.files import atomic_write_text

MAX_UNKNOWN_RATE = 0.01  # of the new corpus's pieces (either side) that the parent's tokenizers do not know
SAMPLE = 20_000  # training lines per side the unknown-piece rate is measured on


class FineTuningError(ValueError):
    """The parent run cannot start this run (the message says why and what to do)."""


def parent_tokenizers(config: dict) -> Path:
    """The tokenizers' directory of ``training.init_from``, checked: the parent is a finished run
    of the same model, and its tokenizers know the new corpus's text."""
    from translator.models.runs import read_run_config

    parent = Path(config["training"]["init_from"])
    theirs = read_run_config(parent)
    if not (parent / "model.keras").is_file():
        raise FineTuningError(f"training.init_from: {parent} has no model.keras (it has not finished training); "
                              f"finish it first (translator train ... --run {parent})")
    changed = sorted(key for key in set(config["model"]) | set(theirs["model"])
                     if config["model"].get(key) != theirs["model"].get(key))
    if changed:
        differences = ", ".join(f"model.{key}: {theirs['model'].get(key)!r} there, {config['model'].get(key)!r} here"
                                for key in changed)
        raise FineTuningError(f"training.init_from: {parent} has another model ({differences}); a fine-tuned run "
                              f"keeps the parent's model: use its model section (base: the parent's config)")
    return parent / "tokenizers"


def check_unknown_rate(config: dict, tokenizer_directory: Path) -> dict:
    """The share of unknown pieces in the new corpus's training split under the parent's
    tokenizers, per side; refuses a corpus above ``MAX_UNKNOWN_RATE``."""
    from translator.data.corpora import read_prepared_split
    from translator.data.tokenizers import load_tokenizers
    from translator.special_ids import UNK_ID

    data = config["data"]
    columns = read_prepared_split(data["corpus"], "train", data["work_dir"])
    rates = {}
    for side, tokenizer in load_tokenizers(tokenizer_directory).items():
        encoded = tokenizer.encode([line for line in columns[side][:SAMPLE] if line])
        pieces = sum(map(len, encoded))
        rates[side] = sum(ids.count(UNK_ID) for ids in encoded) / max(pieces, 1)
    worst = max(rates, key=rates.get)
    if rates[worst] > MAX_UNKNOWN_RATE:
        raise FineTuningError(
            f"training.init_from: {rates[worst]:.2%} of the {worst} pieces of corpus {data['corpus']} (its first "
            f"{SAMPLE:,} training lines) are unknown to {config['training']['init_from']}'s tokenizers (at most "
            f"{MAX_UNKNOWN_RATE:.0%} is accepted): fine-tuning cannot learn text its vocabulary lacks. Train a new "
            f"model with tokenizers of this corpus instead (translator tokenizers {data['corpus']})")
    return rates


def take_weights(model, parent: Path, kind: str, log=print) -> None:
    """Set ``model``'s weights to those of the parent's ``model.keras`` (a ``kind`` model of the
    same architecture)."""
    from translator.models.runs import load_run

    _, other = load_run(parent, kind)
    theirs, ours = other.get_weights(), model.get_weights()
    if [w.shape for w in theirs] != [w.shape for w in ours]:
        raise FineTuningError(f"training.init_from: {parent}'s weights have other shapes than this model's "
                              f"(its tokenizers or model differ); use the parent's config as the base")
    model.set_weights(theirs)
    log(f"starting from the weights of {parent} (fine-tuning)")


def record_parent(run: Path, config: dict, unknown_rates: dict) -> None:
    """``run/init_from.json`` as a fine-tuned run starts: the parent, its model's sha256 and the
    new corpus's unknown-piece rates under its tokenizers (``check_unknown_rate``)."""
    from translator.data.corpora import sha256_of

    parent = Path(config["training"]["init_from"])
    record = {"parent": str(parent), "parent_model_sha256": sha256_of(parent / "model.keras"),
              "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "unknown_rate_under_parent_tokenizers": {side: round(rate, 6) for side, rate in unknown_rates.items()}}
    atomic_write_text(run / "init_from.json", json.dumps(record, indent=2) + "\n")


def record_start(run: Path, row: dict) -> dict:
    """Add to ``run/init_from.json`` how the parent's weights score on the new corpus (``row``,
    the validation figures of epoch 0)."""
    path = run / "init_from.json"
    record = {**json.loads(path.read_text(encoding="utf-8")), **{f"{key}_at_start": value for key, value in row.items()}}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record
