"""Translator: a trained run, ready to translate sentences from Python.

    from translator import Translator
    translator = Translator.load("runs/demo")
    translator.translate(["Ein Hund läuft durch den Schnee."])  # beam search as the recipe's decoding
    ['A dog runs through the snow.']

Sentences are sorted by length into batches (little padding), two batches are searched at
once (`BATCHES_IN_FLIGHT`), and the translations come back in input order; the search is
compiled once per setting and reused; beam size 1 runs greedy search, which drops finished
sentences from the batch. A run trained with ``precision: mixed_bfloat16`` decodes in
bfloat16 from weights cast once at loading, with each step's products fused
(`translator.models.seq2seq.computing_in`); a float32 run may do the same with
``Translator.load(run, precision="bfloat16")`` (faster on a CPU with bfloat16 matrix
instructions; the output differs from float32's on a few sentences, see `make bench`). An
empty sentence gives an empty translation. A sentence longer than the model's source limit
(``max_source_length`` pieces, from the run's config) is truncated to it, with a warning:
nothing crashes on long input.
A ``Translator`` may be shared by threads.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from translator.checks import (
    check_bool,
    check_non_negative_int,
    check_number,
    check_path,
    check_positive_int,
    check_texts,
)
from translator.data.batching import pad
from translator.special_ids import PAD_ID

# Batches searched at once, each in its own thread. On a CPU one batch's serial work (the
# TensorFlow executor, small element-wise ops) then overlaps the other's matrix products
# (README, "Why the fast path looks as it does"). The translations are the same.
BATCHES_IN_FLIGHT = 2

# A sentence with more than this share of its characters unknown to the source tokenizer is
# "mostly unknown": `translator translate` warns, and `translator evaluate` counts such sentences.
MOSTLY_UNKNOWN = 0.5


@dataclass
class Translation:
    """One sentence's translation with its details (see ``Translator.translate_detailed``)."""

    source: str
    text: str
    source_pieces: list[str] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    score: float = 0.0  # log-probability, length-penalized under beam search
    n_best: list[tuple[str, float]] = field(default_factory=list)
    attention: np.ndarray | None = None  # [target pieces + <eos>, source pieces]
    truncated: bool = False
    unknown_share: float = 0.0  # share of the source's characters in pieces the tokenizer does not know


class Translator:
    """Translates with the model and tokenizers of one run directory."""

    def __init__(self, model, source_tokenizer, target_tokenizer, max_source_length: int = 100,
                 beam_size: int = 5, length_penalty: float = 0.6, shortlist=None):
        self.model = model
        self.shortlist = shortlist  # a `translator.decoding.shortlists.Shortlist`, or None: the whole vocabulary
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.max_source_length = max_source_length
        self.beam_size, self.length_penalty = beam_size, length_penalty  # used when a call gives None
        self._compiled = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, run, model_file: str = "model.keras", precision: str | None = None,
             shortlist: bool | None = None) -> Translator:
        """Load ``run/model.keras`` (Keras safe mode: no arbitrary code) and ``run/tokenizers``.

        ``run`` may be a list of runs: an ensemble (`translator.decoding.ensembles`), whose models'
        log-probabilities are averaged at every search step; their tokenizers must have the
        same pieces, and the first run's decoding settings are the defaults.

        ``precision`` is the dtype decoding computes in, "float32" or "bfloat16"; None (the
        default) takes the training's: bfloat16 for a ``mixed_bfloat16`` run; "int8" quantizes
        the decoder's weights (`translator.models.quantization`).

        ``shortlist``: decode over the lexical shortlist in ``RUN/shortlist.npz`` (the first
        run's, `translator shortlist --run RUN` builds it; `translator.decoding.shortlists`); None (the
        default) takes the config's ``decoding: shortlist`` (off unless set).
        """
        from translator.data.tokenizers import load_tokenizers
        from translator.decoding.ensembles import Ensemble, EnsembleError, check_same_tokenizers
        from translator.models.runs import load_run
        from translator.models.seq2seq import (
            computing_in,  # also registers Seq2Seq's classes with Keras
        )

        runs = list(run) if isinstance(run, (list, tuple)) else [run]
        if not runs:
            raise EnsembleError("Translator.load: no run given; pass a run directory or a list of them")
        for each in runs:
            check_path("run", each)
        runs = [Path(each) for each in runs]
        models, tokenizers, configs = [], [], []
        for each in runs:
            config, model = load_run(each, "seq2seq", model_file)
            computing = precision or ("bfloat16" if "bfloat16" in model.dtype_policy.name else "float32")
            models.append(computing_in(model, computing))
            tokenizers.append(load_tokenizers(each / "tokenizers"))
            configs.append(config)
        check_same_tokenizers(runs, tokenizers)
        decoding = configs[0].get("decoding", {})  # runs trained before the section existed have none
        model = models[0] if len(models) == 1 else Ensemble(models)
        if shortlist is None:
            shortlist = decoding.get("shortlist", False)
        check_bool("shortlist", shortlist)
        if shortlist:
            from translator.decoding.shortlists import SHORTLIST_FILE, Shortlist

            shortlist = Shortlist.load(runs[0] / SHORTLIST_FILE)
            shortlist.check_fits(tokenizers[0]["source"].vocabulary_size, tokenizers[0]["target"].vocabulary_size,
                                 str(runs[0] / SHORTLIST_FILE))
        return cls(model, tokenizers[0]["source"], tokenizers[0]["target"],
                   min(config["data"]["max_source_length"] for config in configs),
                   decoding.get("beam_size", 5), decoding.get("length_penalty", 0.6), shortlist or None)

    # ------------------------------------------------------------------ compiled search

    def _search(self, beam_size, length_penalty, max_length_ratio, max_length_offset, return_attention,
                with_scores=True):
        import tensorflow as tf

        from translator.decoding.search import beam_search, greedy_search
        from translator.decoding.shortlists import search_with

        shortlist = self.shortlist
        key = (beam_size, float(length_penalty), float(max_length_ratio), int(max_length_offset), return_attention,
               with_scores, id(shortlist))
        with self._lock:
            if key not in self._compiled:
                def search_model(model, source_ids):
                    if beam_size == 1 and not return_attention:  # the same result as beam_search, faster
                        if not with_scores:
                            sequences = greedy_search(model, source_ids, max_length_ratio, max_length_offset)
                            return sequences[:, None, :], tf.zeros([tf.shape(sequences)[0], 1]), None
                        sequences, scores = greedy_search(model, source_ids, max_length_ratio,
                                                          max_length_offset, return_scores=True)
                        lengths = tf.reduce_sum(tf.cast(tf.not_equal(sequences, PAD_ID), tf.float32), axis=1)
                        scores /= tf.pow((5.0 + lengths) / 6.0, length_penalty)
                        return sequences[:, None, :], scores[:, None], None
                    return beam_search(model, source_ids, beam_size, length_penalty, max_length_ratio,
                                       max_length_offset, return_attention=return_attention)

                def search(source_ids):
                    return search_with(shortlist, self.model, source_ids, lambda model: search_model(model, source_ids))

                self._compiled[key] = tf.function(search, input_signature=[tf.TensorSpec([None, None], tf.int32)])
            return self._compiled[key]

    # ------------------------------------------------------------------ translating

    def translate(self, sentences, beam_size: int | None = None, length_penalty: float | None = None,
                  batch_size: int = 64, max_length_ratio: float = 2.0, max_length_offset: int = 10,
                  target_language: str | None = None) -> list[str]:
        """Translate a list of sentences (or one string); return the best translations as strings
        (one string for one string).

        ``beam_size`` and ``length_penalty`` default (None) to the run's ``decoding`` config
        (5 and 0.6 unless the recipe tuned them). ``target_language``: the language a
        multilingual model writes (one of ``target_languages``; its tag goes before every
        sentence); None for a one-pair model, or sentences that start with a tag already."""
        details = self._translate(sentences, beam_size, length_penalty, batch_size, max_length_ratio,
                                  max_length_offset, n_best=1, attention=False, detailed=False,
                                  target_language=target_language)
        return details.text if isinstance(details, Translation) else [detail.text for detail in details]

    def translate_detailed(self, sentences, beam_size: int | None = None, length_penalty: float | None = None,
                           batch_size: int = 64,
                           max_length_ratio: float = 2.0, max_length_offset: int = 10, n_best: int | None = None,
                           attention: bool = False, target_language: str | None = None) -> list[Translation]:
        """Translations with pieces, scores, the n-best list (``n_best`` entries, default the
        beam size), the share of unknown pieces in the source and, with ``attention=True``, the
        attention weights of the best one. One string gives one `Translation`."""
        return self._translate(sentences, beam_size, length_penalty, batch_size, max_length_ratio,
                               max_length_offset, n_best, attention, detailed=True, target_language=target_language)

    @property
    def target_languages(self) -> list[str]:
        """The languages a multilingual model writes (its tags' languages); empty for one pair."""
        return self.source_tokenizer.target_languages

    def _tagged(self, sentences: list[str], target_language: str | None) -> list[str]:
        """The sentences as the model reads them: with the target language's tag first, for a
        multilingual model (Johnson et al. 2017); a clear error when the tag is missing or unknown."""
        from translator.data.corpora import target_tag

        languages = self.target_languages
        if target_language is None:
            if languages and not all(s.split(" ", 1)[0] in map(target_tag, languages) for s in sentences if s.strip()):
                raise ValueError(f"this is a multilingual model: it writes {', '.join(languages)}; say which with "
                                 f"target_language= (translator translate --target-language {languages[0]})")
            return sentences
        if not languages:
            raise ValueError(f"target_language='{target_language}': this model translates one language pair and "
                             f"knows no target-language tags; leave target_language out")
        if target_language not in languages:
            raise ValueError(f"target_language='{target_language}' is not one this model writes: "
                             f"{', '.join(languages)}")
        tag = target_tag(target_language)
        return [f"{tag} {sentence}" if sentence.strip() else sentence for sentence in sentences]

    def unknown_shares(self, sentences) -> list[float]:
        """For each sentence, the share of its characters (spaces aside) that the source
        tokenizer does not know (``<unk>`` pieces): text in a script the model never saw comes
        out as an unrelated sentence, so `translator translate` warns when it is most of one."""
        sentences, _ = check_texts("sentences", sentences)
        return self.source_tokenizer.unknown_shares(sentences)

    def _check_arguments(self, beam_size, length_penalty, batch_size, max_length_ratio, max_length_offset, n_best,
                         attention):
        """The search settings, checked as a config file's would be; returns beam size, length
        penalty and n-best size with the run's defaults filled in."""
        from translator.config import check_setting

        beam_size = self.beam_size if beam_size is None else check_setting("decoding", "beam_size", beam_size)
        length_penalty = self.length_penalty if length_penalty is None else \
            check_setting("decoding", "length_penalty", length_penalty)
        check_positive_int("batch_size", batch_size)
        check_number("max_length_ratio", max_length_ratio, 0.0)
        check_non_negative_int("max_length_offset", max_length_offset)
        n_best = beam_size if n_best is None else min(check_positive_int("n_best", n_best), beam_size)
        check_bool("attention", attention)
        return beam_size, length_penalty, n_best

    def _translate(self, sentences, beam_size, length_penalty, batch_size, max_length_ratio, max_length_offset,
                   n_best, attention, detailed, target_language=None) -> list[Translation] | Translation:
        """`translate_detailed`; without ``detailed`` only ``text`` is filled in (greedy search
        then skips the scores, a softmax normalizer over the vocabulary at every step)."""
        from translator.decoding.search import strip_special

        sentences, single = check_texts("sentences", sentences)
        beam_size, length_penalty, n_best = self._check_arguments(
            beam_size, length_penalty, batch_size, max_length_ratio, max_length_offset, n_best, attention)
        tagged = self._tagged(sentences, target_language)
        encoded = self.source_tokenizer.encode(tagged)
        original_lengths = [len(ids) for ids in encoded]
        unknown_shares = self.source_tokenizer.unknown_shares(tagged, encoded)
        results: list[Translation | None] = [None] * len(sentences)
        for index, (sentence, ids) in enumerate(zip(sentences, encoded)):
            if not sentence.strip() or not ids:  # nothing to translate (also text that encodes to no piece)
                results[index] = Translation(source=sentence, text="", n_best=[("", 0.0)])
            elif len(ids) > self.max_source_length:
                warnings.warn(f"sentence {index + 1} has {len(ids)} pieces, more than the model's limit of "
                              f"{self.max_source_length}: translating its first {self.max_source_length}",
                              stacklevel=3)
                encoded[index] = ids[:self.max_source_length]
        todo = [i for i in range(len(sentences)) if results[i] is None]
        todo.sort(key=lambda i: len(encoded[i]))
        search = self._search(beam_size, length_penalty, max_length_ratio, max_length_offset, attention, detailed)
        batches = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]

        def run(indices):
            sequences, scores, weights = search(pad([encoded[i] for i in indices]))
            return indices, sequences.numpy(), scores.numpy(), weights

        with ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT) as pool:
            searched = list(pool.map(run, batches))
        for indices, sequences, scores, weights in searched:
            if not detailed:
                texts = self.target_tokenizer.decode(strip_special(sequences[:, 0]))
                for index, text in zip(indices, texts):
                    results[index] = Translation(source=sentences[index], text=text,
                                                 truncated=original_lengths[index] > self.max_source_length,
                                                 unknown_share=unknown_shares[index])
                continue
            for row, index in enumerate(indices):
                hypotheses = strip_special(sequences[row])
                texts = self.target_tokenizer.decode(hypotheses)
                best = hypotheses[0]
                results[index] = Translation(
                    source=sentences[index], text=texts[0],
                    source_pieces=[self.source_tokenizer.id_to_piece(i) for i in encoded[index]],
                    pieces=[self.target_tokenizer.id_to_piece(i) for i in best],
                    score=float(scores[row, 0]),
                    n_best=[(t, float(s)) for t, s in zip(texts, scores[row]) if s > -1e8][:n_best],
                    attention=None if weights is None else
                    weights.numpy()[row, 0, :len(best) + 1, :len(encoded[index])],
                    truncated=original_lengths[index] > self.max_source_length,
                    unknown_share=unknown_shares[index],
                )
        return results[0] if single else results



class ExportedTranslator:
    """A run's export (`translator export --run RUN`, in ``RUN/export``) loaded with TensorFlow
    and ``tensorflow_text`` alone: the same translations as `Translator` with the export's beam
    sizes and length penalty (`translator.service.export` checks they are equal to the byte), without
    building the Keras model or tracing the search, so that `translator translate` answers a
    first sentence in a few seconds. `of_run` returns None when the run has no usable export."""

    def __init__(self, directory: str | Path):
        import json

        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (the SentencePiece ops of the graph)

        from translator.data.tokenizers import load_tokenizers
        from translator.models.runs import EXPORT_FILE

        self.directory = Path(directory)
        self.description = json.loads((self.directory / EXPORT_FILE).read_text(encoding="utf-8"))
        self.beam_size, self.length_penalty = self.description["beam_size"], self.description["length_penalty"]
        self.max_source_length = self.description["max_source_length"]
        self.source_tokenizer = load_tokenizers(self.directory / "tokenizers")["source"]
        loaded = tf.saved_model.load(str(self.directory))
        self._functions = {size: loaded.signatures["translate" if size == self.beam_size else f"translate_beam_{size}"]
                           for size in self.description["beam_sizes"]}
        self._loaded = loaded  # the functions need the object that holds their constants

    @classmethod
    def of_run(cls, run: str | Path, beam_size: int | None = None, length_penalty: float | None = None,
               shortlist: bool | None = None):
        """The export in ``RUN/export`` if it was made from the run's current model.keras and
        has the asked search (None: the run's own settings); else None."""
        import json

        from translator.models.runs import EXPORT_FILE

        run = Path(run)
        path = run / "export" / EXPORT_FILE
        if not path.is_file() or not (run / "model.keras").is_file():
            return None
        description = json.loads(path.read_text(encoding="utf-8"))
        if description.get("ensemble"):  # an ensemble's export, not the run's own
            return None
        model_file = (run / "model.keras").stat()
        recorded = description.get("model_file") or {}
        if description.get("kind") != "translation" or \
                (recorded.get("bytes"), recorded.get("mtime_ns")) != (model_file.st_size, model_file.st_mtime_ns):
            warnings.warn(f"{run / 'export'} is not the export of {run / 'model.keras'} as it is now (trained on "
                          f"since?); translating with the model. `translator export --run {run}` makes it again",
                          stacklevel=2)
            return None
        beam_size = description["beam_size"] if beam_size is None else beam_size
        if shortlist is not None and bool(shortlist) != description.get("shortlist", False):
            return None
        if beam_size not in description["beam_sizes"] or \
                (length_penalty is not None and float(length_penalty) != float(description["length_penalty"])):
            return None
        return cls(run / "export")

    def translate_detailed(self, sentences, beam_size: int | None = None, length_penalty: float | None = None,
                           batch_size: int = 64, n_best: int | None = None) -> list[Translation]:
        """Translations with ``text``, ``truncated`` and ``unknown_share`` (as `Translator`'s
        without details): sorted by length into batches, two searched at once. The length
        penalty is the export's and the n-best list has one entry (None asks for just that)."""
        import tensorflow as tf

        sentences, single = check_texts("sentences", sentences)
        if length_penalty is not None and float(length_penalty) != float(self.length_penalty):
            raise ValueError(f"length_penalty {length_penalty} is not the export's ({self.length_penalty}); "
                             f"use Translator.load(run) for another")
        if n_best not in (None, 1):
            raise ValueError("an export translates to the best translation only (n_best 1); use Translator.load(run)")
        beam_size = self.beam_size if beam_size is None else beam_size
        if beam_size not in self._functions:
            raise ValueError(f"beam_size {beam_size} is not in the export {self.directory} (it has "
                             f"{sorted(self._functions)}); export it with --beam-sizes {beam_size}")
        check_positive_int("batch_size", batch_size)
        encoded = self.source_tokenizer.encode(sentences)
        shares = self.source_tokenizer.unknown_shares(sentences, encoded)
        order = sorted(range(len(sentences)), key=lambda i: len(encoded[i]))
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        function = self._functions[beam_size]

        def run(indices):
            outputs = function(sentences=tf.constant([sentences[i] for i in indices], tf.string))
            return indices, outputs["translations"].numpy().tolist()

        texts = [""] * len(sentences)
        with ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT) as pool:
            for indices, translated in pool.map(run, batches):
                for index, text in zip(indices, translated):
                    texts[index] = text.decode("utf-8")
        results = [Translation(source=sentence, text=text, truncated=len(ids) > self.max_source_length,
                               unknown_share=share)
                   for sentence, text, ids, share in zip(sentences, texts, encoded, shares)]
        return results[0] if single else results
