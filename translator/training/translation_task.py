"""The translation task: what `translator.training.trainer.Trainer` trains a `Seq2Seq` on (see
`translator.models.tasks.Task`): the prepared pairs tokenized, held in memory in length buckets or
streamed window by window, the cross-entropy of the real target tokens, and the validation loss
and greedy BLEU.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np

from translator.config import ConfigError
from translator.data.batching import SampledBatches, StreamingBatches, TranslationBatches
from translator.data.corpora import (
    CorpusError,
    count_lines,
    prepared_split_paths,
    read_manifest,
    read_prepared_split,
)
from translator.decoding.search import GreedyTranslator
from translator.files import atomic_write_text
from translator.models.runs import RunError
from translator.models.seq2seq import Seq2Seq, sequence_loss
from translator.models.tasks import Task
from translator.special_ids import PAD_ID

STREAM_PAIRS = 1_000_000  # data.stream: auto streams the training pairs from this many on


def _within_limits(sources, targets, data: dict) -> list[int]:
    """The pairs whose sides have 1 to max_*_length pieces (longer ones are skipped, never cut)."""
    return [i for i in range(len(sources)) if 0 < len(sources[i]) <= data["max_source_length"]
            and 0 < len(targets[i]) <= data["max_target_length"]]


def read_pairs(config: dict, split: str, tokenizers: dict, limit_length: bool):
    """Tokenized (source, target) id lists of a prepared split."""
    data = config["data"]
    columns = read_prepared_split(data["corpus"], split, data["work_dir"])
    sources = tokenizers["source"].encode(columns["source"])
    targets = tokenizers["target"].encode(columns["target"])
    if limit_length:  # long training pairs are skipped, never truncated
        keep = _within_limits(sources, targets, data)
        sources, targets = [sources[i] for i in keep], [targets[i] for i in keep]
        columns = {name: [column[i] for i in keep] for name, column in columns.items()}
    return sources, targets, columns


def streams(config: dict) -> bool:
    """Whether the training pairs are streamed from the prepared files (``data.stream``: true,
    false, or auto: from STREAM_PAIRS training pairs on) rather than held in memory."""
    data = config["data"]
    if data["stream"] != "auto":
        return bool(data["stream"])
    directory, manifest = read_manifest(data["corpus"], data["work_dir"])
    name = manifest["split_files"]["train"]["source"]
    recorded = manifest["outputs"].get(name)
    lines = recorded.get("lines") if isinstance(recorded, dict) else None
    return (lines if lines is not None else count_lines(directory / name)) >= STREAM_PAIRS


def first_pass_cache(config: dict, tokenizers: dict) -> Path:
    """Where a streamed corpus keeps what a first pass over its windows found (batches per window,
    pairs, padding): beside the prepared files, named by a hash of what it depends on (the prepared
    files' sha256 as the manifest records them, the tokenizers' models, the length limits and the
    batching settings), so a resumed or repeated run skips the pass while they stay the same."""
    data, training = config["data"], config["training"]
    directory, manifest = read_manifest(data["corpus"], data["work_dir"])
    depends = {"prepared": manifest["outputs"], "tokenizers": {
        side: hashlib.sha256(Path(tokenizer.model_file).read_bytes()).hexdigest() for side, tokenizer in
        sorted(tokenizers.items())}, **{key: data[key] for key in ("stream_window", "max_source_length",
                                                                    "max_target_length")},
        **{key: training[key] for key in ("batch_tokens", "max_batch_size", "seed")}}
    key = hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:16]
    return directory / "first-pass" / f"{key}.json"


class TrainingWindows:
    """The training pairs of a prepared translation corpus, read back window by window: window
    ``w`` is pairs ``w * size`` to ``(w + 1) * size - 1`` of the files, read from byte offsets
    found on one pass, tokenized, the over-long pairs skipped. Only one window is in memory."""

    def __init__(self, config: dict, tokenizers: dict, size: int):
        data = config["data"]
        self.data, self.tokenizers, self.size = data, tokenizers, size
        self.paths = list(prepared_split_paths(data["corpus"], "train", data["work_dir"]).values())
        offsets, counts = [], []
        for path in self.paths:  # where every size-th line starts, in each file
            starts, position, count = [], 0, 0
            with open(path, "rb") as handle:
                for line in handle:
                    if count % size == 0:
                        starts.append(position)
                    position += len(line)
                    count += 1
            offsets.append(starts)
            counts.append(count)
        if counts[0] != counts[1]:
            raise CorpusError(f"{self.paths[0]} has {counts[0]:,} lines and {self.paths[1]} {counts[1]:,}; run "
                              f"`translator data {data['corpus']}` again")
        self.offsets = np.array(offsets, dtype=np.int64).T  # [window, file]

    def __len__(self) -> int:
        return len(self.offsets)

    def __call__(self, window: int):
        sides = []
        for path, offset in zip(self.paths, self.offsets[window]):
            with open(path, "rb") as handle:
                handle.seek(offset)
                lines = [line[:-1].decode("utf-8") for line in itertools.islice(handle, self.size)]
            sides.append(lines)
        sources = self.tokenizers["source"].encode(sides[0])
        targets = self.tokenizers["target"].encode(sides[1])
        keep = _within_limits(sources, targets, self.data)
        return [sources[i] for i in keep], [targets[i] for i in keep]


class TranslationTask(Task):
    """`translator.training.trainer.Trainer`'s view of a Seq2Seq translation model (see
    `translator.models.tasks.Task`): length-bucketed pairs of a prepared translation corpus, the
    cross-entropy of the real target tokens, validation loss and greedy BLEU."""

    def __init__(self, config: dict, tokenizers: dict, log=print):
        import tensorflow as tf

        self.config, self.tokenizers, self.log = config, tokenizers, log
        self.signature = [tf.TensorSpec([None, None], tf.int32)] * 3
        settings = config["training"]
        self.streaming = streams(config)
        if self.streaming and config["data"]["sampling"]:
            raise ConfigError(f"data.sampling re-tokenizes the training pairs every epoch, which it does for "
                                f"pairs held in memory, but {config['data']['corpus']} is streamed (data.stream: "
                                f"auto, 1,000,000 pairs or more); set data.stream: false if the pairs fit in memory")
        if self.streaming:  # a window of pairs at a time
            started = time.time()
            windows = TrainingWindows(config, tokenizers, config["data"]["stream_window"])
            cache = first_pass_cache(config, tokenizers)
            counts = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else None
            self.train_batches = StreamingBatches(windows, len(windows), settings["batch_tokens"],
                                                  settings["max_batch_size"], settings["seed"], counts)
            if counts is None:
                atomic_write_text(cache, json.dumps(self.train_batches.counts()) + "\n")
            log(f"streaming: the batches of {len(windows):,} windows of training pairs counted in "
                f"{time.time() - started:.0f} s " + ("(a first pass that tokenizes every pair)" if counts is None
                                                      else f"(read from {cache}, a first pass made before)"))
        elif config["data"]["sampling"]:  # subword regularization: ids drawn anew every epoch
            sources, targets, texts = read_pairs(config, "train", tokenizers, limit_length=True)
            data = config["data"]
            self.train_batches = SampledBatches(sources, targets, texts, tokenizers, data["sampling"],
                                                (data["max_source_length"], data["max_target_length"]),
                                                settings["batch_tokens"], settings["max_batch_size"],
                                                settings["seed"])
        else:
            sources, targets, _ = read_pairs(config, "train", tokenizers, limit_length=True)
            self.train_batches = TranslationBatches(sources, targets, settings["batch_tokens"],
                                                    settings["max_batch_size"], settings["seed"])
        # Validation pairs are few (a split of thousands): held in memory in either case.
        self.validation_sources, validation_targets, self.validation_columns = read_pairs(
            config, "validation", tokenizers, limit_length=False)
        self.validation_batches = TranslationBatches(self.validation_sources, validation_targets,
                                                     settings["batch_tokens"], settings["max_batch_size"], 0)

    def batches_per_epoch(self) -> int:
        return self.train_batches.batch_count()

    def dataset(self, epoch: int, skip: int, shards: int = 1, shard_ids=(0,)):
        return self.train_batches.dataset(epoch, skip, shards, shard_ids)

    def describe(self, manifest: dict) -> str:
        streamed = f" streamed in windows of {self.config['data']['stream_window']:,}" if self.streaming else ""
        return (f"{manifest['source_language']} -> {manifest['target_language']}, {len(self.train_batches):,} "
                f"training pairs{streamed}, target padding {self.train_batches.padding_fraction():.1%}")

    def build_model(self, dtype: str):
        model = Seq2Seq.from_settings(self.model_settings(), self.tokenizers["source"].vocabulary_size,
                                      self.tokenizers["target"].vocabulary_size, dtype=dtype)
        settings = self.config["training"]
        if settings["initialize_encoder_from"]:
            take_encoder_of_run(model, settings["initialize_encoder_from"], self.tokenizers["source"],
                                settings["freeze_encoder"], self.log)
        self.greedy = GreedyTranslator(model)
        return model

    def model_settings(self) -> dict:
        settings = dict(self.config["model"])
        for not_a_seq2seq_argument in ("type", "pooling", "ensemble", "window"):
            settings.pop(not_a_seq2seq_argument, None)
        return settings

    def loss(self, model, batch, training: bool):
        """(objective sum, objective count, reported loss sum, reported count) of one batch:
        the gradient follows objective sum / count; the log reports the plain cross-entropy."""
        import tensorflow as tf

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

        from translator.data.batching import pad

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
    from translator.data.tokenizers import load_tokenizers
    from translator.models.runs import load_run

    _, other = load_run(run, "seq2seq")
    theirs = load_tokenizers(Path(run) / "tokenizers")["source"]
    pieces = lambda tokenizer: [tokenizer.id_to_piece(i) for i in range(tokenizer.vocabulary_size)]  # noqa: E731
    if pieces(theirs) != pieces(source_tokenizer):
        raise RunError(f"training.initialize_encoder_from: {run}'s source tokenizer ({theirs.model_file}) has "
                            f"other pieces than this run's ({source_tokenizer.model_file}); the encoder reads token "
                            f"ids, so both runs need the same source tokenizer")
    try:
        model.take_encoder(other, freeze=freeze)
    except ValueError as error:
        raise RunError(f"training.initialize_encoder_from: {run}: {error}") from None
    log(f"source embedding and encoder from {run}" + (" (frozen: only the decoder trains)" if freeze else ""))
