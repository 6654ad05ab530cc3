"""The sequence-to-sequence model: source embedding, RecurrentEncoder, RecurrentDecoder.

Sutskever et al. (2014) without attention, Cho et al. (2014) with the context fed at every
step, Bahdanau et al. (2015) and Luong et al. (2015) with attention: all are the same model
with other settings (see ``configs/reference.yaml``).

Training uses teacher forcing: the decoder reads ``<sos> y1 .. yn`` and is scored on
``y1 .. yn <eos>``; the loss skips padding. Translation uses ``encode`` once, then the
decoder's ``step`` token by token (``translator.search``), from the same weights: a saved
``.keras`` file is all that decoding needs, with no inference model to rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from translator.batching import SampledBatches, StreamingBatches, TranslationBatches
from translator.config import ConfigError
from translator.corpora import (
    CorpusError,
    count_lines,
    prepared_split_paths,
    read_manifest,
    read_prepared_split,
)
from translator.decoders import RecurrentDecoder
from translator.embeddings import TokenEmbedding
from translator.encoders import RecurrentEncoder
from translator.files import atomic_write_text
from translator.runs import RunError
from translator.special_ids import PAD_ID
from translator.tasks import Task


@contextlib.contextmanager
def dtype_policy_of(model: keras.Model):
    """Inside, new layers and lazily built weights follow `model`'s dtype policy (for example
    ``mixed_bfloat16``), which Keras saves with the model and restores when loading it."""
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(model.dtype_policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)


def computing_in(model: keras.Model, dtype: str) -> keras.Model:
    """`model` itself if its weights and computation are already `dtype` ("float32" or
    "bfloat16"); otherwise a copy whose weights are cast to `dtype` once, with its decoder's
    step kernels fused (`RecurrentDecoder.fuse_for_inference`). For decoding: under
    ``mixed_bfloat16`` every step would cast every float32 weight again. "int8": a float32
    copy whose decoder multiplies int8 weights (`translator.quantization`)."""
    if dtype == "int8":
        from translator.quantization import quantize_decoder

        copy = computing_in(model, "float32")
        if copy is model:  # a float32 model: a copy of its own, fused, so the model is left as it was
            copy = type(model).from_config(model.get_config())
            copy.set_weights(model.get_weights())
            copy.fuse_for_inference()
        quantize_decoder(copy.decoder)
        return copy
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32', 'bfloat16' or 'int8'; got {dtype!r}")
    policy = model.dtype_policy
    if policy.variable_dtype == dtype and policy.compute_dtype == dtype:
        return model
    with _orthogonal_initializer_in_float32():
        copy = type(model).from_config({**model.get_config(), "dtype": dtype})
    copy.set_weights([ops.cast(weight, dtype) for weight in model.get_weights()])
    if isinstance(copy, Seq2Seq):
        copy.fuse_for_inference()
    elif isinstance(getattr(copy, "decoder", None), RecurrentDecoder):
        copy.decoder.fuse_for_inference()
    return copy


@contextlib.contextmanager
def _orthogonal_initializer_in_float32():
    """Keras's orthogonal initializer (recurrent kernels) runs a QR decomposition, which
    TensorFlow cannot do in bfloat16: inside, it draws in float32 and casts. (The values are
    overwritten at once by `computing_in`.)"""
    orthogonal = keras.initializers.Orthogonal
    original = orthogonal.__call__

    def call(self, shape, dtype=None):
        return ops.cast(original(self, shape, dtype="float32"), dtype or "float32")

    orthogonal.__call__ = call
    try:
        yield
    finally:
        orthogonal.__call__ = original


class ConfiguredModel(keras.Model):
    """A model whose config is its constructor's ``self.settings``; loading rebuilds it and
    creates every weight with ``build_for_shapes()`` before Keras restores the values."""

    def get_config(self):
        return {**super().get_config(), **self.settings}

    @classmethod
    def from_config(cls, config):
        model = cls(**config)
        model.build_for_shapes()
        return model


@keras.saving.register_keras_serializable(package="translator")
class Seq2Seq(ConfiguredModel):
    """An RNN encoder-decoder.

    Call: ``model((source_ids, target_input_ids), training=False)`` with int [batch, source_time]
    and [batch, target_time] ids (0 = padding) returns logits [batch, target_time, target_vocabulary].
    ``output_mask=`` bool [batch, target_time] returns those of the True positions only,
    [count, target_vocabulary] (see `RecurrentDecoder`): what a loss over real tokens needs.

    Masking: source padding is masked in the encoder (it never changes final states or
    outputs) and in the attention (weight 0); target padding only produces logits at padded
    positions, which ``sequence_loss`` ignores.
    """

    def __init__(self, source_vocabulary_size, target_vocabulary_size, cell="lstm", embedding_dim=256,
                 units=512, encoder_layers=1, decoder_layers=1, bidirectional=False, reverse_source=False,
                 attention=None, feed_context=False, tie_embeddings=False, dropout=0.0, encoder_units=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.settings = {
            "source_vocabulary_size": source_vocabulary_size, "target_vocabulary_size": target_vocabulary_size,
            "cell": cell, "embedding_dim": embedding_dim, "units": units, "encoder_layers": encoder_layers,
            "decoder_layers": decoder_layers, "bidirectional": bidirectional, "reverse_source": reverse_source,
            "attention": attention, "feed_context": feed_context, "tie_embeddings": tie_embeddings,
            "dropout": dropout, "encoder_units": encoder_units,
        }
        # Every layer inside computes with the model's own dtype policy (e.g. ``dtype=
        # "mixed_bfloat16"``), which is saved with the model and restored when it is loaded.
        with dtype_policy_of(self):
            self.source_embedding = TokenEmbedding(source_vocabulary_size, embedding_dim, name="source_embedding")
            self.embedding_dropout = keras.layers.Dropout(dropout)
            self.encoder = RecurrentEncoder(cell=cell, units=encoder_units or units, num_layers=encoder_layers,
                                            bidirectional=bidirectional, dropout=dropout,
                                            reverse_source=reverse_source, name="encoder")
            self.decoder = RecurrentDecoder(vocabulary_size=target_vocabulary_size, embedding_dim=embedding_dim,
                                            cell=cell, units=units, num_layers=decoder_layers, dropout=dropout,
                                            attention=attention, feed_context=feed_context,
                                            tie_embeddings=tie_embeddings, name="decoder")

    @classmethod
    def from_settings(cls, model_config: dict, source_vocabulary_size: int, target_vocabulary_size: int,
                      dtype: str = "float32"):
        """Build from the ``model:`` section of an experiment config (and the training precision)."""
        model = cls(source_vocabulary_size, target_vocabulary_size, dtype=dtype, **model_config)
        model.build_for_shapes()
        return model

    def build_for_shapes(self):
        """Create every weight by running a tiny batch through the model."""
        source = ops.convert_to_tensor([[4, 5, 0]], dtype="int32")
        target = ops.convert_to_tensor([[2, 4]], dtype="int32")
        with dtype_policy_of(self):  # weights made lazily follow it too
            self((source, target), training=False)

    def encode(self, source_ids, training=False) -> dict:
        """Run the encoder; return the decoder's cache (its initial state, memory and mask)."""
        mask = ops.not_equal(source_ids, PAD_ID)
        if self.encoder.input_table is not None and not training:  # `fuse_for_inference`
            projected = ops.take(self.encoder.input_table, source_ids, axis=0)
            outputs, final_states = self.encoder(projected, mask=mask, inputs_projected=True)
        else:
            embedded = self.embedding_dropout(self.source_embedding(source_ids), training=training)
            outputs, final_states = self.encoder(embedded, mask=mask, training=training)
        return self.decoder.initial_state(final_states, outputs, mask)

    def take_encoder(self, other: Seq2Seq, freeze: bool = False) -> None:
        """Copy ``other``'s source embedding and encoder weights into this model (a model of
        the same source vocabulary and encoder settings, for another target language: "swap
        out the decoder while reusing the encoder"); ``freeze`` keeps them fixed in training."""
        keys = ("source_vocabulary_size", "cell", "embedding_dim", "encoder_layers", "bidirectional",
                "reverse_source")
        differing = [key for key in keys if self.settings[key] != other.settings[key]]
        if (self.settings["encoder_units"] or self.settings["units"]) != \
                (other.settings["encoder_units"] or other.settings["units"]):
            differing.append("encoder width (encoder_units or units)")
        if differing:
            raise ValueError(f"the encoder to take differs in {', '.join(differing)}; its model and this one "
                             f"must share the source vocabulary and every encoder setting")
        for mine, theirs in ((self.source_embedding, other.source_embedding), (self.encoder, other.encoder)):
            mine.set_weights(theirs.get_weights())
            mine.trainable = not freeze

    def fuse_for_inference(self):
        """Precompute the encoder's first-layer input side for every source token and the
        decoder's step kernels (`RecurrentEncoder.fuse_for_inference`,
        `RecurrentDecoder.fuse_for_inference`). For a decoding copy (`computing_in`)."""
        self.encoder.fuse_for_inference(self.source_embedding.embeddings)
        self.decoder.fuse_for_inference()

    def call(self, inputs, training=False, return_attention=False, output_mask=None):
        source_ids, target_input_ids = inputs
        cache = self.encode(source_ids, training=training)
        return self.decoder(target_input_ids, cache, training=training, return_attention=return_attention,
                            output_mask=output_mask)



def sequence_loss(logits, target_ids, label_smoothing: float = 0.0):
    """Summed token cross-entropy over the real (non-zero) targets, and their count.

    Label smoothing (Szegedy et al. 2016) mixes the one-hot target with the uniform
    distribution: loss = (1 - e) * NLL + e * mean over the vocabulary of -log p.
    Returns ``(loss_sum, token_count)``; the mean is their ratio (kept apart so that replicas
    and batches of different sizes can be averaged exactly).
    """
    logits = ops.cast(logits, "float32")
    target_ids = ops.cast(target_ids, "int32")
    nll = _token_cross_entropy(logits, target_ids, float(label_smoothing))
    mask = ops.cast(ops.not_equal(target_ids, PAD_ID), "float32")
    return ops.sum(nll * mask), ops.sum(mask)


def _token_cross_entropy(logits, target_ids, label_smoothing):
    """Per-token (smoothed) cross-entropy [...], with a hand-written gradient.

    Same value as ``-log_softmax(logits)[target]`` (smoothed as above), in few passes over
    the logits, the largest tensor of a step with an 8k vocabulary: one softmax (its largest
    probability gives the normalizer, logsumexp = max logit - log max p, well conditioned as
    max p >= 1 / V), reused by the gradient, softmax - target distribution, where the target's
    share is subtracted at the target positions only (no one-hot tensor). On a 2-core CPU, 150
    ms for a [4096, 8000] forward and backward against 238 with an explicit logsumexp.
    """
    import tensorflow as tf

    shape = tf.shape(logits)
    vocabulary = shape[-1]
    flat_logits = tf.reshape(logits, [-1, vocabulary])
    flat_targets = tf.reshape(target_ids, [-1])

    @tf.custom_gradient
    def cross_entropy(logits):
        probabilities = tf.nn.softmax(logits)
        log_normalizer = tf.reduce_max(logits, axis=-1) - tf.math.log(tf.reduce_max(probabilities, axis=-1))
        loss = log_normalizer - tf.gather(logits, flat_targets, batch_dims=1)
        if label_smoothing:
            mean_logit = tf.reduce_mean(logits, axis=-1)
            loss = (1.0 - label_smoothing) * loss + label_smoothing * (log_normalizer - mean_logit)

        def gradient(upstream):
            upstream = upstream[:, None]
            result = probabilities * upstream
            if label_smoothing:
                result -= (label_smoothing / tf.cast(vocabulary, logits.dtype)) * upstream
            targets = tf.stack([tf.range(tf.shape(flat_targets)[0]), flat_targets], 1)
            return tf.tensor_scatter_nd_sub(result, targets, (1.0 - label_smoothing) * upstream[:, 0])

        return loss, gradient

    return tf.reshape(cross_entropy(flat_logits), shape[:-1])


def count_parameters(model: keras.Model) -> int:
    return int(sum(int(ops.size(weight)) for weight in model.trainable_weights))


# ----------------------------------------------------------------------------- training

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
    """`translator.training.Trainer`'s view of a Seq2Seq translation model (see
    `translator.tasks.Task`): length-bucketed pairs of a prepared translation corpus, the
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
        from translator.search import GreedyTranslator
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
    from translator.tokenizers import load_tokenizers

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
