"""Ensemble decoding: several trained translation models searched as one.

    translator translate --run runs/A --run runs/B          # stdin -> stdout
    translator evaluate --run runs/A --run runs/B           # report in runs/ensemble-A+B/
    Translator.load(["runs/A", "runs/B"])

At every step of greedy and beam search each model reads the same prefix and the ensemble's
next-token scores are the mean of the models' log-probabilities, which the search (as for one
model's logits) normalizes over the vocabulary: the ensemble's distribution is the normalized
geometric mean of the models', and its scores are log-probabilities under it. The search code
is the one a single model uses:
`Ensemble` has a single model's decoding interface (``encode``, ``decoder.step``, and a call
that teacher-forces, for the export's ``attention``), with every model's cache held under its
own prefix. Its attention weights are the mean of the models'. An ensemble of one model is that
model: its scores pass through unchanged.

The models read the same source ids and write the same target ids, so their runs must have
tokenizers with the same pieces (`check_same_tokenizers`); their architectures may differ.
"""

from __future__ import annotations

from pathlib import Path


class EnsembleError(ValueError):
    """Runs that cannot be decoded together (the message says which and why)."""


def check_same_tokenizers(runs, tokenizers: list[dict]) -> None:
    """Refuse runs whose source or target tokenizers have other pieces than the first run's."""
    def pieces(tokenizer):
        return [tokenizer.id_to_piece(index) for index in range(tokenizer.vocabulary_size)]

    first = {side: pieces(tokenizer) for side, tokenizer in tokenizers[0].items()}
    for run, theirs in zip(runs[1:], tokenizers[1:]):
        for side in ("target", "source"):
            if pieces(theirs[side]) != first[side]:
                raise EnsembleError(
                    f"{run} has another {side} tokenizer than {runs[0]} ({theirs[side].vocabulary_size:,} pieces "
                    f"against {len(first[side]):,}, or the same number in another order): an ensemble's models "
                    f"{'write the same target ids' if side == 'target' else 'read the same source ids'}, so "
                    f"ensemble runs trained with the same tokenizer recipe on the same corpus")


class _EnsembleDecoder:
    """The ``decoder`` of an `Ensemble`: one step of every model, their log-probabilities averaged."""

    def __init__(self, models):
        self.models = models
        # Attention weights exist when every model has attention (they are averaged).
        self.attention = None if any(m.decoder.attention is None for m in models) else models[0].decoder.attention

    def restricted_output(self, pieces) -> list:
        """Every model's output projection of `pieces` only (a lexical shortlist)."""
        return [model.decoder.restricted_output(pieces) for model in self.models]

    def step(self, previous_ids, cache: dict, training=False, output=None):
        import tensorflow as tf

        outputs = output or [None] * len(self.models)
        if len(self.models) == 1:
            logits, member_cache, weights = self.models[0].decoder.step(previous_ids, _part(cache, 0),
                                                                        training=training, output=outputs[0])
            return logits, _prefixed(member_cache, 0), weights
        log_probabilities, caches, all_weights = [], {}, []
        for index, model in enumerate(self.models):
            logits, member_cache, weights = model.decoder.step(previous_ids, _part(cache, index), training=training,
                                                               output=outputs[index])
            log_probabilities.append(tf.nn.log_softmax(tf.cast(logits, tf.float32)))
            caches.update(_prefixed(member_cache, index))
            all_weights.append(weights)
        return tf.add_n(log_probabilities) / len(self.models), caches, _mean_weights(all_weights)


class Ensemble:
    """Models decoded as one (see the module docstring): ``Ensemble([model_a, model_b])``."""

    def __init__(self, models):
        self.models = list(models)
        if not self.models:
            raise EnsembleError("an ensemble needs at least one model")
        self.decoder = _EnsembleDecoder(self.models)
        self.dtype_policy = self.models[0].dtype_policy

    def encode(self, source_ids, training=False) -> dict:
        cache = {}
        for index, model in enumerate(self.models):
            cache.update(_prefixed(model.encode(source_ids, training=training), index))
        return cache

    def __call__(self, inputs, training=False, return_attention=False):
        """Teacher forcing, as ``Seq2Seq.__call__``: the mean log-probabilities [batch, time,
        vocabulary] of every position (with ``return_attention``, and the mean weights)."""
        import tensorflow as tf

        outputs = [model(inputs, training=training, return_attention=return_attention) for model in self.models]
        if len(self.models) == 1:
            return outputs[0]
        logits = [output[0] if return_attention else output for output in outputs]
        mean = tf.add_n([tf.nn.log_softmax(tf.cast(x, tf.float32)) for x in logits]) / len(self.models)
        return (mean, _mean_weights([output[1] for output in outputs])) if return_attention else mean

    @property
    def variables(self) -> list:
        return [variable for model in self.models for variable in model.variables]

    @property
    def trainable_weights(self) -> list:
        return [weight for model in self.models for weight in model.trainable_weights]


def _prefixed(cache: dict, index: int) -> dict:
    return {f"{index}/{key}": value for key, value in cache.items()}


def _part(cache: dict, index: int) -> dict:
    prefix = f"{index}/"
    return {key[len(prefix):]: value for key, value in cache.items() if key.startswith(prefix)}


def _mean_weights(weights: list):
    import tensorflow as tf

    if any(w is None for w in weights):
        return None
    return tf.add_n([tf.cast(w, tf.float32) for w in weights]) / len(weights)


def ensemble_directory(runs) -> Path:
    """Where the report of an ensemble's evaluation goes by default: ``runs/ensemble-A+B`` beside
    the first run."""
    runs = [Path(run) for run in runs]
    return runs[0].parent / ("ensemble-" + "+".join(run.name for run in runs))
