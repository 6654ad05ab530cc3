"""Lexical shortlists: decoding that scores a few thousand target pieces instead of all of them.

    translator shortlist --run runs/NAME          # -> runs/NAME/shortlist.npz, from the training pairs
    translator translate --run runs/NAME --shortlist
    Translator.load("runs/NAME", shortlist=True)  # or `decoding: shortlist: true` in the config

The output projection is most of a decoding step's multiply-adds (79% for the recipe's
GRU-256 decoder over 8,000 pieces), and most of its logits belong to pieces the source cannot
produce. As in Marian's lexical shortlists and CTranslate2's vocabulary mapping, each batch is
decoded over a subset of the target vocabulary: the special pieces, the `frequent` target
pieces found in most training sentences, and for every source piece of the batch its
`per_source` most probable translations under IBM Model 1 trained on the training pairs
(Marian takes them from fast_align, whose model 2 adds a preference for the diagonal that a
lexical table does not need). The subset is the union over the batch's sentences, so a sentence's translation may
depend on the other sentences of its batch (no longer so with a shortlist of every piece:
`Shortlist.every_piece`, whose output is the full search's, byte for byte).

The search itself is unchanged: `Shortlisted` wraps a model so that its decoder's logits are
those of the shortlist's pieces, in their order; the special pieces come first, so their ids
are the same in both numberings, and the search's ids are mapped back at the end. Scores are
log-probabilities normalised over the shortlist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from translator.special_ids import EOS_ID

SHORTLIST_FILE = "shortlist.npz"
PER_SOURCE, FREQUENT = 10, 300  # the defaults of `translator shortlist` (README, "Shortlists")
SPECIAL_PIECES = EOS_ID + 1  # ids 0 .. EOS_ID are always in the shortlist, in that order


class ShortlistError(ValueError):
    """A shortlist that cannot be built or used with this run (the message says why and how to fix it)."""


@dataclass
class Shortlist:
    """For every source piece the target pieces it may produce (``table`` int32 [source
    vocabulary, per_source], padded with 0), and the target pieces always kept (``frequent``)."""

    table: np.ndarray
    frequent: np.ndarray
    target_vocabulary: int

    @classmethod
    def every_piece(cls, source_vocabulary: int, target_vocabulary: int) -> Shortlist:
        """The shortlist that keeps the whole vocabulary (its search is the full one)."""
        return cls(np.zeros([source_vocabulary, 1], np.int32), np.arange(target_vocabulary, dtype=np.int32),
                   target_vocabulary)

    def save(self, path: str | Path) -> None:
        import io

        from translator.files import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, table=self.table, frequent=self.frequent, target_vocabulary=self.target_vocabulary)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Shortlist:
        path = Path(path)
        if not path.is_file():
            raise ShortlistError(f"{path} not found: build it with `translator shortlist --run {path.parent}`")
        with np.load(path) as stored:
            return cls(stored["table"], stored["frequent"], int(stored["target_vocabulary"]))

    def check_fits(self, source_vocabulary: int, target_vocabulary: int, where: str) -> None:
        if (self.table.shape[0], self.target_vocabulary) != (source_vocabulary, target_vocabulary):
            raise ShortlistError(
                f"{where}: the shortlist is for {self.table.shape[0]:,} source and {self.target_vocabulary:,} target "
                f"pieces, the model has {source_vocabulary:,} and {target_vocabulary:,}; build it again with "
                f"`translator shortlist --run RUN`")

    def pieces(self, source_ids):
        """The batch's shortlist: int32 [pieces] target ids in increasing order, ids 0 ..
        EOS_ID first, for int32 [batch, time] `source_ids` (0-padded). A graph function."""
        import tensorflow as tf

        table, frequent = tf.constant(self.table), tf.constant(self.frequent)
        candidates = tf.concat([tf.range(SPECIAL_PIECES, dtype=tf.int32), frequent,
                                tf.reshape(tf.gather(table, tf.reshape(source_ids, [-1])), [-1])], axis=0)
        kept = tf.math.unsorted_segment_max(tf.ones_like(candidates), candidates, self.target_vocabulary)
        return tf.cast(tf.where(kept > 0)[:, 0], tf.int32)


def build_shortlist(sources, targets, source_vocabulary: int, target_vocabulary: int, per_source: int = PER_SOURCE,
                    frequent: int = FREQUENT, iterations: int = 5) -> Shortlist:
    """The shortlist of token-id pairs (`sources`, `targets`: lists of id lists): for each source
    piece its `per_source` most probable target pieces under IBM Model 1 (Brown et al. 1993:
    ``t(target | source)`` by `iterations` rounds of EM from uniform, with a NULL source word),
    and the `frequent` target pieces in most sentences."""
    if per_source < 1 or frequent < 1:
        raise ShortlistError(f"per_source and frequent must be at least 1; got {per_source} and {frequent}")
    null = 0  # the padding id stands for the NULL word that every sentence's source has
    source_flat = np.concatenate([[null, *source] for source in sources]).astype(np.int64) if sources else \
        np.zeros(0, np.int64)
    target_flat = np.concatenate([np.asarray(target, np.int64) for target in targets] + [np.zeros(0, np.int64)])
    source_lengths = np.array([len(source) + 1 for source in sources], np.int64)
    target_lengths = np.array([len(target) for target in targets], np.int64)
    source_starts = np.cumsum(source_lengths) - source_lengths
    # One link per (target token, source token of its sentence): `position` is the target token's.
    pair_of_target = np.repeat(np.arange(len(targets)), target_lengths)
    links_per_target = source_lengths[pair_of_target]
    position = np.repeat(np.arange(len(target_flat)), links_per_target)
    within = np.arange(len(position)) - np.repeat(np.cumsum(links_per_target) - links_per_target, links_per_target)
    link_sources = source_flat[source_starts[pair_of_target[position]] + within]
    keys, link_key = np.unique(link_sources * target_vocabulary + target_flat[position], return_inverse=True)
    key_source, key_target = keys // target_vocabulary, keys % target_vocabulary
    probability = np.ones(len(keys))
    for _ in range(iterations):  # E: each target token's links share it by t(t | s); M: renormalize per s
        link_probability = probability[link_key]
        posterior = link_probability / np.bincount(position, weights=link_probability)[position]
        expected = np.bincount(link_key, weights=posterior, minlength=len(keys))
        probability = expected / np.bincount(key_source, weights=expected, minlength=source_vocabulary)[key_source]
    keep = (key_target >= SPECIAL_PIECES) & (key_source >= SPECIAL_PIECES)
    key_source, key_target, probability = key_source[keep], key_target[keep], probability[keep]
    order = np.lexsort((-probability, key_source))  # by source piece, most probable first
    key_source, key_target = key_source[order], key_target[order]
    rank = np.arange(len(key_source)) - np.searchsorted(key_source, np.arange(source_vocabulary))[key_source]
    table = np.zeros([source_vocabulary, per_source], np.int32)
    chosen = rank < per_source
    table[key_source[chosen], rank[chosen]] = key_target[chosen]
    # Sentences each target piece is in: the distinct (sentence, piece) pairs, counted by piece.
    in_sentences = np.bincount(np.unique(pair_of_target * target_vocabulary + target_flat) % target_vocabulary,
                               minlength=target_vocabulary)
    most_frequent = np.argsort(-in_sentences, kind="stable")[:frequent].astype(np.int32)
    return Shortlist(table, np.sort(most_frequent), target_vocabulary)


def build_for_run(run: str | Path, per_source: int = PER_SOURCE, frequent: int = FREQUENT,
                  max_pairs: int = 100_000) -> tuple[Path, Shortlist]:
    """`build_shortlist` from the run's training split (its first `max_pairs` pairs, through the
    run's tokenizers: the links of 100,000 pairs of 15 pieces take about 1 GB), saved as
    ``RUN/shortlist.npz``."""
    from itertools import islice

    from translator.data.corpora import iter_prepared_split
    from translator.data.tokenizers import load_tokenizers
    from translator.models.runs import read_run_config

    run = Path(run)
    config = read_run_config(run)
    if config.get("kind", "seq2seq") != "seq2seq":
        raise ShortlistError(f"{run} is a {config.get('kind')} run: shortlists are for translation runs")
    tokenizers = load_tokenizers(run / "tokenizers")
    data = config["data"]
    sources, targets = [], []
    rows = islice(iter_prepared_split(data["corpus"], "train", data.get("work_dir", "work")), max_pairs)
    while batch := list(islice(rows, 50_000)):
        sources += tokenizers["source"].encode([row["source"] for row in batch])
        targets += tokenizers["target"].encode([row["target"] for row in batch])
    shortlist = build_shortlist(sources, targets, tokenizers["source"].vocabulary_size,
                                tokenizers["target"].vocabulary_size, per_source, frequent)
    shortlist.save(run / SHORTLIST_FILE)
    return run / SHORTLIST_FILE, shortlist


class _ShortlistedDecoder:
    """A decoder whose step reads and writes shortlist ids and scores only the shortlist's pieces."""

    def __init__(self, decoder, pieces):
        self.decoder, self.pieces = decoder, pieces
        self.attention = decoder.attention
        self.output = decoder.restricted_output(pieces)  # the projection's columns, taken once per batch

    def step(self, previous_ids, cache: dict, training=False):
        import tensorflow as tf

        return self.decoder.step(tf.gather(self.pieces, previous_ids), cache, training=training, output=self.output)


class Shortlisted:
    """`model` decoding over `pieces` (int32 [pieces], from `Shortlist.pieces`): the search's
    interface (``encode``, ``decoder.step``) in shortlist ids; `full_ids` maps them back."""

    def __init__(self, model, pieces):
        self.model, self.pieces = model, pieces
        self.decoder = _ShortlistedDecoder(model.decoder, pieces)
        self.dtype_policy = model.dtype_policy

    def encode(self, source_ids, training=False) -> dict:
        return self.model.encode(source_ids, training=training)

    def full_ids(self, ids):
        import tensorflow as tf

        return tf.gather(self.pieces, ids)


def search_with(shortlist: Shortlist | None, model, source_ids, search):
    """``search(model)`` -> (sequences, *rest) over `shortlist`'s pieces of the batch
    `source_ids` (None: the whole vocabulary), its sequences' ids mapped back to the vocabulary's."""
    if shortlist is None:
        return search(model)
    shortlisted = Shortlisted(model, shortlist.pieces(source_ids))
    sequences, *rest = search(shortlisted)
    return (shortlisted.full_ids(sequences), *rest)
