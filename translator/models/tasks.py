"""The task interface: what `translator.training.trainer.Trainer` needs to know about one kind of model.

A task reads its data, builds its model, gives the loss of a batch and the validation figures
of an epoch; the trainer owns everything else (schedule, checkpoints, resumption, early
stopping, logs, strategies). The three tasks live beside their models:
`translator.training.translation_task.TranslationTask` (Seq2Seq), `translator.models.language_models.LanguageModelTask`
and `translator.models.classifiers.ClassificationTask`; `translator.training.trainer.make_task` picks one from
the config's ``model.type``.
"""

from __future__ import annotations

import abc


class Task(abc.ABC):
    """One kind of model, as the trainer sees it. Constructed as ``Task(config, tokenizers, log)``."""

    signature: list  # the tf.TensorSpecs of one batch (the compiled steps' input signature)

    @abc.abstractmethod
    def batches_per_epoch(self) -> int:
        """Training batches in one epoch."""

    @abc.abstractmethod
    def dataset(self, epoch: int, skip: int, shards: int = 1, shard_ids=(0,)):
        """The epoch's training batches as a ``tf.data.Dataset``, without the first ``skip``; with
        ``shards`` > 1 only the rows of shards ``shard_ids`` of each batch (one replica's share)."""

    @abc.abstractmethod
    def describe(self, manifest: dict) -> str:
        """One line on the data, for the log."""

    @abc.abstractmethod
    def build_model(self, dtype: str):
        """The model, built (every weight created) in the training precision's dtype policy."""

    def start_epoch(self, epoch: int, batches_done: int) -> None:
        """Called before the first batch of every epoch (or of what is left of it)."""
        return None  # most tasks carry nothing from one epoch to the next

    def checkpointed_variables(self) -> list:
        """Variables of the task (not the model's) that a checkpoint must hold, e.g. carried state."""
        return []

    @abc.abstractmethod
    def loss(self, model, batch, training: bool):
        """(objective sum, objective count, reported loss sum, reported count) of one batch: the
        gradient follows objective sum / count; the log reports the reported loss."""

    @abc.abstractmethod
    def validate(self, model, evaluate_step, epoch: int) -> dict:
        """The epoch's validation figures (``validation_loss`` and others) for the log row."""
