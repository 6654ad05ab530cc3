"""Many-to-one sequence classifiers on the shared `RecurrentEncoder`.

The encoder of the translation models reads the text (bidirectional if asked); its final
states, an attention-weighted sum of its outputs (Yang et al. 2016, "Hierarchical
Attention Networks for Document Classification", the word-level attention), or the maximum
of its outputs over time (Conneau et al. 2017, InferSent) go through dropout into a softmax
layer over the classes. Names -> language is character level; SST-2 and TREC are subword
level: the tokenizer recipe decides.

Training (``translator train configs/names-classifier.yaml``) uses length-bucketed batches
and, with ``training.class_weights: balanced``, weighs each class by n / (classes * count) as
scikit-learn's "balanced" does, so rare classes count as much as frequent ones;
``sqrt_balanced`` uses the square root of that weight, a middle way between plain accuracy and
equal weight per class.
``translator evaluate --run RUN --split test`` writes accuracy, macro-F1, per-class figures
and a confusion matrix (report.json, report.md, report.html);
``Classifier.load(run).predict(texts)`` and ``translator classify --run RUN`` label new text.
With ``model.ensemble: N`` the run trains N models from N seeds and averages their
probabilities (`Classifier.from_members`).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from keras import ops

from translator.checks import check_positive_int, check_texts
from translator.models.attention import masked_softmax
from translator.models.embeddings import TokenEmbedding
from translator.models.encoders import RecurrentEncoder
from translator.models.runs import load_text_model
from translator.models.seq2seq import ConfiguredModel, dtype_policy_of
from translator.models.tasks import Task
from translator.special_ids import PAD_ID


@keras.saving.register_keras_serializable(package="translator")
class AttentionPooling(keras.layers.Layer):
    """score_t = v . tanh(W o_t); weights = softmax over real positions; output = sum_t w_t o_t.

    Call: ``pooling(outputs [batch, time, width], mask bool [batch, time])`` returns
    ``(pooled [batch, width], weights [batch, time])``. Padding gets weight exactly 0.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer; got {units!r}")
        self.units = units
        self.supports_masking = True  # the mask is read (explicitly) and not passed on
        self.projection = keras.layers.Dense(units, activation="tanh", name="projection")
        self.score_vector = keras.layers.Dense(1, use_bias=False, name="score_vector")

    def build(self, outputs_shape, mask_shape=None):
        self.projection.build(tuple(outputs_shape))
        self.score_vector.build(tuple(outputs_shape[:-1]) + (self.units,))

    def call(self, outputs, mask=None):
        scores = ops.squeeze(self.score_vector(self.projection(outputs)), -1)
        weights = masked_softmax(scores, mask)
        return ops.einsum("bt,btw->bw", weights, outputs), weights

    def compute_mask(self, outputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def ensemble_logits(member_logits: list):
    """The log of the members' averaged probabilities (softmax of it = that average); one
    member's logits unchanged."""
    if len(member_logits) == 1:
        return member_logits[0]
    probabilities = ops.mean(ops.stack([ops.softmax(logits) for logits in member_logits]), axis=0)
    return ops.log(ops.maximum(probabilities, 1e-30))


@keras.saving.register_keras_serializable(package="translator")
class Classifier(ConfiguredModel):
    """Embedding -> RecurrentEncoder -> final states, attention or max pooling -> softmax layer.

    Call: ``model(token_ids, training=False)`` with int [batch, time] (0 = padding) returns
    logits [batch, number_of_classes]. ``label_names`` (saved with the model) maps class
    index to label.

    ``ensemble=N`` holds N members, each with its own embedding, encoder, pooling and softmax
    layer (`member_logits`); the model's logits are the log of the members' averaged
    probabilities, so its softmax is that average. The trainer trains the members as separate
    models, each from its own seed, and copies them in (`Classifier.from_members`).

    Masking: padding is masked in the encoder (it never changes the final states or the real
    outputs), in the attention pooling (weight 0) and in the max pooling (never the maximum),
    so the prediction for a text does not depend on how far its batch is padded.
    """

    def __init__(self, vocabulary_size, label_names, cell="lstm", embedding_dim=128, units=256, num_layers=1,
                 bidirectional=True, pooling="final", dropout=0.0, ensemble=1, **kwargs):
        super().__init__(**kwargs)
        if pooling not in ("final", "attention", "max"):
            raise ValueError(f"pooling must be 'final', 'attention' or 'max'; got {pooling!r}")
        if len(label_names) < 2:
            raise ValueError(f"a classifier needs at least 2 labels; got {label_names!r}")
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
            raise ValueError(f"ensemble must be a positive integer (the number of members); got {ensemble!r}")
        self.label_names = list(label_names)
        self.settings = {"vocabulary_size": vocabulary_size, "label_names": self.label_names, "cell": cell,
                         "embedding_dim": embedding_dim, "units": units, "num_layers": num_layers,
                         "bidirectional": bidirectional, "pooling": pooling, "dropout": dropout,
                         "ensemble": ensemble}

        def member(suffix, dropouts=False):  # the layers of one member; the dropout layers are shared
            embedding = TokenEmbedding(vocabulary_size, embedding_dim, name="embedding" + suffix)
            if dropouts:  # created in this order, so that a seed initialises a model as it always has
                self.embedding_dropout = keras.layers.Dropout(dropout)
            encoder = RecurrentEncoder(cell, units, num_layers=num_layers, bidirectional=bidirectional,
                                       dropout=dropout, name="encoder" + suffix)
            attention = AttentionPooling(units, name="attention_pooling" + suffix) if pooling == "attention" else None
            if dropouts:
                self.output_dropout = keras.layers.Dropout(dropout)
            # The softmax layer computes in float32 even under mixed precision.
            return embedding, encoder, attention, keras.layers.Dense(len(self.label_names), name="output" + suffix,
                                                                     dtype="float32")

        with dtype_policy_of(self):
            self.embedding, self.encoder, self.pooling, self.output_layer = member("", dropouts=True)
            # Members 2..N (the first keeps the attribute names of a single model).
            others = [member(f"_{index}") for index in range(1, ensemble)]
            self.other_embeddings = [layers[0] for layers in others]
            self.other_encoders = [layers[1] for layers in others]
            self.other_poolings = [layers[2] for layers in others] if pooling == "attention" else []
            self.other_output_layers = [layers[3] for layers in others]

    def members(self) -> list:
        """(embedding, encoder, pooling or None, output layer) of every member. (A method, not a
        property: Keras's saving walks the properties of a model too.)"""
        poolings = self.other_poolings or [None] * len(self.other_embeddings)
        return [(self.embedding, self.encoder, self.pooling, self.output_layer)] + list(
            zip(self.other_embeddings, self.other_encoders, poolings, self.other_output_layers))

    @classmethod
    def from_settings(cls, model_config: dict, vocabulary_size: int, label_names, dtype: str = "float32"):
        model = cls(vocabulary_size, label_names, cell=model_config["cell"],
                    embedding_dim=model_config["embedding_dim"], units=model_config["units"],
                    num_layers=model_config["encoder_layers"], bidirectional=model_config["bidirectional"],
                    pooling=model_config["pooling"], dropout=model_config["dropout"],
                    ensemble=model_config.get("ensemble", 1), dtype=dtype)
        model.build_for_shapes()
        return model

    @classmethod
    def from_members(cls, members: list) -> Classifier:
        """An ensemble holding copies of trained single classifiers with the same settings."""
        settings = {**members[0].settings, "ensemble": len(members)}
        for member in members:
            if {**member.settings, "ensemble": len(members)} != settings:
                raise ValueError("ensemble members must share every setting; got "
                                 f"{members[0].settings} and {member.settings}")
        model = cls(**settings, dtype=members[0].dtype_policy.name)
        model.build_for_shapes()
        for layers, member in zip(model.members(), members):
            for layer, trained in zip(layers, (member.embedding, member.encoder, member.pooling, member.output_layer)):
                if layer is not None:
                    layer.set_weights(trained.get_weights())
        return model

    def build_for_shapes(self):
        with dtype_policy_of(self):
            self(ops.convert_to_tensor([[4, 5, 0]], dtype="int32"))

    def member_logits(self, token_ids, training=False):
        """Every member's ``(logits [batch, classes], attention weights [batch, time] or None)``."""
        mask = ops.not_equal(token_ids, PAD_ID)
        results = []
        for embedding, encoder, pooling, output_layer in self.members():
            embedded = self.embedding_dropout(embedding(token_ids), training=training)
            outputs, final_states = encoder(embedded, mask=mask, training=training)
            weights = None
            if self.settings["pooling"] == "final":
                pooled = final_states[-1][0]  # the top layer's h (both directions if bidirectional)
            elif self.settings["pooling"] == "max":  # padding never wins; an empty text gives zeros
                lowest = ops.full_like(outputs, -1e4 if outputs.dtype == "float16" else -1e9)
                pooled = ops.max(ops.where(mask[:, :, None], outputs, lowest), axis=1)
                pooled = ops.where(ops.any(mask, axis=1)[:, None], pooled, ops.zeros_like(pooled))
            else:
                pooled, weights = pooling(outputs, mask)
            logits = output_layer(self.output_dropout(pooled, training=training))
            results.append((logits, weights))
        return results

    def call(self, token_ids, training=False, return_attention=False):
        results = self.member_logits(token_ids, training=training)
        logits = ensemble_logits([logits for logits, _ in results])
        weights = results[0][1]
        if weights is not None and len(results) > 1:  # the members' attention weights, averaged
            weights = ops.mean(ops.stack([weights for _, weights in results]), axis=0)
        return (logits, weights) if return_attention else logits

    # ------------------------------------------------------------------ a trained run

    @classmethod
    def load(cls, run) -> Classifier:
        """The model of a finished run directory (``model.keras``), with its tokenizer."""
        return load_text_model(run, "classifier")

    def predict_ids(self, id_lists, batch_size: int = 128) -> np.ndarray:
        """Class probabilities [n, classes] for token-id lists, in their order (batched by length)."""
        import tensorflow as tf

        from translator.data.batching import pad

        if not hasattr(self, "_probabilities"):
            self._probabilities = tf.function(
                lambda ids: tf.nn.softmax(tf.cast(self(ids, training=False), tf.float32)),
                input_signature=[tf.TensorSpec([None, None], tf.int32)])
        probabilities = np.zeros((len(id_lists), len(self.label_names)), dtype=np.float32)
        order = np.argsort([len(ids) for ids in id_lists], kind="stable")
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            # An empty text is one padding token: the model sees no real token at all.
            batch = pad([id_lists[i] or [0] for i in indices])
            probabilities[indices] = self._probabilities(batch).numpy()
        return probabilities

    def predict(self, texts, batch_size: int = 128) -> list[tuple[str, float]]:
        """``(label, probability)`` of the most likely class of every text (one pair for one
        string). An empty text is an error: there is nothing to classify in it."""
        if getattr(self, "tokenizer", None) is None:
            raise ValueError("this model has no tokenizer; use Classifier.load(run)")
        texts, single = check_texts("texts", texts)
        check_positive_int("batch_size", batch_size)
        ids = self.tokenizer.encode(texts)
        empty = [index for index, row in enumerate(ids) if not row]
        if empty:
            raise ValueError(f"texts[{empty[0]}] is {texts[empty[0]]!r}: no character the tokenizer keeps, so "
                             f"nothing to classify ({len(empty):,} such text(s) in all); leave empty texts out")
        probabilities = self.predict_ids(ids, batch_size)
        best = probabilities.argmax(axis=1)
        labelled = [(self.label_names[k], float(probabilities[i, k])) for i, k in enumerate(best)]
        return labelled[0] if single else labelled


# ----------------------------------------------------------------------------- metrics

def classification_metrics(true, predicted, label_names) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix
    (rows: true class, columns: predicted class)."""
    classes = len(label_names)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (np.asarray(true), np.asarray(predicted)), 1)
    per_class = {}
    f1_scores = []
    for k, name in enumerate(label_names):
        true_positive = confusion[k, k]
        precision = true_positive / max(confusion[:, k].sum(), 1)
        recall = true_positive / max(confusion[k, :].sum(), 1)
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        f1_scores.append(f1)
        per_class[name] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                           "f1": round(float(f1), 4), "support": int(confusion[k, :].sum())}
    return {"accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
            "macro_f1": float(np.mean(f1_scores)), "per_class": per_class, "confusion": confusion.tolist()}


# ----------------------------------------------------------------------------- training

def classification_loss(logits, labels, label_smoothing: float = 0.0):
    """Cross-entropy per example, float32 [batch]; with label smoothing e the target is 1 - e
    on the label plus e spread evenly over all classes (as Keras's ``label_smoothing``)."""
    import tensorflow as tf

    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    if not label_smoothing:
        return nll
    uniform = tf.reduce_logsumexp(logits, axis=-1) - tf.reduce_mean(logits, axis=-1)
    return (1.0 - label_smoothing) * nll + label_smoothing * uniform


def read_examples(config: dict, split: str, tokenizer, label_names):
    from translator.data.corpora import read_prepared_split

    data = config["data"]
    columns = read_prepared_split(data["corpus"], split, data["work_dir"])
    index = {name: k for k, name in enumerate(label_names)}
    return tokenizer.encode(columns["text"]), np.array([index[label] for label in columns["label"]], np.int32)


class ClassificationTask(Task):
    """`translator.training.trainer.Trainer`'s view of a classifier (see the module docstring)."""

    def __init__(self, config: dict, tokenizers: dict, log=print):
        import tensorflow as tf

        from translator.data.corpora import read_manifest

        self.config, self.log = config, log
        self.tokenizer = tokenizers["text"]
        _, manifest = read_manifest(config["data"]["corpus"], config["data"]["work_dir"])
        self.label_names = [str(label) for label in manifest["labels"]]
        self.signature = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32),
                          tf.TensorSpec([None], tf.float32)]
        settings = config["training"]
        self.train_ids, self.train_labels = read_examples(config, "train", self.tokenizer, self.label_names)
        limit = config["data"]["max_source_length"]
        self.train_ids = [ids[:limit] for ids in self.train_ids]
        self.validation_ids, self.validation_labels = read_examples(config, "validation", self.tokenizer,
                                                                    self.label_names)
        counts = np.bincount(self.train_labels, minlength=len(self.label_names))
        self.class_weights = np.ones(len(self.label_names), np.float32)
        if settings["class_weights"]:  # "balanced" as in scikit-learn; "sqrt_balanced" its square root
            balanced = len(self.train_labels) / (len(counts) * np.maximum(counts, 1))
            power = 0.5 if settings["class_weights"] == "sqrt_balanced" else 1.0
            self.class_weights = (balanced ** power).astype(np.float32)
        self.lengths = np.array([max(len(ids), 1) for ids in self.train_ids])

    def _batches(self, epoch: int):
        from translator.data.batching import length_batches

        settings = self.config["training"]
        return length_batches(self.lengths, settings["batch_tokens"], settings["max_batch_size"],
                              settings["seed"], epoch)

    def batches_per_epoch(self) -> int:
        return len(self._batches(0))

    def _arrays(self, ids, labels, indices):
        from translator.data.batching import pad

        return (pad([ids[i] or [0] for i in indices]), labels[indices], self.class_weights[labels[indices]])

    def dataset(self, epoch: int, skip: int, shards: int = 1, shard_ids=(0,)):
        import tensorflow as tf

        from translator.data.batching import shard_rows

        def batches():
            for indices in self._batches(epoch)[skip:]:
                for rows in shard_rows(indices, shards, shard_ids):
                    yield self._arrays(self.train_ids, self.train_labels, rows)

        return tf.data.Dataset.from_generator(batches, output_signature=tuple(self.signature)).prefetch(2)

    def describe(self, manifest: dict) -> str:
        weighting = self.config["training"]["class_weights"]
        weights = f", class weights {weighting}" if weighting else ""
        return f"{len(self.train_ids):,} training examples, {len(self.label_names)} classes{weights}"

    def build_model(self, dtype: str):
        return Classifier.from_settings(self.config["model"], self.tokenizer.vocabulary_size, self.label_names,
                                        dtype=dtype)

    def loss(self, model, batch, training: bool):
        import tensorflow as tf

        ids, labels, weights = batch
        logits = tf.cast(model(ids, training=training), tf.float32)
        nll = classification_loss(logits, labels)
        smoothing = self.config["training"]["label_smoothing"] if training else 0.0
        objective = classification_loss(logits, labels, smoothing) if smoothing else nll
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return tf.reduce_sum(objective * weights), tf.reduce_sum(weights), tf.reduce_sum(nll), count

    def validate(self, model, evaluate_step, epoch: int) -> dict:
        loss_sum = count = 0.0
        order = np.argsort([len(ids) for ids in self.validation_ids], kind="stable")
        for start in range(0, len(order), 256):
            batch = self._arrays(self.validation_ids, self.validation_labels, order[start:start + 256])
            batch_loss, batch_count = evaluate_step(*batch)
            loss_sum += float(batch_loss)
            count += float(batch_count)
        probabilities = model.predict_ids(self.validation_ids)
        metrics = classification_metrics(self.validation_labels, probabilities.argmax(axis=1), self.label_names)
        loss = loss_sum / count
        self.log(f"epoch {epoch + 1}: validation loss {loss:.4f}, accuracy {metrics['accuracy']:.2%}, "
                 f"macro-F1 {metrics['macro_f1']:.4f}")
        return {"validation_loss": round(loss, 5), "validation_accuracy": round(metrics["accuracy"], 5),
                "validation_macro_f1": round(metrics["macro_f1"], 5)}


# ----------------------------------------------------------------------------- evaluation

def evaluate_classifier(run, split: str = "test") -> dict:
    """Classify a split of the run's corpus; write report.json, report.md and report.html."""
    from translator.files import atomic_write_text
    from translator.models.runs import read_run_config
    from translator.reports import png, read_log

    run = Path(run)
    config = read_run_config(run)
    model = Classifier.load(run)
    ids, labels = read_examples(config, split, model.tokenizer, model.label_names)
    probabilities = model.predict_ids(ids)
    metrics = classification_metrics(labels, probabilities.argmax(axis=1), model.label_names)
    report = {"run": str(run), "corpus": config["data"]["corpus"], "split": split, "examples": len(labels),
              "accuracy": round(metrics["accuracy"], 5), "macro_f1": round(metrics["macro_f1"], 5),
              "per_class": metrics["per_class"], "confusion": metrics["confusion"],
              "labels": model.label_names, "training": read_log(run)}
    atomic_write_text(run / "report.json", json.dumps(report, indent=2) + "\n")

    lines = [f"# {config['name']}: {config['data']['corpus']} {split}", "",
             f"- examples: {len(labels):,}", f"- accuracy: **{metrics['accuracy']:.2%}**",
             f"- macro-F1: **{metrics['macro_f1']:.4f}**", "",
             "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |"
              for name, row in metrics["per_class"].items()]
    atomic_write_text(run / "report.md", "\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.array(metrics["confusion"], dtype=float)
    normalized = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(model.label_names) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(model.label_names))
    axes.set_xticks(ticks, model.label_names, rotation=60, ha="right")
    axes.set_yticks(ticks, model.label_names)
    for (row, column), count in np.ndenumerate(confusion):
        if count:
            axes.text(column, row, int(count), ha="center", va="center", fontsize=7,
                      color="white" if normalized[row, column] > 0.5 else "black")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"confusion matrix ({split}, rows sum to 1)")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    table = "".join(f"<tr><td>{name}</td><td>{row['precision']:.3f}</td><td>{row['recall']:.3f}</td>"
                    f"<td>{row['f1']:.3f}</td><td>{row['support']}</td></tr>"
                    for name, row in metrics["per_class"].items())
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>{config['name']} report</title>"
            f"<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:2px 8px}}</style>"
            f"</head><body><h1>{config['name']}: {config['data']['corpus']} {split}</h1>"
            f"<p>{len(labels):,} examples: accuracy <b>{metrics['accuracy']:.2%}</b>, "
            f"macro-F1 <b>{metrics['macro_f1']:.4f}</b></p>"
            f"<img alt='confusion matrix' style='max-width:100%' src='data:image/png;base64,{png(figure)}'>"
            f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
            f"{table}</table></body></html>")
    atomic_write_text(run / "report.html", html)
    return report

