"""Training: ``translator train CONFIG`` reads a prepared corpus, trains, and can always resume.

The run directory (``runs/NAME/``) holds everything the run needs and makes:

    config.yaml           the full config as used (defaults filled in)
    tokenizers/           copies of the tokenizer models and card (the run is self-contained)
    checkpoints/          the last training state: weights, optimizer, step, epoch, position
                          in the epoch, early-stopping and schedule state (tf.train.Checkpoint)
    best.keras            the model with the best validation score so far
    model.keras           the final model (the best one), loadable with Keras safe mode
    log.csv, tensorboard/ per-epoch figures, and per-step scalars for TensorBoard

Interrupting a run (Ctrl-C, ``kill -9``) loses at most ``checkpoint_every`` steps: the same
command continues from the last checkpoint, in the middle of an epoch if need be, with the
same batches in the same order as an uninterrupted run.

The loop is written out (a compiled step under ``strategy.run``) rather than ``model.fit``, so
that one code path serves a single device, ``MirroredStrategy`` and
``MultiWorkerMirroredStrategy`` (``model.fit`` fails under the latter in Keras 3,
keras-team/keras#20585), and so that resumption is exact. Each replica reads its own shard of
every global batch; with several workers only the chief writes the run directory, and every
worker resumes from the chief's checkpoints (``translator.training.distributed``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from translator.checks import check_non_negative_int, check_path
from translator.config import load_config
from translator.data.tokenizers import load_tokenizers
from translator.files import atomic_write_text
from translator.training.run_directory import (  # noqa: F401  (importable from here, as before)
    FINGERPRINT_VERSION,
    TASK_OF_MODEL,
    TrainingError,
    check_same_data,
    data_fingerprint,
    prepare_run_directory,
    version_1_fingerprint,
)
from translator.training.training_step import (  # noqa: F401
    learning_rate,
    make_strategy,
    make_training_step,
    moving_average_weights,
)

# ----------------------------------------------------------------------------- set-up


def _architecture(model: dict) -> str:
    """The recurrent cell, or for a window model (``window: N``) the MLP that replaces it."""
    return f"MLP over {model['window']} tokens" if model.get("window") else model["cell"]


# ----------------------------------------------------------------------------- schedule


# ----------------------------------------------------------------------------- tasks

def make_task(config: dict, tokenizers: dict, log=print):
    """The `translator.models.tasks.Task` of the config's ``model.type``."""
    kind = config["model"]["type"]
    if kind == "language_model":
        from translator.models.language_models import LanguageModelTask
        return LanguageModelTask(config, tokenizers, log)
    if kind == "classifier":
        from translator.models.classifiers import ClassificationTask
        return ClassificationTask(config, tokenizers, log)
    from translator.training.translation_task import TranslationTask
    return TranslationTask(config, tokenizers, log)


# ----------------------------------------------------------------------------- the step


# ----------------------------------------------------------------------------- the trainer

def _initial_state() -> dict:
    return {"epoch": 0, "batches_done": 0, "step": 0, "saves": 0, "best": None, "best_epoch": None,
            "epochs_without_improvement": 0, "plateau_wait": 0, "plateau_best": None,
            "learning_rate_factor": 1.0, "history": [], "finished": False, "train_seconds": 0.0}


@dataclasses.dataclass
class _Session:
    """What one training process holds while `Trainer.train` runs: the strategy and this
    process's role in it, the task, model, optimizer and checkpoints, the compiled steps, and
    ``state`` (counters, schedule, early stopping, history: what a checkpoint saves as JSON)."""

    strategy: object
    worker: object
    task: object
    model: object
    optimizer: object
    checkpoint: object
    manager: object
    scratch: object
    state_variable: object
    stop_signal: object
    batches_per_epoch: int
    total_steps: int
    evaluate_step: object
    unit: str  # of the throughput: tok/s, or ex/s for a classifier
    budget: float | None  # training.max_minutes in seconds
    state: dict = dataclasses.field(default_factory=_initial_state)
    train_step: object = None
    writer: object = None
    stop_requested: object = None  # a _StopRequest while the epochs run
    stopping: bool = False  # every worker stops after this step


class Trainer:
    """Trains one config into one run directory. ``Trainer(config_path, run).train()``; ``seed``
    overrides the config's ``training.seed``, ``overrides`` other keys (``"section.key=value"``,
    as ``translator train --set``). ``config_path`` may also be a validated config dict."""

    def __init__(self, config_path, run=None, log=print, seed=None, overrides=()):
        if isinstance(config_path, dict):
            self.config = copy.deepcopy(config_path)
        else:
            check_path("config_path", config_path)
            self.config = load_config(config_path, overrides)
        if seed is not None:  # `translator train CONFIG --seed N`: the same recipe, another seed
            self.config["training"]["seed"] = check_non_negative_int("seed", seed)
        if run is not None:
            check_path("run", run)
        self.run = Path(run or Path("runs") / self.config["name"])
        self.log = log
        self.chief = True  # whether this process writes the run directory (one worker of several does)

    def train(self) -> Path:
        """Train (or resume, or find finished) the run; return its model.keras. The phases, in
        order: `_set_up`, `_restore`, `_announce`, then per epoch `_run_epoch` and
        `_end_epoch`, and `_finish`."""
        config, settings = self.config, self.config["training"]
        if config["model"]["ensemble"] > 1:
            if settings["strategy"] == "multi_worker":
                raise TrainingError("model.ensemble trains its members one after another in one process, which "
                                    "training.strategy: multi_worker cannot; use default or mirrored")
            prepare_run_directory(config, self.run)
            return self._train_ensemble()
        session, manifest = self._set_up()
        self._restore(session)
        if session.state["finished"]:
            self.log(f"{self.run} has finished training; model: {self.run / 'model.keras'}")
            return self.run / "model.keras"
        self._announce(session, manifest)
        session.stop_requested = _StopRequest()
        try:
            while session.state["epoch"] < settings["epochs"]:
                sums, out_of_time = self._run_epoch(session)
                if self._end_epoch(session, sums, out_of_time):
                    break
        except KeyboardInterrupt:
            self.log(f"\ninterrupted at step {session.state['step']:,}; run the same command to resume from the "
                     f"last checkpoint")
            raise
        finally:
            session.stop_requested.restore()
            if session.scratch:
                from translator.training import distributed

                distributed.remove_scratch(session.scratch)
        return self._finish(session)

    # ------------------------------------------------------------------ the phases

    def _set_up(self):
        """The strategy, the run directory, the task's data, the model, the optimizer and the
        checkpoint manager; returns the session and the corpus manifest."""
        import keras
        import tensorflow as tf

        from translator.training import distributed

        config, settings = self.config, self.config["training"]
        # First: MultiWorkerMirroredStrategy sets up TensorFlow's collectives before any other op.
        strategy = make_strategy(settings["strategy"])
        worker = distributed.WorkerRole.of(strategy)
        manifest, tokenizer_directory = prepare_run_directory(config, self.run, chief=worker.chief)
        keras.utils.set_random_seed(settings["seed"])
        if settings["deterministic"]:
            tf.config.experimental.enable_op_determinism()
        task = make_task(config, load_tokenizers(tokenizer_directory), self.log)
        with strategy.scope():
            # mixed_bfloat16: bfloat16 compute, float32 weights (2-3x faster matmuls with AMX)
            model = task.build_model(settings["precision"])
            if settings["init_from"] and not tf.train.latest_checkpoint(self.run / "checkpoints"):
                from translator.training.fine_tuning import take_weights

                take_weights(model, Path(settings["init_from"]), config["model"]["type"], self.log)
            # training.ema_decay: Keras keeps an exponential moving average of the weights in the
            # optimizer (so a checkpoint holds it); validation and the saved models use it.
            optimizer = keras.optimizers.Adam(learning_rate=settings["learning_rate"],
                                              use_ema=settings["ema_decay"] is not None,
                                              ema_momentum=settings["ema_decay"] or 0.99)
            optimizer.build(model.trainable_variables)
            if optimizer.use_ema:  # Keras starts the averages at zero; they start at the weights (a
                # resumed run's checkpoint then restores them)
                for variable, average in zip(model.trainable_variables, optimizer._model_variables_moving_average):
                    average.assign(variable)
        # The training state (counters, early stopping, history) as JSON, and this process's stop
        # request: variables of this process alone, made outside the strategy's scope (a variable
        # made inside is broadcast from the chief to every worker, and collectives carry no strings).
        state_variable = tf.Variable("", dtype=tf.string, trainable=False)
        stop_signal = tf.Variable(0.0, trainable=False)
        # The dropout random state is part of the checkpoint too, so a resumed run draws the
        # same masks as an uninterrupted one (and so is a task's carried state, if any).
        seeds = [v for v in model.non_trainable_variables if "seed_generator" in v.path]
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, state=state_variable, seeds=seeds,
                                         task=task.checkpointed_variables())
        # Two kept, numbered by a save counter: a save never rewrites the checkpoint in use. Every
        # worker saves (TensorFlow's multi-worker guide), the chief into the run, the others into
        # a scratch directory deleted after each save; every worker resumes from the chief's.
        scratch = None if worker.chief else distributed.scratch_directory(self.run, worker)
        if scratch:
            distributed.remove_scratch(scratch)  # what a killed worker left
        manager = tf.train.CheckpointManager(checkpoint, scratch or self.run / "checkpoints", max_to_keep=2)
        batches_per_epoch = task.batches_per_epoch()
        session = _Session(
            strategy=strategy, worker=worker, task=task, model=model, optimizer=optimizer, checkpoint=checkpoint,
            manager=manager, scratch=scratch, state_variable=state_variable, stop_signal=stop_signal,
            batches_per_epoch=batches_per_epoch, total_steps=batches_per_epoch * settings["epochs"],
            evaluate_step=self._evaluation_step(model, task),
            unit="ex/s" if config["model"]["type"] == "classifier" else "tok/s",
            budget=None if settings["max_minutes"] is None else 60.0 * settings["max_minutes"])
        return session, manifest

    def _restore(self, session) -> None:
        """The state of the last checkpoint, if there is one (every worker reads the chief's)."""
        import tensorflow as tf

        from translator.training import distributed

        latest_checkpoint = tf.train.latest_checkpoint(self.run / "checkpoints")
        if latest_checkpoint:
            session.checkpoint.restore(latest_checkpoint).assert_existing_objects_matched()
            session.state = json.loads(session.state_variable.numpy().decode("utf-8"))
            self.log(f"resuming {self.run} from step {session.state['step']:,} (epoch {session.state['epoch'] + 1}, "
                     f"batch {session.state['batches_done']} of {session.batches_per_epoch})")
        elif self.config["training"]["init_from"] and session.worker.chief:  # fine-tuning: the parent on this data
            from translator.training.fine_tuning import record_start

            self.log(f"epoch 0 is {self.config['training']['init_from']}'s weights on {self.config['data']['corpus']}:")
            record_start(self.run, session.task.validate(session.model, session.evaluate_step, -1))
        distributed.check_same_start(session.strategy, self.run, session.state["step"])  # all workers alike

    def _announce(self, session, manifest: dict) -> None:
        """machines.txt (which machine trained which part: the results table names it) and the
        log's description of the data, the model and the strategy; the TensorBoard writer."""
        import tensorflow as tf

        from translator.machine import hardware
        from translator.models.seq2seq import count_parameters

        config, worker = self.config, session.worker
        if worker.chief:
            machine = hardware() if worker.count == 1 else f"{worker.count} workers, the chief on {hardware()}"
            with open(self.run / "machines.txt", "a", encoding="utf-8") as machines:
                machines.write(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\tfrom step "
                               f"{session.state['step']}\t{machine}\n")
        self.log(f"{config['name']}: {config['data']['corpus']} ({session.task.describe(manifest)}), "
                 f"{session.batches_per_epoch} batches per epoch")
        self.log(f"model: {config['model']['type']}, {count_parameters(session.model):,} parameters "
                 f"({_architecture(config['model'])}), strategy {config['training']['strategy']} "
                 f"({session.strategy.num_replicas_in_sync} replica(s)"
                 + (f", worker {worker.index} of {worker.count}{', the chief' if worker.chief else ''})"
                    if worker.count > 1 else ")"))
        session.writer = tf.summary.create_file_writer(str(self.run / "tensorboard")) if worker.chief \
            else tf.summary.create_noop_writer()
        self.chief = worker.chief
        self._total_steps = session.total_steps

    def _run_epoch(self, session) -> tuple[dict, bool]:
        """The batches of the current epoch (or what is left of it), checkpointing every
        ``checkpoint_every`` steps; raises KeyboardInterrupt after a stop request (the state
        saved). Returns this process's sums of the epoch (loss, tokens, its start time) and
        whether the time budget (training.max_minutes or max_steps) ran out."""
        import keras
        import tensorflow as tf

        from translator.training import distributed

        config, settings, state, task = self.config, self.config["training"], session.state, session.task
        epoch, unit = state["epoch"], session.unit
        if sys.stdout.isatty():
            progress = keras.utils.Progbar(session.batches_per_epoch, stateful_metrics=["loss", "lr", unit],
                                           unit_name="batch")
        else:  # a log file: Keras's bar would write every batch into it, colour codes included
            progress = _ProgressLines(session.batches_per_epoch, epoch, self.log)
        progress.update(state["batches_done"])
        loss_sum = token_sum = 0.0
        started = epoch_started = time.time()
        out_of_time = False
        task.start_epoch(epoch, state["batches_done"])
        dataset = session.strategy.distribute_datasets_from_function(
            lambda context, epoch=epoch, skip=state["batches_done"]:
            task.dataset(epoch, skip, *distributed.replica_shards(context)))
        if session.train_step is None:  # traced once, for any batch and sentence length
            session.train_step = make_training_step(config, session.model, session.optimizer, session.strategy,
                                                    dataset.element_spec, task, session.stop_signal)
        # A stop request (Ctrl-C, SIGTERM) is honoured at once in one process; with several workers,
        # after the step whose all-reduce told every worker of it, so that all stop at the same step.
        alone = session.worker.count == 1
        for batch in dataset:
            rate = learning_rate(config, state["step"] + 1, session.total_steps, state["learning_rate_factor"])
            session.optimizer.learning_rate.assign(rate)
            if session.stop_requested and not session.stop_signal.numpy():
                session.stop_signal.assign(1.0)
            batch_loss, batch_tokens, stop = (float(x) for x in session.train_step(*batch))
            session.stopping = stop > 0 or alone and bool(session.stop_requested)
            state["step"] += 1  # the counters move together, after the update
            state["batches_done"] += 1
            loss_sum += batch_loss
            token_sum += batch_tokens
            elapsed = time.time() - epoch_started
            progress.update(state["batches_done"], [("loss", loss_sum / token_sum), ("lr", rate),
                                                    (unit, token_sum / max(elapsed, 1e-9))])
            if state["step"] % 20 == 0:
                with session.writer.as_default(step=state["step"]):
                    tf.summary.scalar("train/loss", batch_loss / batch_tokens)
                    tf.summary.scalar("train/learning_rate", rate)
            if state["step"] % settings["checkpoint_every"] == 0 or session.stopping:
                state["train_seconds"] += time.time() - started
                started = time.time()
                self._save_state(session)
            if session.stopping:
                raise KeyboardInterrupt
            out_of_time = session.budget is not None and state["train_seconds"] + time.time() - started >= \
                session.budget
            out_of_time = out_of_time or settings["max_steps"] is not None and state["step"] >= settings["max_steps"]
            if out_of_time:
                break
        state["train_seconds"] += time.time() - started
        return {"loss_sum": loss_sum, "token_sum": token_sum, "started": epoch_started}, out_of_time

    def _end_epoch(self, session, sums: dict, out_of_time: bool) -> bool:
        """Validation, the log row, the best model, the schedule and early stopping; saves the
        state. Returns True when training ends here (early stopping or the time budget)."""
        import tensorflow as tf

        from translator.training import distributed

        config, settings, state = self.config, self.config["training"], session.state
        epoch = state["epoch"]
        row = {"epoch": epoch + 1, "step": state["step"], "train_seconds": round(state["train_seconds"], 1)}
        with moving_average_weights(session.model, session.optimizer):
            row.update(distributed.agree(session.strategy, session.task.validate(session.model, session.evaluate_step,
                                                                                 epoch)))
        row["learning_rate"] = float(learning_rate(config, max(state["step"], 1), session.total_steps,
                                                   state["learning_rate_factor"]))
        if sums["token_sum"]:  # figures of this process's part of the epoch (all of it unless resumed)
            row["train_loss"] = round(sums["loss_sum"] / sums["token_sum"], 5)
            row[f"train_{'tokens' if session.unit == 'tok/s' else 'examples'}_per_second"] = \
                round(sums["token_sum"] / max(time.time() - sums["started"], 1e-9))
        with session.writer.as_default(step=state["step"]):
            for key, value in row.items():
                if key.startswith("validation_") and value is not None:
                    tf.summary.scalar(f"validation/{key[len('validation_'):]}", value)
        with moving_average_weights(session.model, session.optimizer):
            stop = self._early_stop(state, row, session.model)
            if settings["keep_checkpoints"] and session.worker.chief:
                self._keep_epoch_weights(session.model, state["history"] + [row])
        state["epoch"] += 1
        state["batches_done"] = 0
        state["history"].append(row)
        if session.worker.chief:
            self._write_log(state["history"])
        if stop:
            self.log(f"early stopping: no improvement of {settings['early_stopping_metric']} "
                     f"for {settings['early_stopping_patience']} epoch(s)")
            return True
        if out_of_time:
            reached = f"training.max_steps {settings['max_steps']}" if settings["max_steps"] is not None and \
                state["step"] >= settings["max_steps"] else f"training.max_minutes {settings['max_minutes']}"
            self.log(f"time budget: {reached} reached")
            return True
        self._save_state(session)
        if session.stopping or session.worker.count == 1 and session.stop_requested:
            raise KeyboardInterrupt
        return False

    def _finish(self, session) -> Path:
        """model.keras (the best epoch's model), the final state; returns model.keras."""
        settings, state = self.config["training"], session.state
        best = self.run / "best.keras"
        if session.worker.chief:
            if not best.is_file():
                with moving_average_weights(session.model, session.optimizer):
                    self._save_model(session.model, best)
            shutil.copyfile(best, self.run / ".model.keras.tmp")
            os.replace(self.run / ".model.keras.tmp", self.run / "model.keras")
        state["finished"] = True
        self._save_state(session)
        self.model = session.model  # the trained weights, for a caller that wants them
        best_text = "no validation score" if state["best"] is None else \
            f"best {settings['early_stopping_metric']} {state['best']:.4f} (epoch {state['best_epoch']})"
        self.log(f"done: {state['step']:,} steps in {state['train_seconds'] / 60:.1f} min; {best_text}; "
                 f"model: {self.run / 'model.keras'}")
        return self.run / "model.keras"

    @staticmethod
    def _save_state(session) -> None:
        """A checkpoint of the weights, the optimizer and the state, numbered by a save counter."""
        from translator.training import distributed

        session.state["saves"] += 1
        session.state_variable.assign(json.dumps(session.state))
        session.manager.save(checkpoint_number=session.state["saves"])
        if session.scratch:
            distributed.remove_scratch(session.scratch)

    def _train_ensemble(self) -> Path:
        """``model.ensemble: N`` (classifiers): N models trained one after another into
        RUN/members/1..N, from seeds training.seed, +1, ..., so each has its own initialisation,
        dropout and batch order; then RUN/model.keras, a `Classifier` that averages their
        probabilities. Resumable: finished members are not trained again."""
        import keras

        from translator.models.classifiers import Classifier
        from translator.reports import read_log

        config, count = self.config, self.config["model"]["ensemble"]
        directories = [self.run / "members" / str(index + 1) for index in range(count)]
        members = []
        for index, directory in enumerate(directories):
            member = copy.deepcopy(config)
            member["model"]["ensemble"] = 1
            member["training"]["seed"] = config["training"]["seed"] + index
            member["name"] = f"{config['name']}-member-{index + 1}"
            self.log(f"ensemble member {index + 1} of {count} (seed {member['training']['seed']})")
            members.append(keras.saving.load_model(Trainer(member, directory, self.log).train()))
        self._save_model(Classifier.from_members(members), self.run / "model.keras")
        # The members' epochs (log.csv) and machines (machines.txt), for the report and the tables.
        self._write_log([{"member": index + 1, **row} for index, directory in enumerate(directories)
                         for row in read_log(directory)])
        atomic_write_text(self.run / "machines.txt", "".join(
            (directory / "machines.txt").read_text(encoding="utf-8") for directory in directories))
        self.log(f"done: an ensemble of {count} members; model: {self.run / 'model.keras'}")
        return self.run / "model.keras"

    # ------------------------------------------------------------------ compiled steps

    @staticmethod
    def _evaluation_step(model, task):
        import tensorflow as tf

        @tf.function(input_signature=task.signature)
        def evaluate_step(*batch):
            _, _, plain_sum, count = task.loss(model, batch, training=False)
            return plain_sum, count

        return evaluate_step

    # ------------------------------------------------------------------ epoch end

    def _early_stop(self, state, row, model) -> bool:
        """Track the best epoch (saving best.keras), the plateau schedule and early stopping."""
        settings = self.config["training"]
        metric = settings["early_stopping_metric"]
        value = row.get(metric)
        # Reduce-on-plateau follows the validation loss.
        if settings["schedule"] == "plateau":
            if state["plateau_best"] is None or row["validation_loss"] < state["plateau_best"] - 1e-4:
                state["plateau_best"], state["plateau_wait"] = row["validation_loss"], 0
            else:
                state["plateau_wait"] += 1
                if state["plateau_wait"] > settings["plateau_patience"]:
                    state["learning_rate_factor"] *= settings["plateau_factor"]
                    state["plateau_wait"] = 0
                    self.log(f"validation loss stalled: learning rate x{settings['plateau_factor']}")
        if value is None:
            return False
        better = state["best"] is None or (value < state["best"] if metric == "validation_loss" else value > state["best"])
        if better:
            if self.chief:
                self._save_model(model, self.run / "best.keras")  # the file first, then the state that names it
            state["best"], state["best_epoch"], state["epochs_without_improvement"] = value, row["epoch"], 0
            return False
        state["epochs_without_improvement"] += 1
        patience = settings["early_stopping_patience"]
        return bool(patience) and state["epochs_without_improvement"] >= patience

    def _keep_epoch_weights(self, model, history: list) -> None:
        """RUN/epochs/epoch-NNN.weights.h5 for this epoch (the last row of ``history``); of the
        files there, those of the last ``keep_checkpoints`` epochs and of the best as many by
        validation loss stay (`translator average --last N` / ``--best N`` read them)."""
        count = self.config["training"]["keep_checkpoints"]
        directory = self.run / "epochs"
        directory.mkdir(exist_ok=True)
        epoch = history[-1]["epoch"]
        temporary = directory / f".epoch-{epoch:03d}.tmp.weights.h5"
        model.save_weights(temporary)
        os.replace(temporary, epoch_weights_path(self.run, epoch))
        losses = {row["epoch"]: row.get("validation_loss", math.inf) for row in history}
        kept = set(sorted(losses)[-count:]) | set(sorted(losses, key=lambda e: (losses[e], e))[:count])
        for path in directory.glob("epoch-*.weights.h5"):
            if int(path.name[len("epoch-"):-len(".weights.h5")]) not in kept:
                path.unlink()

    @staticmethod
    def _save_model(model, path: Path):
        temporary = path.with_name(f".{path.stem}.tmp.keras")
        model.save(temporary)
        os.replace(temporary, path)

    def _write_log(self, history):
        keys = list(dict.fromkeys(k for row in history for k in row))
        lines = [",".join(keys)] + [",".join("" if row.get(k) is None else str(row[k]) for k in keys) for row in history]
        atomic_write_text(self.run / "log.csv", "\n".join(lines) + "\n")


def epoch_weights_path(run: Path, epoch: int) -> Path:
    """Where training keeps the weights of ``epoch`` (1-based) with ``training.keep_checkpoints``."""
    return Path(run) / "epochs" / f"epoch-{epoch:03d}.weights.h5"


class _ProgressLines:
    """Training progress when stdout is not a terminal (``make train > log``, CI, nohup): one
    plain line every `interval` seconds and one at the end of the epoch, where Keras's progress
    bar (which takes any Linux stdout for a terminal) would rewrite itself into the file at
    every batch."""

    def __init__(self, target: int, epoch: int, log, interval: float = 30.0):
        self.target, self.epoch, self.log, self.interval = target, epoch, log, interval
        self.last = time.time()

    def update(self, current: int, values=()):
        if current != self.target and time.time() - self.last < self.interval:
            return
        self.last = time.time()
        figures = "".join(f", {name} {value:,.0f}" if value >= 100 else f", {name} {value:.4g}"
                          for name, value in values)
        self.log(f"epoch {self.epoch + 1}: batch {current}/{self.target}{figures}")


class _StopRequest:
    """Turns SIGINT (Ctrl-C) and SIGTERM into a request the loop honours between batches, so the
    saved state always matches the weights. A second Ctrl-C interrupts at once."""

    def __init__(self):
        import signal
        import threading

        self.requested, self._previous = False, {}
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)

    def _handle(self, number, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this batch (state will be saved); press Ctrl-C again to stop now", flush=True)

    def __bool__(self):
        return self.requested

    def restore(self):
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)


def train(config_path, run=None) -> Path:
    """Train (or resume) the config into ``run`` (default ``runs/<config name>``); return model.keras."""
    return Trainer(config_path, run).train()


def train_if_missing(config_path, run: Path, seed: int | None = None) -> None:
    """Train (or resume) the config into ``run`` unless it has its model.keras, holding the run's
    lock (`run_lock`: RunBusy at once when another process trains or scores it) and printing
    the command that does the same by hand. Used by `make results` and `make experiments`."""
    from translator.models.runs import run_lock

    run = Path(run)
    with run_lock(run):
        if not (run / "model.keras").is_file():
            print(f"training: {train_command(config_path, run, seed)}", flush=True)
            Trainer(config_path, run, seed=seed).train()


def train_command(config_path, run: Path, seed: int | None = None) -> str:
    """The `translator train` command line that trains the config into ``run``."""
    return f"translator train {config_path}" + ("" if seed is None else f" --seed {seed}") + f" --run {run}"
