"""Batches of sentences of similar length, sized by tokens, in an order fixed by (seed, epoch).

With random batches of 64, half of all target positions in Multi30k are padding. Here the
sentence pairs are sorted by length (ties broken at random), cut into batches whose padded
size (sentences x longest sentence) stays within ``batch_tokens``, and the batches shuffled.
The order of an epoch depends only on the seed and the epoch number, so a run resumed in the
middle of an epoch skips exactly the batches it had already trained on.

``TranslationBatches`` holds every pair in memory; ``StreamingBatches`` (corpora too large for
memory) holds one window of consecutive pairs at a time, each window a ``TranslationBatches``:
one batch maker, of which the pairs in memory are the one-window case (a streamed corpus of one
window gives the same batches, epoch by epoch: ``tests/test_streaming.py``).
"""

from __future__ import annotations

import numpy as np

from translator.special_ids import EOS_ID, PAD_ID, SOS_ID


def length_batches(lengths, batch_tokens: int, max_batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Index arrays, one per batch, for one epoch.

    ``lengths`` is the padded cost of each example (for a pair: the longer of its two sides).
    A batch holds as many examples as fit in ``batch_tokens`` at the length of its longest
    one, at most ``max_batch_size``, and always at least one.
    """
    lengths = np.asarray(lengths)
    rng = np.random.RandomState((seed * 1_000_003 + epoch) % (2**32))
    order = np.lexsort((rng.rand(len(lengths)), lengths))  # by length, random among equals
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_batch_size \
                and (end - start + 1) * lengths[order[end]] <= batch_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    rng.shuffle(batches)
    return batches


def shard_rows(indices: np.ndarray, shards: int, shard_ids=(0,)) -> list[np.ndarray]:
    """The rows of one batch that shards ``shard_ids`` of ``shards`` train on: consecutive rows
    (of similar length, so little padding), as even as can be; a shard may be empty when the
    batch has fewer rows than there are shards."""
    if shards == 1:
        return [indices]
    parts = np.array_split(indices, shards)
    return [parts[shard] for shard in shard_ids]


def pad(sequences, length: int | None = None) -> np.ndarray:
    """A [batch, length] int32 array of the sequences, padded with PAD_ID at the end."""
    length = length or max((len(s) for s in sequences), default=1)  # no rows: one column of padding
    out = np.full((len(sequences), length), PAD_ID, dtype=np.int32)
    for row, sequence in enumerate(sequences):
        out[row, :len(sequence)] = sequence[:length]
    return out


class _Batches:
    """What both kinds of batches share: an epoch's batches as a ``tf.data.Dataset``."""

    def dataset(self, epoch: int, skip: int = 0, shards: int = 1, shard_ids=(0,)):
        """The batches (or shards) of ``epoch(...)`` as a prefetching ``tf.data.Dataset``."""
        import tensorflow as tf

        spec = tf.TensorSpec(shape=(None, None), dtype=tf.int32)
        dataset = tf.data.Dataset.from_generator(lambda: self.epoch(epoch, skip, shards, shard_ids),
                                                 output_signature=(spec, spec, spec))
        return dataset.prefetch(tf.data.AUTOTUNE)


class TranslationBatches(_Batches):
    """Tokenized sentence pairs, served as (source, target_input, target_output) batches.

    ``target_input`` is ``<sos> y1 .. yn`` and ``target_output`` is ``y1 .. yn <eos>`` (teacher
    forcing); all three are padded with 0 to the longest sentence of the batch.
    """

    def __init__(self, source_ids, target_ids, batch_tokens=4096, max_batch_size=256, seed=1234):
        if len(source_ids) != len(target_ids):
            raise ValueError(f"{len(source_ids)} source and {len(target_ids)} target sentences: they must pair up")
        self.source_ids = list(source_ids)
        self.target_ids = list(target_ids)
        self.batch_tokens, self.max_batch_size, self.seed = batch_tokens, max_batch_size, seed
        self.lengths = np.array([max(len(s), len(t) + 1) for s, t in zip(self.source_ids, self.target_ids)])

    def __len__(self) -> int:
        return len(self.source_ids)

    def batches(self, epoch: int) -> list[np.ndarray]:
        return length_batches(self.lengths, self.batch_tokens, self.max_batch_size, self.seed, epoch)

    def batch_count(self) -> int:
        """Batches in one epoch (the same in every epoch)."""
        return len(self.batches(0))

    def sampled_ids(self, epoch: int) -> tuple[list, list]:
        """The (source, target) ids of every pair in ``epoch``: the same in every epoch here."""
        return self.source_ids, self.target_ids

    def arrays(self, indices, epoch: int = 0):
        all_sources, all_targets = self.sampled_ids(epoch)
        sources = [all_sources[i] for i in indices]
        targets = [all_targets[i] for i in indices]
        return (pad(sources), pad([[SOS_ID, *t] for t in targets]), pad([[*t, EOS_ID] for t in targets]))

    def epoch(self, epoch: int, skip: int = 0, shards: int = 1, shard_ids=(0,)):
        """Yield the batches of one epoch as numpy arrays, leaving out the first ``skip``. With
        ``shards`` > 1 every batch is cut into that many shards of consecutive rows (replicas of
        a distributed step), and the shards ``shard_ids`` of each batch are yielded in turn."""
        for indices in self.batches(epoch)[skip:]:
            for rows in shard_rows(indices, shards, shard_ids):
                yield self.arrays(rows, epoch)

    def padding_counts(self, epoch: int = 0) -> tuple[int, int]:
        """(real, padded) target positions in this epoch's batches."""
        real = padded = 0
        for indices in self.batches(epoch):
            target_lengths = [len(self.target_ids[i]) + 1 for i in indices]
            real += sum(target_lengths)
            padded += len(indices) * max(target_lengths)
        return real, padded

    def padding_fraction(self, epoch: int = 0) -> float:
        """The share of target positions that are padding in this epoch's batches."""
        real, padded = self.padding_counts(epoch)
        return 1.0 - real / padded


class SampledBatches(TranslationBatches):
    """`TranslationBatches` with subword regularization: every epoch the pairs' ids are drawn
    anew from their texts (``Tokenizer.sample``: BPE-dropout, seeded by seed and epoch, so a resumed
    epoch draws the same ids). Which pairs form a batch, and the batches' order, come from the
    deterministic segmentation, so every epoch has the same number of batches (a sampled
    segmentation is longer: a batch holds up to about 1.5x ``batch_tokens`` with BPE-dropout
    0.1). A pair whose sampled ids are longer than ``max_lengths`` keeps its deterministic ids."""

    def __init__(self, source_ids, target_ids, texts, tokenizers, sampling: dict, max_lengths,
                 batch_tokens=4096, max_batch_size=256, seed=1234):
        super().__init__(source_ids, target_ids, batch_tokens, max_batch_size, seed)
        self.texts, self.tokenizers, self.sampling, self.max_lengths = texts, tokenizers, sampling, max_lengths
        self._sampled_epoch, self._sampled = None, None

    def sampled_ids(self, epoch: int) -> tuple[list, list]:
        """The (source, target) ids of every pair in ``epoch``."""
        if self._sampled_epoch != epoch:
            seed = (self.seed * 1_000_003 + epoch) * 2
            sides = [self.tokenizers[side].sample(self.texts[side], self.sampling["alpha"], seed + offset)
                     for offset, side in enumerate(("source", "target"))]
            for side, fixed, limit in zip(sides, (self.source_ids, self.target_ids), self.max_lengths):
                for index, ids in enumerate(side):
                    if not 0 < len(ids) <= limit:
                        side[index] = fixed[index]
            self._sampled_epoch, self._sampled = epoch, sides
        return self._sampled


class StreamingBatches(_Batches):
    """The batches of a corpus too large for memory, read one window of pairs at a time.

    ``read_window(w)`` gives the tokenized (source_ids, target_ids) of window ``w`` (consecutive
    pairs of the corpus), for ``w`` in ``range(window_count)``. An epoch visits the windows in an
    order drawn from (seed, epoch) and serves each window's pairs as ``TranslationBatches`` does
    (sorted by length with random ties, cut by ``batch_tokens``, the batches shuffled): length
    bucketing and shuffling within a bounded window, deterministic given seed and epoch, and
    every pair once per epoch. How many batches a window makes depends on its lengths alone, not
    on the epoch, so it is counted once, on a first pass (or given as ``counts``, what an earlier
    first pass found), and a resumed epoch skips the windows it has done without reading them.
    """

    def __init__(self, read_window, window_count: int, batch_tokens=4096, max_batch_size=256, seed=1234,
                 counts: dict | None = None):
        self.read_window, self.window_count = read_window, window_count
        self.batch_tokens, self.max_batch_size, self.seed = batch_tokens, max_batch_size, seed
        if counts is not None and len(counts["window_batches"]) == window_count:  # a first pass done before
            self.window_batches = np.array(counts["window_batches"], dtype=np.int64)
            self.pairs, self._padding_fraction = counts["pairs"], counts["padding_fraction"]
            return
        self.window_batches = np.zeros(window_count, dtype=np.int64)
        self.pairs = real = padded = 0
        for window in range(window_count):
            batches = self._window(window)
            self.window_batches[window] = batches.batch_count()
            self.pairs += len(batches)
            window_real, window_padded = batches.padding_counts(window) if len(batches) else (0, 0)
            real, padded = real + window_real, padded + window_padded
        self._padding_fraction = 1.0 - real / max(padded, 1)

    def counts(self) -> dict:
        """What the first pass found (``counts=`` of another instance over the same windows)."""
        return {"window_batches": self.window_batches.tolist(), "pairs": self.pairs,
                "padding_fraction": self._padding_fraction}

    def _window(self, window: int) -> TranslationBatches:
        sources, targets = self.read_window(window)
        return TranslationBatches(sources, targets, self.batch_tokens, self.max_batch_size, self.seed)

    def __len__(self) -> int:
        return self.pairs

    def batch_count(self) -> int:
        """Batches in one epoch (the same in every epoch)."""
        return int(self.window_batches.sum())

    def window_order(self, epoch: int) -> np.ndarray:
        rng = np.random.RandomState((self.seed * 1_000_003 + epoch) % (2**32))
        return rng.permutation(self.window_count)

    def epoch(self, epoch: int, skip: int = 0, shards: int = 1, shard_ids=(0,)):
        """Yield the batches of one epoch as ``TranslationBatches.epoch`` does (``skip``, shards)."""
        done = 0
        for window in self.window_order(epoch):
            count = int(self.window_batches[window])
            if done + count <= skip:  # already trained on: not even read
                done += count
                continue
            batches = self._window(window)
            # Each window's batches have their own order, from (seed, epoch, window).
            for indices in batches.batches(epoch * self.window_count + window)[max(skip - done, 0):]:
                for rows in shard_rows(indices, shards, shard_ids):
                    yield batches.arrays(rows)
            done += count

    def padding_fraction(self, epoch: int = 0) -> float:
        """The share of target positions that are padding (measured on the first pass)."""
        return self._padding_fraction
