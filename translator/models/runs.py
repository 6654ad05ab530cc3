"""Run directories as the loaders see them: the config a run was trained with, the kind of
model it holds, and its model file, each checked before use.

Every loader (`Translator.load`, `LanguageModel.load`, `Classifier.load`, `translator
evaluate`) goes through here, so a missing run, a run of another kind, or a damaged
``model.keras`` gives one line that names the file and says what to do, never a traceback
from deep inside Keras.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from pathlib import Path

from translator.files import read_yaml

# model.type in a run's config -> the Keras classes its model.keras may hold, and how to use it
KINDS = {
    "seq2seq": (("Seq2Seq",), "a translation model", "translator translate --run {run}", "Translator.load"),
    "language_model": (("LanguageModel", "WindowLanguageModel"), "a language model",
                       "translator sample --run {run}", "LanguageModel.load"),
    "classifier": (("Classifier",), "a classifier", "translator classify --run {run}", "Classifier.load"),
}


# In an export directory (`translator export`, by default RUN/export): what the export holds
# (kind, beam sizes), read by `translator serve --export` and `translator translate --run`.
EXPORT_FILE = "export.json"


class RunError(ValueError):
    """A run directory or its model file cannot be used as asked (the message says why and what to do)."""


class RunBusy(RunError):
    """Another process holds a lock (`file_lock`): it is training or scoring that run, say."""


_HELD: dict[str, int] = {}  # the lock files this process holds, and how many times


def run_lock(run: str | Path):
    """Hold the lock of the run directory ``run`` (its file ``.lock``) while training or scoring
    it, so that two processes (the workers of `translator experiments --jobs 2`, or two commands
    typed by hand) never write one run at once: see `file_lock`."""
    return file_lock(Path(run) / ".lock", f"{run} is being trained or scored by another process")


@contextlib.contextmanager
def file_lock(path: str | Path, busy: str):
    """Hold an exclusive lock on the file ``path`` (created, with its directory, if missing).
    Raises RunBusy (``busy``, the holder's pid, how to go on) at once when another process holds
    it; re-entrant within a process. The operating system releases it when its process ends,
    however it ends, so a killed job leaves nothing to clean up."""
    import fcntl

    path = Path(path)
    key = str(path.absolute())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            raise RunBusy(f"{busy} (pid {holder}, lock {path}); wait for it to end, or stop it") from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(file, fcntl.LOCK_UN)


def read_run_config(run: str | Path) -> dict:
    """The ``config.yaml`` a run was trained with."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"run directory {run} not found: train it first (`translator train CONFIG --run {run}`)")
    path = run / "config.yaml"
    if not path.is_file():
        raise RunError(f"{path} not found: {run} is not a run directory made by `translator train` "
                       f"(or it was damaged); train the run again")
    config = read_yaml(path, RunError)
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) \
            or not isinstance(config.get("data"), dict):
        raise RunError(f"{path}: not a run config (it needs 'data' and 'model' sections); train the run again")
    return config


def check_run_kind(run: str | Path, config: dict, expected: str) -> None:
    """Raises RunError unless the run's ``model.type`` is ``expected``; the message names the
    kind the run holds and the command that uses it."""
    kind = config["model"].get("type", "seq2seq")
    if kind == expected:
        return
    if kind not in KINDS:
        raise RunError(f"{Path(run) / 'config.yaml'}: model.type '{kind}' is unknown; "
                       f"expected one of {', '.join(KINDS)}")
    _, wanted, _, loader = KINDS[expected]
    _, held, command, _ = KINDS[kind]
    raise RunError(f"{run} holds {held} (model.type: {kind}), not {wanted} as {loader} needs; "
                   f"use it with `{command.format(run=run)}`")


def load_model_file(path: str | Path, expected: tuple[str, ...] | None = None):
    """Load a ``.keras`` file in Keras safe mode (no arbitrary code), after checking that it is
    whole and holds one of the classes named ``expected`` (such as Seq2Seq or Classifier).
    TensorFlow is imported only once the file passed those checks. The model's classes must be
    registered with Keras: their module (`translator.models.seq2seq`, `language_models`, `classifiers`)
    is imported first, as every caller of this function is, or imports."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path} not found: train the run first (`translator train CONFIG --run {path.parent}`)")
    how_to_fix = ("train the run again, or restore the file (best.keras in the run directory holds the model "
                  "of the best epoch)")
    if not zipfile.is_zipfile(path):
        raise RunError(f"{path} is damaged: it is not a Keras model archive (cut short, or another kind "
                       f"of file, {path.stat().st_size:,} bytes); {how_to_fix}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # the first member whose checksum fails, if any
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as error:
        raise RunError(f"{path} is damaged ({error}); {how_to_fix}") from None
    if damaged is not None:
        raise RunError(f"{path} is damaged: its member {damaged} fails its checksum; {how_to_fix}")
    class_name = config.get("class_name") if isinstance(config, dict) else None
    if expected is not None and class_name not in expected:
        raise RunError(f"{path} holds a {class_name} model, not a {' or '.join(expected)}; load it with the "
                       f"class that matches its run's model.type")
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # noqa: BLE001 (Keras raises many kinds; each is the same problem here)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RunError(f"{path} could not be loaded ({type(error).__name__}: {reason}); {how_to_fix}") from None


def load_run(run: str | Path, kind: str, model_file: str = "model.keras"):
    """``(config, model)`` of a finished run whose config says ``model.type: kind``."""
    run = Path(run)
    config = read_run_config(run)
    check_run_kind(run, config, kind)
    return config, load_model_file(run / model_file, KINDS[kind][0])


def load_text_model(run: str | Path, kind: str):
    """The model of a finished language-model or classifier run, with its ``text`` tokenizer
    attached as ``model.tokenizer`` (for `LanguageModel.load` and `Classifier.load`)."""
    from translator.checks import check_path
    from translator.data.tokenizers import load_tokenizers

    check_path("run", run)
    _, model = load_run(run, kind)
    model.tokenizer = load_tokenizers(Path(run) / "tokenizers")["text"]
    return model
