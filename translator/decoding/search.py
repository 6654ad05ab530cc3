"""Search: turning a trained model into token sequences, batched and compiled.

Greedy and beam search each run inside one ``tf.function``: the encoder once, then a
``tf.while_loop`` over the decoder's ``step`` with its explicit cache. Nothing is recomputed
for the prefix, there is no Python loop per token or per sentence, and the loop stops as soon
as every sentence is done.

A model here is anything with ``encode(source_ids) -> cache`` and
``decoder.step(previous_ids, cache) -> (logits, cache, attention_weights)`` whose cache is a
dict of batch-major tensors; ``Seq2Seq`` is one, and the tests use a hand-built one.

The length limit of each sentence is ``max_length_ratio * source_length + max_length_offset``
(as in OpenNMT/fairseq), so a long source may produce a long translation while a short one
cannot run away.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from translator.special_ids import EOS_ID, PAD_ID, SOS_ID


def length_limits(source_ids, max_length_ratio: float, max_length_offset: int):
    """Per-sentence maximum output length (``<eos>`` included), int32 [batch]."""
    source_lengths = tf.reduce_sum(tf.cast(tf.not_equal(source_ids, PAD_ID), tf.float32), axis=1)
    return tf.cast(tf.math.ceil(source_lengths * max_length_ratio), tf.int32) + max_length_offset


TOP_K_BLOCK = 64  # vocabulary entries per block of `vocabulary_top_k`'s first pass


def vocabulary_top_k(logits, k: int):
    """``tf.math.top_k(logits, k)`` for a [rows, vocabulary] tensor, the same values and indices
    (ties too: the lower index first), in two cheap passes instead of one selection over the
    whole vocabulary, which was a fifth of a beam search step: the maximum of every block of
    `TOP_K_BLOCK` entries, the k best blocks (the k best entries lie in them; a block that ties
    with a needed one has a higher index, so it ranks after it), and the k best entries of
    those blocks, taken in vocabulary order."""
    vocabulary = logits.shape[-1]
    if vocabulary is None or vocabulary < 8 * k * TOP_K_BLOCK:
        return tf.math.top_k(logits, k=k)
    blocks = -(-vocabulary // TOP_K_BLOCK)
    if blocks * TOP_K_BLOCK != vocabulary:
        logits = tf.pad(logits, [[0, 0], [0, blocks * TOP_K_BLOCK - vocabulary]], constant_values=float("-inf"))
    logits = tf.reshape(logits, [-1, blocks, TOP_K_BLOCK])
    _, best_blocks = tf.math.top_k(tf.reduce_max(logits, axis=-1), k=k)
    best_blocks = tf.sort(best_blocks, axis=-1)
    values, places = tf.math.top_k(tf.reshape(tf.gather(logits, best_blocks, batch_dims=1), [-1, k * TOP_K_BLOCK]),
                                   k=k)
    return values, tf.gather(best_blocks, places // TOP_K_BLOCK, batch_dims=1) * TOP_K_BLOCK + places % TOP_K_BLOCK


def greedy_search(model, source_ids, max_length_ratio: float = 2.0, max_length_offset: int = 10,
                  return_scores: bool = False):
    """Most probable next token at every step. Returns int32 [batch, time] ids, ``<eos>``
    included where produced, padded with 0 after it; with ``return_scores=True`` also the
    float32 [batch] log-probabilities of those sequences.

    Finished sentences leave the batch: once at least a quarter of the rows still computed
    have produced ``<eos>``, the loop gathers the others (their cache and limits) and goes on
    with those only, so a batch costs about the sum of its translations' lengths, not its size
    times the longest. No row's numbers depend on the other rows.
    """
    source_ids = tf.convert_to_tensor(source_ids, tf.int32)
    batch_size = tf.shape(source_ids)[0]
    cache = model.encode(source_ids, training=False)
    state = {
        "rows": tf.range(batch_size),  # each computed row's place in the batch
        "limits": length_limits(source_ids, max_length_ratio, max_length_offset),
        "tokens": tf.fill([batch_size], tf.constant(SOS_ID, tf.int32)),
        "finished": tf.zeros([batch_size], tf.bool),
    }
    output = tf.TensorArray(tf.int32, size=0, dynamic_size=True)  # step -> [batch] token ids
    scores = tf.zeros([batch_size], tf.float32)

    def keep_going(step, state, cache, output, scores):
        return tf.logical_not(tf.reduce_all(state["finished"]))

    def advance(step, state, cache, output, scores):
        logits, cache, _ = model.decoder.step(state["tokens"], cache, training=False)
        next_tokens = tf.math.top_k(logits, 1).indices[:, 0]
        next_tokens = tf.where(step + 1 >= state["limits"], tf.constant(EOS_ID, tf.int32), next_tokens)
        finished = state["finished"]
        next_tokens = tf.where(finished, tf.constant(PAD_ID, tf.int32), next_tokens)
        places = state["rows"][:, None]
        output = output.write(step, tf.scatter_nd(places, next_tokens, [batch_size]))
        if return_scores:  # a softmax normalizer over the vocabulary: only when asked for
            logits = tf.cast(logits, tf.float32)
            log_probs = tf.gather(logits, next_tokens, batch_dims=1) - tf.reduce_logsumexp(logits, axis=-1)
            scores = tf.tensor_scatter_nd_add(scores, places, tf.where(finished, 0.0, log_probs))
        finished = tf.logical_or(finished, tf.equal(next_tokens, EOS_ID))
        state = {**state, "tokens": next_tokens, "finished": finished}
        alive = tf.reduce_sum(tf.cast(tf.logical_not(finished), tf.int32))
        rows = tf.size(finished)

        def drop_finished():
            keep = tf.where(tf.logical_not(finished))[:, 0]
            return ({key: tf.gather(value, keep) for key, value in state.items()},
                    {key: tf.gather(value, keep) for key, value in cache.items()})

        state, cache = tf.cond(tf.logical_and(alive > 0, 4 * alive <= 3 * rows),
                               drop_finished, lambda: (state, cache))
        return step + 1, state, cache, output, scores

    def any_rows(value):
        return tf.TensorShape([None]).concatenate(value.shape[1:])

    invariants = (tf.TensorShape([]), {key: any_rows(value) for key, value in state.items()},
                  {key: any_rows(value) for key, value in cache.items()}, None, tf.TensorShape([None]))
    _, _, _, output, scores = tf.while_loop(
        keep_going, advance, (tf.constant(0), state, cache, output, scores),
        shape_invariants=invariants, maximum_iterations=tf.reduce_max(state["limits"]),
    )
    sequences = tf.transpose(output.stack())
    return (sequences, scores) if return_scores else sequences


def _split_cache(first_cache: dict, cache: dict):
    """Cache entries that ``step`` changes (the loop carries them) and those it returns as
    they were (memory, its projection, the mask: computed once, never copied per step)."""
    changing = {key: value for key, value in first_cache.items() if value is not cache.get(key)}
    constant = {key: value for key, value in first_cache.items() if key not in changing}
    return changing, constant


class Hypotheses(NamedTuple):
    """A beam of each sentence: int32 [batch, beam, time] token ids, float32 [batch, beam]
    scores, and float32 [batch, beam, time, source_time] attention weights (time 0 and
    source_time 0 when they are not kept)."""

    sequences: tf.Tensor
    scores: tf.Tensor
    attention: tf.Tensor


class BeamState(NamedTuple):
    """What beam search carries from one step to the next, for the sentences still computed
    (``rows`` of them; the flat tensors hold ``rows * beam`` hypotheses)."""

    step: tf.Tensor  # tokens generated so far
    logits: tf.Tensor  # the next token's logits of every alive hypothesis, [rows * beam, vocabulary]
    weights: tf.Tensor  # their attention weights, [rows * beam, source_time]
    cache: dict  # the decoder cache entries that change at every step, [rows * beam, ...]
    constant: dict  # those the decoder returns unchanged (memory, its projection, the mask)
    alive: Hypotheses  # unfinished hypotheses (scores: log-probabilities)
    finished: Hypotheses  # ended in <eos> (scores: length-penalized), best first
    done: tf.Tensor  # bool [rows]: the sentence's finished beam is final
    rows: tf.Tensor  # int32 [rows]: each sentence's place in the batch
    limits: tf.Tensor  # int32 [rows]: their length limits
    results: Hypotheses  # the final beams of the whole batch, [batch, beam, maximum length, ...]


def beam_search(model, source_ids, beam_size: int = 5, length_penalty: float = 0.6,
                max_length_ratio: float = 2.0, max_length_offset: int = 10, return_attention: bool = False):
    """Beam search with the GNMT length penalty ``((5 + length) / 6) ** length_penalty``.

    As in fairseq: every step takes the ``2 * beam_size`` best one-token extensions of the
    alive hypotheses of each sentence; those that end in ``<eos>`` and rank within the best
    ``beam_size`` are finished (scored with the length penalty), and the best ``beam_size``
    that do not end stay alive. A sentence is done when it has ``beam_size`` finished
    hypotheses, or at its length limit, where ``<eos>`` is forced. With ``beam_size=1`` this
    is exactly greedy search.

    Done sentences leave the batch (as in greedy search): once at least a quarter of the
    sentences still computed are done, their finished beams are written to the results and
    the loop goes on with the others only (their hypotheses, cache and encoder memory). No
    sentence's numbers depend on the others'.

    Returns ``(sequences, scores, attention)``: int32 [batch, beam, time] n-best lists sorted
    by score (best first, ``<eos>``-terminated, 0-padded), float32 [batch, beam] penalized
    log-probabilities, and float32 [batch, beam, time, source_time] attention weights of each
    hypothesis (only with ``return_attention=True``, else None).
    """
    source_ids = tf.convert_to_tensor(source_ids, tf.int32)
    limits = length_limits(source_ids, max_length_ratio, max_length_offset)  # [batch]
    beams = _Beams(model, beam_size, length_penalty, tf.reduce_max(limits), tf.shape(source_ids)[1],
                   return_attention)
    state, shapes = beams.start(source_ids, limits)
    (final,) = tf.while_loop(lambda state: tf.logical_not(tf.reduce_all(state.done)), beams.body, (state,),
                             shape_invariants=(shapes,), maximum_iterations=beams.maximum)
    results = beams.write_results(final.results, final.rows[:, None], final.finished, final.step)
    return (results.sequences[:, :, :final.step], results.scores,
            results.attention[:, :, :final.step] if return_attention else None)


class _Beams:
    """The steps of `beam_search` for one batch: `start` makes the first state, `body` is one
    step of the loop (`expand`, then the alive and finished hypotheses, then the decoder),
    `leave` lets done sentences leave the batch, `write_results` writes their beams out."""

    def __init__(self, model, beam_size, length_penalty, maximum, source_time, with_attention):
        self.model, self.k, self.length_penalty = model, beam_size, length_penalty
        self.negative_infinity = tf.constant(-1e9, tf.float32)
        self.maximum, self.source_time, self.with_attention = maximum, source_time, with_attention

    def penalty(self, length):
        return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, self.length_penalty)

    def unflatten(self, x):  # [rows * beam, ...] -> [rows, beam, ...]
        return tf.reshape(x, tf.concat([[-1, self.k], tf.shape(x)[1:]], 0))

    @staticmethod
    def gather_beams(x, beam_indices):  # x [rows, beam, ...], beam_indices [rows, n]
        return tf.gather(x, beam_indices, batch_dims=1)

    def start(self, source_ids, limits) -> tuple[BeamState, BeamState]:
        """The state before the first step (every beam of a sentence starts from the same encoder
        output, the first step taken), and the loop's shape invariants."""
        k, batch_size, source_time = self.k, tf.shape(source_ids)[0], self.source_time
        cache = self.model.encode(source_ids, training=False)
        cache = {key: tf.repeat(value, k, axis=0) for key, value in cache.items()}
        start = tf.fill([batch_size * k], tf.constant(SOS_ID, tf.int32))
        logits, first_cache, weights = self.model.decoder.step(start, cache, training=False)
        changing, constant = _split_cache(first_cache, cache)
        if weights is None or not self.with_attention:
            weights = tf.zeros([batch_size * k, source_time], tf.float32)
        weights = tf.cast(weights, tf.float32)  # a bfloat16 model attends in bfloat16
        first_scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], self.negative_infinity)], 0)[None], [batch_size, 1])
        attention_shape = [batch_size, k, 0, source_time] if self.with_attention else [batch_size, k, 0, 0]
        no_hypotheses = tf.zeros([batch_size, k, 0], tf.int32)
        results_attention = [batch_size, k, self.maximum, source_time] if self.with_attention else \
            [batch_size, k, 0, 0]
        state = BeamState(
            step=tf.constant(0), logits=logits, weights=weights, cache=changing, constant=constant,
            alive=Hypotheses(no_hypotheses, first_scores, tf.zeros(attention_shape, tf.float32)),
            finished=Hypotheses(no_hypotheses, tf.fill([batch_size, k], self.negative_infinity),
                                tf.zeros(attention_shape, tf.float32)),
            done=tf.zeros([batch_size], tf.bool), rows=tf.range(batch_size), limits=limits,
            results=Hypotheses(tf.zeros([batch_size, k, self.maximum], tf.int32),
                               tf.fill([batch_size, k], self.negative_infinity), tf.zeros(results_attention, tf.float32)))
        hypotheses_shape = Hypotheses(tf.TensorShape([None, None, None]), tf.TensorShape([None, None]),
                                      tf.TensorShape([None, None, None, None]))

        def any_rows(entries):
            return {key: tf.TensorShape([None]).concatenate(value.shape[1:]) for key, value in entries.items()}

        shapes = BeamState(
            step=tf.TensorShape([]), logits=tf.TensorShape([None, logits.shape[-1]]),
            weights=tf.TensorShape([None, None]), cache=any_rows(changing), constant=any_rows(constant),
            alive=hypotheses_shape, finished=hypotheses_shape, done=tf.TensorShape([None]),
            rows=tf.TensorShape([None]), limits=tf.TensorShape([None]), results=hypotheses_shape)
        return state, shapes

    def expand(self, step, limits, logits, weights, alive_sequences, alive_scores, alive_attention):
        """The best 2k one-token extensions of the alive hypotheses of every sentence.

        They are among the best 2k tokens of each hypothesis, so the vocabulary is searched
        once per hypothesis ([rows * beam, vocabulary]) and the sentence-level choice is
        among self.k * 2k candidates. The log-softmax normalizer comes from the softmax of the best
        token, logsumexp = best logit - log p(best), well conditioned since p(best) >= 1 / V:
        one softmax instead of the several passes of a logsumexp.
        """
        rows = tf.shape(limits)[0]
        logits = tf.cast(logits, tf.float32)
        vocabulary = logits.shape[-1]  # None for a shortlist (`translator.decoding.shortlists`), which may be smaller than 2k
        width = min(2 * self.k, vocabulary) if vocabulary is not None else tf.minimum(2 * self.k, tf.shape(logits)[-1])
        top_logits, top_tokens = vocabulary_top_k(logits, width)  # [rows * beam, width]
        best_probability = tf.gather(tf.nn.softmax(logits), top_tokens[:, 0], batch_dims=1)
        normalizer = top_logits[:, 0] - tf.math.log(best_probability)
        at_limit = tf.repeat(step + 1 >= limits, self.k)  # at its length limit a sentence can only end

        def force_eos():
            only_eos = tf.concat([logits[:, EOS_ID:EOS_ID + 1], tf.fill([tf.shape(logits)[0], width - 1], -1e9)], 1)
            return (tf.where(at_limit[:, None], only_eos, top_logits),
                    tf.where(at_limit[:, None], tf.constant(EOS_ID, tf.int32), top_tokens))

        top_logits, top_tokens = tf.cond(tf.reduce_any(at_limit), force_eos, lambda: (top_logits, top_tokens))
        candidates = top_logits + (tf.reshape(alive_scores, [-1]) - normalizer)[:, None]
        top_scores, top_indices = tf.math.top_k(tf.reshape(candidates, [rows, self.k * width]), k=2 * self.k)
        beams = top_indices // width
        tokens = tf.gather(tf.reshape(top_tokens, [rows, self.k * width]), top_indices, batch_dims=1)
        sequences = tf.concat([self.gather_beams(alive_sequences, beams), tokens[:, :, None]], axis=2)
        attention = self.gather_beams(alive_attention, beams)
        if self.with_attention:
            attention = tf.concat([attention, self.gather_beams(self.unflatten(weights), beams)[:, :, None, :]], axis=2)
        return sequences, top_scores, beams, tokens, attention

    def write_results(self, results: Hypotheses, places, finished: Hypotheses, length) -> Hypotheses:
        """`results` with the finished beams of the sentences at `places` ([n, 1]) written in,
        their time padded from `length` to the self.maximum."""
        more = self.maximum - length
        attention = finished.attention
        if self.with_attention:
            attention = tf.pad(attention, [[0, 0], [0, 0], [0, more], [0, 0]])
        return Hypotheses(
            tf.tensor_scatter_nd_update(results.sequences, places,
                                        tf.pad(finished.sequences, [[0, 0], [0, 0], [0, more]])),
            tf.tensor_scatter_nd_update(results.scores, places, finished.scores),
            tf.tensor_scatter_nd_update(results.attention, places, attention) if self.with_attention
            else results.attention)

    def leave(self, state: BeamState) -> BeamState:
        """The done sentences' beams written to the results, and the others only kept."""
        gone, keep = tf.where(state.done)[:, 0], tf.where(tf.logical_not(state.done))[:, 0]

        def per_sentence(x):
            return tf.gather(x, keep)

        def per_hypothesis(x):  # [rows * beam, ...]: the kept sentences' beams
            return tf.reshape(tf.gather(self.unflatten(x), keep), tf.concat([[-1], tf.shape(x)[1:]], 0))

        def hypotheses(h: Hypotheses) -> Hypotheses:
            return Hypotheses(*(per_sentence(x) for x in h))

        results = self.write_results(state.results, tf.gather(state.rows, gone)[:, None],
                                Hypotheses(*(tf.gather(x, gone) for x in state.finished)), state.step)
        return BeamState(
            state.step, per_hypothesis(state.logits), per_hypothesis(state.weights),
            {key: per_hypothesis(value) for key, value in state.cache.items()},
            {key: per_hypothesis(value) for key, value in state.constant.items()},
            hypotheses(state.alive), hypotheses(state.finished), per_sentence(state.done),
            per_sentence(state.rows), per_sentence(state.limits), results)

    def body(self, state: BeamState) -> tuple[BeamState]:
        rows = tf.shape(state.done)[0]
        sequences, scores, beams, tokens, attention = self.expand(
            state.step, state.limits, state.logits, state.weights, *state.alive)
        ended = tf.equal(tokens, EOS_ID)
        # Alive: the best k extensions that did not end.
        alive_scores, alive_pick = tf.math.top_k(tf.where(ended, self.negative_infinity, scores), k=self.k)
        alive = Hypotheses(self.gather_beams(sequences, alive_pick), alive_scores, self.gather_beams(attention, alive_pick))
        alive_beams, alive_tokens = self.gather_beams(beams, alive_pick), self.gather_beams(tokens, alive_pick)
        # Finished: the best self.k among the old finished and the extensions that ended now
        # within the best self.k of this step (the candidates are sorted by score).
        length = state.step + 1
        in_beam = tf.range(2 * self.k)[None, :] < self.k
        new_finished = tf.where(tf.logical_and(ended, in_beam), scores / self.penalty(length), self.negative_infinity)
        padding = tf.zeros([rows, self.k, 1], tf.int32)
        all_sequences = tf.concat([tf.concat([state.finished.sequences, padding], axis=2), sequences], axis=1)
        all_scores = tf.concat([state.finished.scores, new_finished], axis=1)
        if self.with_attention:
            attention_padding = tf.zeros([rows, self.k, 1, self.source_time], tf.float32)
            all_attention = tf.concat([tf.concat([state.finished.attention, attention_padding], axis=2), attention],
                                      axis=1)
        else:
            all_attention = tf.concat([state.finished.attention, attention], axis=1)
        # A sentence already done keeps its finished set as it was (positions 0..k-1), so
        # what other sentences of the batch do never changes its result.
        _, pick = tf.math.top_k(all_scores, k=self.k)
        pick = tf.where(state.done[:, None], tf.range(self.k)[None, :], pick)
        finished = Hypotheses(self.gather_beams(all_sequences, pick), self.gather_beams(all_scores, pick),
                              self.gather_beams(all_attention, pick))
        # A sentence is done with beam_size finished hypotheses, or at its length limit.
        full = tf.reduce_all(finished.scores > self.negative_infinity / 2, axis=1)
        done = tf.logical_or(state.done, tf.logical_or(length >= state.limits, full))
        # Reorder the changing cache along the chosen beams, and take one step.
        flat_beams = tf.reshape(alive_beams + tf.range(rows)[:, None] * self.k, [-1])
        changing = {key: tf.gather(value, flat_beams) for key, value in state.cache.items()}
        logits, new_cache, new_weights = self.model.decoder.step(
            tf.reshape(alive_tokens, [-1]), {**state.constant, **changing}, training=False)
        if new_weights is None or not self.with_attention:
            new_weights = tf.zeros([rows * self.k, self.source_time], tf.float32)
        state = BeamState(length, logits, tf.cast(new_weights, tf.float32), {key: new_cache[key] for key in changing},
                          state.constant, alive, finished, done, state.rows, state.limits, state.results)
        remaining = tf.reduce_sum(tf.cast(tf.logical_not(done), tf.int32))
        return (tf.cond(tf.logical_and(remaining > 0, 4 * remaining <= 3 * rows), lambda: self.leave(state),
                        lambda: state),)


def n_best_search(model, source_ids, beam_size: int, length_penalty: float, max_length_ratio: float = 2.0,
                  max_length_offset: int = 10):
    """``(sequences, scores)`` as `Translator.translate_detailed` searches them: int32 [batch,
    beam, time] n-best lists and their float32 [batch, beam] scores from `beam_search`, or, for
    beam size 1, from `greedy_search` (the same tokens, faster) with the GNMT length penalty
    applied to its log-probability."""
    if beam_size > 1:
        sequences, scores, _ = beam_search(model, source_ids, beam_size, length_penalty, max_length_ratio,
                                           max_length_offset)
        return sequences, scores
    sequences, scores = greedy_search(model, source_ids, max_length_ratio, max_length_offset, return_scores=True)
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(sequences, PAD_ID), tf.float32), axis=1)
    scores /= tf.pow((5.0 + lengths) / 6.0, length_penalty)
    return sequences[:, None, :], scores[:, None]


def strip_special(ids) -> list[list[int]]:
    """Rows of ids up to (not including) the first ``<eos>``, without padding."""
    rows = []
    for row in ids.tolist() if hasattr(ids, "tolist") else ids:
        out = []
        for token in row:
            if token == EOS_ID:
                break
            if token != PAD_ID:
                out.append(token)
        rows.append(out)
    return rows


class GreedyTranslator:
    """Greedy search of one model, compiled once for any batch and sentence length."""

    def __init__(self, model, max_length_ratio: float = 2.0, max_length_offset: int = 10):
        self.model = model

        def search(source_ids):
            return greedy_search(model, source_ids, max_length_ratio, max_length_offset)

        self._search = tf.function(search, input_signature=[tf.TensorSpec([None, None], tf.int32)])

    def __call__(self, source_ids) -> list[list[int]]:
        return strip_special(self._search(tf.constant(source_ids, tf.int32)).numpy())
