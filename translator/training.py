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
worker resumes from the chief's checkpoints (``translator.distributed``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from translator.batching import TranslationBatches
from translator.checks import check_non_negative_int, check_path
from translator.config import load_config, validate
from translator.corpora import read_manifest, read_prepared_split
from translator.files import atomic_write_text, read_yaml
from translator.special_ids import PAD_ID
from translator.tokenizers import find_recipe, load_tokenizers


class TrainingError(RuntimeError):
    """Training cannot start or go on (the message says why and what to do)."""


# ----------------------------------------------------------------------------- set-up

def make_strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":  # every local GPU; without one, every logical CPU device
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":  # workers and their roles come from the TF_CONFIG variable
        from translator.distributed import check_tf_config

        check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


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
    recipe = find_recipe(data["corpus"], data["tokenizer"])
    source = corpus_dir / "tokenizers" / recipe.stem
    if not (source / "card.json").is_file():
        raise FileNotFoundError(f"{source}/card.json not found: run `translator tokenizers {data['corpus']}"
                                f"{' --recipe ' + data['tokenizer'] if data['tokenizer'] else ''}` first")
    saved_config = run / "config.yaml"
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
        check_same_data(run, corpus_dir, data_fingerprint(manifest, source), write=chief)
    elif not chief:
        return manifest, source
    else:
        run.mkdir(parents=True, exist_ok=True)
        if (run / "tokenizers").exists():
            shutil.rmtree(run / "tokenizers")
        shutil.copytree(source, run / "tokenizers")
        atomic_write_text(run / "data.json", json.dumps(data_fingerprint(manifest, source), indent=2) + "\n")
        atomic_write_text(saved_config, yaml.safe_dump(config, sort_keys=False))
    return manifest, run / "tokenizers"


def data_fingerprint(manifest: dict, tokenizer_directory: Path) -> dict:
    """What a run trains on: the sha256 of every prepared file (from the corpus manifest, which
    the readers check the files against), and the tokenizers' settings and vocabularies (their
    ``.vocab`` files: the ``.model`` bytes also hold the temporary paths they were trained from,
    so a tokenizer trained again identically has other bytes)."""
    outputs = {name: recorded if isinstance(recorded, str) else recorded["sha256"]
               for name, recorded in manifest["outputs"].items()}
    card = json.loads((tokenizer_directory / "card.json").read_text(encoding="utf-8"))
    tokenizers = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
                  for path in sorted(tokenizer_directory.glob("*.vocab"))}
    tokenizers["settings"] = hashlib.sha256(json.dumps(card["settings"], sort_keys=True).encode()).hexdigest()
    return {"corpus": manifest["corpus"], "prepared_files": outputs, "tokenizers": tokenizers}


def check_same_data(run: Path, corpus_dir: Path, current: dict, write: bool = True) -> None:
    """Refuse to resume a run whose corpus or tokenizers changed since it started (``run/data.json``).
    ``write``: whether this process writes the run (the chief of a multi-worker run)."""
    path = run / "data.json"
    if not path.is_file():  # a run started before runs recorded their data: from now on it does
        if write:
            atomic_write_text(path, json.dumps(current, indent=2) + "\n")
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))
    def differing(part):
        before, now = recorded.get(part, {}), current[part]
        return [name for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]

    changed = [str(corpus_dir / name) for name in differing("prepared_files")]
    changed += [f"tokenizer {name}" for name in differing("tokenizers")]
    if changed:
        raise TrainingError(
            f"{run} was trained on other data than {corpus_dir} holds now (changed since it started: "
            f"{', '.join(changed)}); resuming would continue on different data. Start a new run (--run "
            f"another directory), delete {run} to start over, or prepare the data as it was."
        )


def read_pairs(config: dict, split: str, tokenizers: dict, limit_length: bool):
    """Tokenized (source, target) id lists of a prepared split."""
    data = config["data"]
    columns = read_prepared_split(data["corpus"], split, data["work_dir"])
    sources = tokenizers["source"].encode(columns["source"])
    targets = tokenizers["target"].encode(columns["target"])
    if limit_length:  # long training pairs are skipped, never truncated
        keep = [i for i in range(len(sources)) if 0 < len(sources[i]) <= data["max_source_length"]
                and 0 < len(targets[i]) <= data["max_target_length"]]
        sources, targets = [sources[i] for i in keep], [targets[i] for i in keep]
    return sources, targets, columns


# ----------------------------------------------------------------------------- schedule

def learning_rate(config: dict, step: int, total_steps: int, factor: float) -> float:
    """The learning rate at ``step`` (1-based): linear warm-up, then the configured schedule."""
    settings = config["training"]
    base, warmup = settings["learning_rate"], settings["warmup_steps"]
    if warmup and step <= warmup:
        return base * step / warmup
    schedule = settings["schedule"]
    if schedule == "inverse_sqrt":
        rate = base * math.sqrt(max(warmup, 1) / step)
    elif schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        rate = settings["min_learning_rate"] + 0.5 * (base - settings["min_learning_rate"]) * (1 + math.cos(math.pi * progress))
    else:  # constant, or plateau (whose factor shrinks when validation loss stalls)
        rate = base
    return max(rate * factor, settings["min_learning_rate"] if schedule == "plateau" else 0.0)


# ----------------------------------------------------------------------------- tasks

class TranslationTask:
    """What `Trainer` needs to know about one kind of model (here: Seq2Seq translation).

    A task reads its data, builds its model, gives the loss of a batch and the validation
    figures of an epoch; the trainer owns everything else (schedule, checkpoints, resumption,
    early stopping, logs). `translator.language_models.LanguageModelTask` and
    `translator.classifiers.ClassificationTask` are the other two.
    """

    signature = None  # set in __init__: the TensorSpecs of one batch

    def __init__(self, config: dict, tokenizers: dict, log=print):
        import tensorflow as tf

        self.config, self.tokenizers, self.log = config, tokenizers, log
        self.signature = [tf.TensorSpec([None, None], tf.int32)] * 3
        settings = config["training"]
        sources, targets, _ = read_pairs(config, "train", tokenizers, limit_length=True)
        self.validation_sources, validation_targets, self.validation_columns = read_pairs(
            config, "validation", tokenizers, limit_length=False)
        self.train_batches = TranslationBatches(sources, targets, settings["batch_tokens"],
                                                settings["max_batch_size"], settings["seed"])
        self.validation_batches = TranslationBatches(self.validation_sources, validation_targets,
                                                     settings["batch_tokens"], settings["max_batch_size"], 0)

    def batches_per_epoch(self) -> int:
        return len(self.train_batches.batches(0))

    def dataset(self, epoch: int, skip: int, shards: int = 1, shard_ids=(0,)):
        return self.train_batches.dataset(epoch, skip, shards, shard_ids)

    def describe(self, manifest: dict) -> str:
        return (f"{manifest['source_language']} -> {manifest['target_language']}, {len(self.train_batches):,} "
                f"training pairs, target padding {self.train_batches.padding_fraction():.1%}")

    def build_model(self, dtype: str):
        from translator.models import Seq2Seq

        model = Seq2Seq.from_settings(self.model_settings(), self.tokenizers["source"].vocabulary_size,
                                      self.tokenizers["target"].vocabulary_size, dtype=dtype)
        settings = self.config["training"]
        if settings["initialize_encoder_from"]:
            take_encoder_of_run(model, settings["initialize_encoder_from"], self.tokenizers["source"],
                                settings["freeze_encoder"], self.log)
        from translator.search import GreedyTranslator
        self.greedy = GreedyTranslator(model)
        return model

    def model_settings(self) -> dict:
        settings = dict(self.config["model"])
        for not_a_seq2seq_argument in ("type", "pooling", "ensemble", "window"):
            settings.pop(not_a_seq2seq_argument, None)
        return settings

    def start_epoch(self, epoch: int, batches_done: int) -> None:
        """Called before the first batch of every epoch (or of what is left of it)."""

    def checkpointed_variables(self) -> list:
        return []

    def loss(self, model, batch, training: bool):
        """(objective sum, objective count, reported loss sum, reported count) of one batch:
        the gradient follows objective sum / count; the log reports the plain cross-entropy."""
        import tensorflow as tf

        from translator.models import sequence_loss

        source, target_input, target_output = batch
        real = tf.not_equal(target_output, PAD_ID)  # logits for the real target tokens only
        logits = model((source, target_input), training=training, output_mask=real)
        targets = tf.boolean_mask(target_output, real)
        smoothing = self.config["training"]["label_smoothing"] if training else 0.0
        objective_sum, count = sequence_loss(logits, targets, smoothing)
        plain_sum = sequence_loss(logits, targets, 0.0)[0] if smoothing else objective_sum
        return objective_sum, count, plain_sum, count

    def validate(self, model, evaluate_step, epoch: int) -> dict:
        settings = self.config["training"]
        loss_sum = token_sum = 0.0
        for batch in self.validation_batches.epoch(0):
            batch_loss, batch_tokens = evaluate_step(*batch)
            loss_sum += float(batch_loss)
            token_sum += float(batch_tokens)
        validation_loss = loss_sum / token_sum
        row = {"validation_loss": round(validation_loss, 5),
               "validation_perplexity": round(math.exp(min(validation_loss, 50)), 3)}
        message = f"validation loss {validation_loss:.4f} (perplexity {row['validation_perplexity']:.2f})"
        if settings["bleu_every"] and (epoch + 1) % settings["bleu_every"] == 0:
            row["validation_bleu"] = round(self._validation_bleu(), 3)
            count = min(settings["bleu_sentences"], len(self.validation_sources))
            message += f", BLEU {row['validation_bleu']:.2f} on {count} sentences (greedy)"
        self.log(f"epoch {epoch + 1}: {message}")
        return row

    def _validation_bleu(self) -> float:
        import sacrebleu

        from translator.batching import pad

        sources = self.validation_sources
        count = min(self.config["training"]["bleu_sentences"], len(sources))
        order = np.argsort([len(s) for s in sources[:count]], kind="stable")
        hypotheses = [""] * count
        for start in range(0, count, 128):
            indices = order[start:start + 128]
            outputs = self.greedy(pad([sources[i] for i in indices]))
            for index, ids in zip(indices, outputs):
                hypotheses[index] = self.tokenizers["target"].decode(ids)
        return sacrebleu.corpus_bleu(hypotheses, [self.validation_columns["target"][:count]]).score


def take_encoder_of_run(model, run, source_tokenizer, freeze: bool, log=print) -> None:
    """Start ``model``'s source embedding and encoder from those of the trained run ``run``,
    whose source tokenizer must have the same pieces as ``source_tokenizer``."""
    from translator.runs import load_run

    _, other = load_run(run, "seq2seq")
    theirs = load_tokenizers(Path(run) / "tokenizers")["source"]
    pieces = lambda tokenizer: [tokenizer.id_to_piece(i) for i in range(tokenizer.vocabulary_size)]  # noqa: E731
    if pieces(theirs) != pieces(source_tokenizer):
        raise TrainingError(f"training.initialize_encoder_from: {run}'s source tokenizer ({theirs.model_file}) has "
                            f"other pieces than this run's ({source_tokenizer.model_file}); the encoder reads token "
                            f"ids, so both runs need the same source tokenizer")
    try:
        model.take_encoder(other, freeze=freeze)
    except ValueError as error:
        raise TrainingError(f"training.initialize_encoder_from: {run}: {error}") from None
    log(f"source embedding and encoder from {run}" + (" (frozen: only the decoder trains)" if freeze else ""))


def make_task(config: dict, tokenizers: dict, log=print):
    kind = config["model"]["type"]
    if kind == "language_model":
        from translator.language_models import LanguageModelTask
        return LanguageModelTask(config, tokenizers, log)
    if kind == "classifier":
        from translator.classifiers import ClassificationTask
        return ClassificationTask(config, tokenizers, log)
    return TranslationTask(config, tokenizers, log)


TASK_OF_MODEL = {"seq2seq": "translation", "language_model": "language_modeling", "classifier": "classification"}

# ----------------------------------------------------------------------------- the step

def make_training_step(config: dict, model, optimizer, strategy, element_spec, task, stop_signal=None):
    """The compiled training step: the task's loss, gradients all-reduced over replicas, the
    global norm clipped, one optimizer update. Returns ``train_step(*batch) -> (loss sum, count,
    stop)``: ``stop`` is positive when any replica's ``stop_signal`` variable (a stop request,
    e.g. Ctrl-C, in that process) is, so that all workers stop after the same step."""
    import tensorflow as tf

    settings = config["training"]
    clip = settings["clip_norm"]
    variables = model.trainable_variables
    replicas = strategy.num_replicas_in_sync

    def replica_train(*batch):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            objective_sum, objective_count, plain_sum, count = task.loss(model, batch, training=True)
            stop = tf.zeros([]) if stop_signal is None else tf.identity(stop_signal)  # a read, on this replica
            global_count, stop = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                                    [tf.cast(objective_count, tf.float32), stop])
            loss = objective_sum / tf.maximum(global_count, 1e-9)
        gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]  # dense embeddings
        # Sum the gradients of all replicas and clip the global gradient (as on one device);
        # the optimizer sums replicas once more, hence the division.
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        if clip:
            gradients, _ = tf.clip_by_global_norm(gradients, clip)
        optimizer.apply([g / replicas for g in gradients], variables)
        # What the loss reports is the plain cross-entropy, comparable across settings.
        return plain_sum, count, stop

    jit = settings["jit_compile"]

    @tf.function(input_signature=list(element_spec))
    def train_step(*batch):
        results = strategy.run(tf.function(replica_train, jit_compile=jit) if jit else replica_train, args=batch)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    return train_step


# ----------------------------------------------------------------------------- the trainer

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
        import keras
        import tensorflow as tf

        from translator import distributed
        from translator.machine import hardware
        from translator.models import count_parameters

        config, settings = self.config, self.config["training"]
        if config["model"]["ensemble"] > 1:
            if settings["strategy"] == "multi_worker":
                raise TrainingError("model.ensemble trains its members one after another in one process, which "
                                    "training.strategy: multi_worker cannot; use default or mirrored")
            prepare_run_directory(config, self.run)
            return self._train_ensemble()
        # First: MultiWorkerMirroredStrategy sets up TensorFlow's collectives before any other op.
        strategy = make_strategy(settings["strategy"])
        worker = distributed.WorkerRole.of(strategy)
        manifest, tokenizer_directory = prepare_run_directory(config, self.run, chief=worker.chief)
        keras.utils.set_random_seed(settings["seed"])
        if settings["deterministic"]:
            tf.config.experimental.enable_op_determinism()
        tokenizers = load_tokenizers(tokenizer_directory)
        task = make_task(config, tokenizers, self.log)
        batches_per_epoch = task.batches_per_epoch()
        total_steps = batches_per_epoch * settings["epochs"]

        with strategy.scope():
            # mixed_bfloat16: bfloat16 compute, float32 weights (2-3x faster matmuls with AMX)
            model = task.build_model(settings["precision"])
            optimizer = keras.optimizers.Adam(learning_rate=settings["learning_rate"])
            optimizer.build(model.trainable_variables)
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
        latest_checkpoint = tf.train.latest_checkpoint(self.run / "checkpoints")
        state = {"epoch": 0, "batches_done": 0, "step": 0, "saves": 0, "best": None, "best_epoch": None,
                 "epochs_without_improvement": 0, "plateau_wait": 0, "plateau_best": None,
                 "learning_rate_factor": 1.0, "history": [], "finished": False, "train_seconds": 0.0}
        if latest_checkpoint:
            checkpoint.restore(latest_checkpoint).assert_existing_objects_matched()
            state = json.loads(state_variable.numpy().decode("utf-8"))
            self.log(f"resuming {self.run} from step {state['step']:,} (epoch {state['epoch'] + 1}, "
                     f"batch {state['batches_done']} of {batches_per_epoch})")
        distributed.check_same_start(strategy, self.run, state["step"])  # one worker of several: all alike
        if state["finished"]:
            self.log(f"{self.run} has finished training; model: {self.run / 'model.keras'}")
            return self.run / "model.keras"
        # Which machine trained which part: the results table names the hardware from this file.
        if worker.chief:
            machine = hardware() if worker.count == 1 else f"{worker.count} workers, the chief on {hardware()}"
            with open(self.run / "machines.txt", "a", encoding="utf-8") as machines:
                machines.write(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\tfrom step {state['step']}\t"
                               f"{machine}\n")
        parameters = count_parameters(model)
        self.log(f"{config['name']}: {config['data']['corpus']} ({task.describe(manifest)}), "
                 f"{batches_per_epoch} batches per epoch")
        self.log(f"model: {config['model']['type']}, {parameters:,} parameters ({config['model']['cell']}), "
                 f"strategy {settings['strategy']} ({strategy.num_replicas_in_sync} replica(s)"
                 + (f", worker {worker.index} of {worker.count}{', the chief' if worker.chief else ''})"
                    if worker.count > 1 else ")"))

        train_step, evaluate_step = None, self._evaluation_step(model, task)
        writer = tf.summary.create_file_writer(str(self.run / "tensorboard")) if worker.chief \
            else tf.summary.create_noop_writer()
        self.chief = worker.chief

        self._total_steps = total_steps

        def save_state():
            state["saves"] += 1
            state_variable.assign(json.dumps(state))
            manager.save(checkpoint_number=state["saves"])
            if scratch:
                distributed.remove_scratch(scratch)

        # A stop request (Ctrl-C, SIGTERM) is honoured at once in one process; with several workers,
        # after the step whose all-reduce told every worker of it, so that all stop at the same step.
        stop_requested, stopping, alone = _StopRequest(), False, worker.count == 1
        budget = None if settings["max_minutes"] is None else 60.0 * settings["max_minutes"]
        out_of_time = False
        unit = "tok/s" if config["model"]["type"] != "classifier" else "ex/s"
        try:
            while state["epoch"] < settings["epochs"]:
                epoch = state["epoch"]
                if sys.stdout.isatty():
                    progress = keras.utils.Progbar(batches_per_epoch, stateful_metrics=["loss", "lr", unit],
                                                   unit_name="batch")
                else:  # a log file: Keras's bar would write every batch into it, colour codes included
                    progress = _ProgressLines(batches_per_epoch, epoch, self.log)
                progress.update(state["batches_done"])
                loss_sum = token_sum = 0.0
                started = epoch_started = time.time()
                task.start_epoch(epoch, state["batches_done"])
                dataset = strategy.distribute_datasets_from_function(
                    lambda context, epoch=epoch, skip=state["batches_done"]:
                    task.dataset(epoch, skip, *distributed.replica_shards(context)))
                if train_step is None:  # traced once, for any batch and sentence length
                    train_step = make_training_step(config, model, optimizer, strategy, dataset.element_spec, task,
                                                    stop_signal)
                for batch in dataset:
                    rate = learning_rate(config, state["step"] + 1, total_steps, state["learning_rate_factor"])
                    optimizer.learning_rate.assign(rate)
                    if stop_requested and not stop_signal.numpy():
                        stop_signal.assign(1.0)
                    batch_loss, batch_tokens, stop = (float(x) for x in train_step(*batch))
                    stopping = stop > 0 or alone and bool(stop_requested)
                    state["step"] += 1  # the counters move together, after the update
                    state["batches_done"] += 1
                    loss_sum += batch_loss
                    token_sum += batch_tokens
                    elapsed = time.time() - epoch_started
                    progress.update(state["batches_done"], [("loss", loss_sum / token_sum), ("lr", rate),
                                                            (unit, token_sum / max(elapsed, 1e-9))])
                    if state["step"] % 20 == 0:
                        with writer.as_default(step=state["step"]):
                            tf.summary.scalar("train/loss", batch_loss / batch_tokens)
                            tf.summary.scalar("train/learning_rate", rate)
                    if state["step"] % settings["checkpoint_every"] == 0 or stopping:
                        state["train_seconds"] += time.time() - started
                        started = time.time()
                        save_state()
                    if stopping:
                        raise KeyboardInterrupt
                    out_of_time = budget is not None and state["train_seconds"] + time.time() - started >= budget
                    if out_of_time:
                        break
                state["train_seconds"] += time.time() - started
                row = {"epoch": epoch + 1, "step": state["step"], "train_seconds": round(state["train_seconds"], 1)}
                row.update(distributed.agree(strategy, task.validate(model, evaluate_step, epoch)))
                row["learning_rate"] = float(learning_rate(config, max(state["step"], 1), total_steps,
                                                           state["learning_rate_factor"]))
                if token_sum:  # figures of this process's part of the epoch (all of it unless resumed)
                    row["train_loss"] = round(loss_sum / token_sum, 5)
                    row[f"train_{'tokens' if unit == 'tok/s' else 'examples'}_per_second"] = \
                        round(token_sum / max(time.time() - epoch_started, 1e-9))
                with writer.as_default(step=state["step"]):
                    for key, value in row.items():
                        if key.startswith("validation_") and value is not None:
                            tf.summary.scalar(f"validation/{key[len('validation_'):]}", value)
                stop = self._early_stop(state, row, model)
                state["epoch"] += 1
                state["batches_done"] = 0
                state["history"].append(row)
                if worker.chief:
                    self._write_log(state["history"])
                if stop:
                    self.log(f"early stopping: no improvement of {settings['early_stopping_metric']} "
                             f"for {settings['early_stopping_patience']} epoch(s)")
                    break
                if out_of_time:
                    self.log(f"time budget: training.max_minutes {settings['max_minutes']} reached")
                    break
                save_state()
                if stopping or alone and stop_requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            self.log(f"\ninterrupted at step {state['step']:,}; run the same command to resume from the last checkpoint")
            raise
        finally:
            stop_requested.restore()
            if scratch:
                distributed.remove_scratch(scratch)
        best = self.run / "best.keras"
        if worker.chief:
            if not best.is_file():
                self._save_model(model, best)
            shutil.copyfile(best, self.run / ".model.keras.tmp")
            os.replace(self.run / ".model.keras.tmp", self.run / "model.keras")
        state["finished"] = True
        save_state()
        self.model = model  # the trained weights, for a caller that wants them
        best_text = "no validation score" if state["best"] is None else \
            f"best {settings['early_stopping_metric']} {state['best']:.4f} (epoch {state['best_epoch']})"
        self.log(f"done: {state['step']:,} steps in {state['train_seconds'] / 60:.1f} min; {best_text}; "
                 f"model: {self.run / 'model.keras'}")
        return self.run / "model.keras"

    def _train_ensemble(self) -> Path:
        """``model.ensemble: N`` (classifiers): N models trained one after another into
        RUN/members/1..N, from seeds training.seed, +1, ..., so each has its own initialisation,
        dropout and batch order; then RUN/model.keras, a `Classifier` that averages their
        probabilities. Resumable: finished members are not trained again."""
        import keras

        from translator.classifiers import Classifier
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

    @staticmethod
    def _save_model(model, path: Path):
        temporary = path.with_name(f".{path.stem}.tmp.keras")
        model.save(temporary)
        os.replace(temporary, path)

    def _write_log(self, history):
        keys = list(dict.fromkeys(k for row in history for k in row))
        lines = [",".join(keys)] + [",".join("" if row.get(k) is None else str(row[k]) for k in keys) for row in history]
        atomic_write_text(self.run / "log.csv", "\n".join(lines) + "\n")


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
