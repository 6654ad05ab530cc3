"""Checkpoint averaging: one model whose weights are the mean of several epochs' weights.

    translator average --run runs/A --last 5            # -> runs/A-average-last5/
    translator average --run runs/A --best 3 --out runs/A-avg

Training keeps the weights of the last ``training.keep_checkpoints`` epochs (and of the best as
many by validation loss) in ``RUN/epochs/``; averaging them (as every NMT toolkit does, e.g.
fairseq's ``average_checkpoints.py``, Marian, OpenNMT) smooths the last steps of training. The
result is a run directory like any other (config, tokenizers, model.keras), so evaluate,
translate, export and serve take it; its ``averaged.json`` names the run and epochs it came from.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from translator.files import atomic_write_text

EPOCH_FILE = re.compile(r"epoch-(\d+)\.weights\.h5")


class AveragingError(ValueError):
    """The run has no such checkpoints (the message says what it has and how to get them)."""


def kept_epochs(run: Path) -> dict[int, Path]:
    """Epoch number -> weights file of every epoch the run kept."""
    directory = Path(run) / "epochs"
    found = {}
    for path in directory.glob("epoch-*.weights.h5"):
        match = EPOCH_FILE.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def choose_epochs(run: Path, last: int | None = None, best: int | None = None) -> list[int]:
    """The epochs to average: the ``last`` N kept, or the ``best`` N by validation loss."""
    from translator.reports import read_log

    run = Path(run)
    if (last is None) == (best is None):
        raise AveragingError("give one of --last N or --best N")
    count = last if last is not None else best
    kept = kept_epochs(run)
    log = read_log(run)
    if last is not None:
        chosen = [int(row["epoch"]) for row in log][-count:]
    else:
        losses = {int(row["epoch"]): float(row["validation_loss"]) for row in log if row.get("validation_loss")}
        chosen = sorted(sorted(losses, key=lambda epoch: (losses[epoch], epoch))[:count])
    missing = [epoch for epoch in chosen if epoch not in kept]
    if len(chosen) < count or missing:
        which = f"the last {count}" if last is not None else f"the best {count} by validation loss"
        raise AveragingError(
            f"{run} kept the weights of epochs {list(kept) or 'none'} ({run / 'epochs'}), not all of {which} "
            f"({chosen}{'' if len(chosen) == count else f', of {len(log)} trained'}); train with "
            f"training.keep_checkpoints: {count} or more (e.g. `translator train CONFIG --set "
            f"training.keep_checkpoints={count}`), or ask for fewer")
    return chosen


def average_weights(model, files: list[Path]) -> list:
    """The element-wise mean of the weights in ``files`` (loaded into ``model`` in turn), in
    float64 and cast back; weights that are not floating point (random-generator states) are the
    last file's."""
    import numpy as np

    sums = None
    for path in files:
        model.load_weights(path)
        values = [np.asarray(weight) for weight in model.get_weights()]
        if sums is None:
            sums = [value.astype(np.float64) if np.issubdtype(value.dtype, np.floating) else value
                    for value in values]
        else:
            sums = [total + value if np.issubdtype(value.dtype, np.floating) else value
                    for total, value in zip(sums, values)]
    reference = model.get_weights()
    return [(total / len(files)).astype(np.asarray(like).dtype) if np.issubdtype(np.asarray(like).dtype, np.floating)
            else total for total, like in zip(sums, reference)]


def average(run, last: int | None = None, best: int | None = None, out=None, log=print) -> Path:
    """Write the run of the averaged weights (default ``RUN-average-lastN`` / ``-bestN``) and
    return its directory."""
    import translator.models.seq2seq  # noqa: F401  (registers Seq2Seq's classes with Keras)
    from translator.models.runs import load_run, run_lock

    run = Path(run)
    epochs = choose_epochs(run, last, best)
    out = Path(out) if out else run.with_name(f"{run.name}-average-{'last' if last else 'best'}{last or best}")
    if out.resolve() == run.resolve():
        raise AveragingError(f"--out {out} is the run itself; averaging writes a new run, name another directory")
    config, model = load_run(run, "seq2seq")
    kept = kept_epochs(run)
    weights = average_weights(model, [kept[epoch] for epoch in epochs])
    model.set_weights(weights)
    with run_lock(out):
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.yaml", "data.json", "log.csv", "machines.txt"):
            if (run / name).is_file():
                shutil.copyfile(run / name, out / name)
        if (out / "tokenizers").exists():
            shutil.rmtree(out / "tokenizers")
        shutil.copytree(run / "tokenizers", out / "tokenizers")
        temporary = out / ".model.tmp.keras"
        model.save(temporary)
        temporary.replace(out / "model.keras")
        record = {"run": str(run), "epochs": epochs, "method": f"{'last' if last else 'best'} {last or best}"}
        atomic_write_text(out / "averaged.json", json.dumps(record, indent=2) + "\n")
    log(f"averaged the weights of epochs {', '.join(map(str, epochs))} of {run}: {out / 'model.keras'}")
    return out
