"""Exporting a trained run as a TensorFlow SavedModel that works on raw text.

    translator export --run runs/demo             # into runs/demo/export (or --out DIR)

The directory holds a SavedModel that needs TensorFlow and ``tensorflow_text`` only (not this
package): SentencePiece (``tensorflow_text.SentencepieceTokenizer``, from the run's ``.model``
bytes), the search and the detokenization all run inside the graph. A translation run has:

- ``translate`` (also ``serving_default``): ``sentences`` tf.string [batch] -> ``translations``
  tf.string [batch] and ``scores`` float32 [batch], with the run's beam size and length penalty
  (greedy search when the beam size is 1);
- ``translate_n_best``: the same sentences -> ``translations`` tf.string [batch, beam],
  ``scores`` float32 [batch, beam] (best first; a hypothesis that never finished has score
  -1e9 and an empty text) and ``truncated`` bool [batch];
- ``translate_beam_K`` for every other beam size asked for (``--beam-sizes``; greedy search,
  ``translate_beam_1``, by default);
- ``attention`` (models with attention): ``sentences`` and their ``translations`` tf.string
  [batch] -> the model's attention while it produces each translation's pieces (teacher-forced,
  so for a translation of the search the weights the search computed): ``weights`` float32
  [batch, target pieces + 1, source pieces] (the last row is the end of the sentence),
  ``source_pieces`` and ``target_pieces`` tf.string (padded with ""), ``source_lengths`` and
  ``target_lengths`` int32 [batch].

The translations are those of `Translator.translate` with the same settings, to the byte: the
same model object (a ``mixed_bfloat16`` run decodes in bfloat16, as `Translator.load` makes
it), the same search functions, an empty (or all-whitespace) sentence gives an empty
translation with score 0, and a sentence longer than the model's ``max_source_length`` pieces
is truncated to it. A sentence's result does not depend on the other sentences of its batch.

A classifier run has ``classify`` (``texts`` -> ``labels``, ``probabilities`` of those labels,
``class_probabilities`` [batch, classes]); a language-model run has ``sample`` (``prime``,
``length``, ``temperature``, ``top_k``, ``seed`` scalars -> ``text``, the prime and its
continuation), equal to `Classifier.predict` and `LanguageModel.sample`. The directory also
holds the run's ``config.yaml``, a ``README.md`` of its signatures and ``export.json`` (the
kind of model, its beam sizes: what `translator serve --export` reads).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from translator.models.runs import EXPORT_FILE
from translator.special_ids import EOS_ID, PAD_ID, SOS_ID

# The characters Python's str.isspace() takes for whitespace, as an RE2 class: a sentence made of
# them only is empty for `Translator` (``not sentence.strip()``).
WHITESPACE_ONLY = r"[\t\n\x{0b}\f\r\x{1c}-\x{1f}\x{85}\p{Z}]*"
UNFINISHED_SCORE = -1e9  # beam search's score of a hypothesis that never reached <eos>


def _tensorflow():
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    return tf


def _module_of(model, **tokenizers):
    """A tf.Module holding the SentencePiece tokenizers (the model's weights reach the graphs
    as constants: `frozen`)."""
    module = _tensorflow().Module()
    for name, tokenizer in tokenizers.items():
        setattr(module, name, _sentencepiece(tokenizer, name))
    return module


def frozen(model):
    """A scope in which reading a Keras variable of `model` gives a constant of its value
    (``keras.StatelessScope``): functions traced inside capture the weights as constants. An
    exported graph that reads Keras 3 variables runs after `tf.saved_model.load`, but not in
    TensorFlow 1 style loaders (`saved_model_cli run`, TensorFlow Serving): Keras gives the
    variables of different layers the same TensorFlow name, and variables read inside the search
    loops are then not found (keras-team/keras#20096). Constants have neither problem, and
    decoding needs no variable."""
    import keras

    tf = _tensorflow()
    return keras.StatelessScope(state_mapping=[(variable, tf.constant(variable.numpy()))
                                               for variable in model.variables])


def _sentencepiece(tokenizer, name: str):
    """The in-graph twin of a `translator.data.tokenizers.Tokenizer` (its ``.model`` bytes). Each
    needs its own `name`: the SentencePiece resource is shared by the name of the op that makes
    it, so two unnamed tokenizers of one SavedModel are one model once loaded
    (tensorflow/text#1304: the source tokenizer would detokenize the translations)."""
    import tensorflow_text

    return tensorflow_text.SentencepieceTokenizer(model=Path(tokenizer.model_file).read_bytes(), name=name)


def _strip_special(tf, sequences):
    """Ragged rows of ``sequences`` (int32 [rows, time]) up to their first <eos>, without padding:
    `translator.decoding.search.strip_special` in the graph."""
    before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(sequences, EOS_ID), tf.int32), axis=1, exclusive=True), 0)
    keep = tf.logical_and(before_end, tf.logical_and(tf.not_equal(sequences, EOS_ID),
                                                     tf.not_equal(sequences, PAD_ID)))
    return tf.ragged.boolean_mask(sequences, keep)


class TranslationExport:
    """The tf.Module of a translation run's SavedModel (see the module docstring)."""

    def __init__(self, translator, beam_sizes=(1,)):
        tf = _tensorflow()
        self.model, self.source_tokenizer = translator.model, translator.source_tokenizer
        self.shortlist = translator.shortlist  # searched in the graph as `Translator` searches it
        self.module = _module_of(self.model, source_tokenizer=translator.source_tokenizer,
                                 target_tokenizer=translator.target_tokenizer)
        self.max_source_length = translator.max_source_length
        self.beam_size, self.length_penalty = translator.beam_size, translator.length_penalty
        if any(size < 1 for size in beam_sizes):
            raise ValueError(f"beam sizes must be at least 1 (1 is greedy search); got {list(beam_sizes)}")
        self.beam_sizes = sorted({int(size) for size in beam_sizes} - {self.beam_size})
        self.sentences = tf.TensorSpec([None], tf.string, name="sentences")

    def description(self) -> dict:
        return {"kind": "translation", "beam_size": self.beam_size, "length_penalty": self.length_penalty,
                "beam_sizes": sorted({self.beam_size, *self.beam_sizes}),
                "max_source_length": self.max_source_length, "shortlist": self.shortlist is not None}

    def _n_best(self, sentences, beam_size, scores: bool = True):
        """Texts [batch, beam], scores [batch, beam] and truncated [batch] of `sentences`.
        Greedy search with ``scores=False`` leaves the scores 0 and skips their softmax
        normalizer over the vocabulary at every step (about 30% of its time on the demo model)."""
        tf = _tensorflow()
        from translator.decoding.search import greedy_search, n_best_search
        from translator.decoding.shortlists import search_with

        pieces = self.module.source_tokenizer.tokenize(sentences)
        truncated = pieces.row_lengths() > self.max_source_length
        pieces = pieces[:, :self.max_source_length]
        blank = tf.logical_or(tf.strings.regex_full_match(sentences, WHITESPACE_ONLY),
                              tf.equal(pieces.row_lengths(), 0))
        todo = tf.where(tf.logical_not(blank))[:, 0]
        count = tf.size(todo)

        def search():
            source_ids = tf.gather(pieces, todo).to_tensor(PAD_ID)

            def search_model(model):
                if beam_size == 1 and not scores:
                    return greedy_search(model, source_ids)[:, None, :], tf.zeros([count, 1], tf.float32)
                return n_best_search(model, source_ids, beam_size, self.length_penalty)

            sequences, found = search_with(self.shortlist, self.model, source_ids, search_model)
            rows = tf.reshape(sequences, [count * beam_size, -1])
            texts = self.module.target_tokenizer.detokenize(_strip_special(tf, rows))
            return tf.reshape(texts, [count, beam_size]), tf.cast(found, tf.float32)

        def nothing():
            return tf.zeros([0, beam_size], tf.string), tf.zeros([0, beam_size], tf.float32)

        texts, scores = tf.cond(count > 0, search, nothing)
        # Searched sentences take their row; blank ones the extra last row: one translation ("",
        # 0), as `Translator.translate_detailed` gives, the other hypotheses never finished.
        rows = tf.where(blank, count, tf.cumsum(tf.cast(tf.logical_not(blank), tf.int32)) - 1)
        texts = tf.gather(tf.concat([texts, tf.fill([1, beam_size], "")], 0), rows)
        blank_scores = tf.concat([[0.0], tf.fill([beam_size - 1], UNFINISHED_SCORE)], 0)[None]
        scores = tf.gather(tf.concat([scores, blank_scores], 0), rows)
        return texts, scores, truncated

    def n_best_function(self, beam_size, scores: bool = True):
        """The concrete function of ``translate_n_best`` for `beam_size` (what `translator serve
        --run` calls for every beam size, without saving; ``scores=False``: see `_n_best`)."""
        tf = _tensorflow()

        def translate_n_best(sentences):
            texts, found, truncated = self._n_best(sentences, beam_size, scores)
            finished = found > UNFINISHED_SCORE / 10  # as `Translator.translate_detailed` lists them
            return {"translations": tf.where(finished, texts, ""), "scores": found, "truncated": truncated}

        return tf.function(translate_n_best, input_signature=[self.sentences]).get_concrete_function()

    def attention_function(self):
        """The concrete function of the ``attention`` signature, or None for a model without
        attention: the decoder run over ``[<sos>] + pieces of the translation`` (teacher
        forcing), whose weights at every step are those the search computed for the same prefix."""
        tf = _tensorflow()
        if self.model.decoder.attention is None:
            return None

        def attention(sentences, translations):
            source = self.module.source_tokenizer.tokenize(sentences)[:, :self.max_source_length]
            target = self.module.target_tokenizer.tokenize(translations)
            source_ids = source.to_tensor(PAD_ID)
            # An empty sentence is one padding token (its weights are cut to nothing below).
            source_ids = tf.pad(source_ids, [[0, 0], [0, tf.maximum(1 - tf.shape(source_ids)[1], 0)]])
            target_input = tf.pad(target.to_tensor(PAD_ID), [[0, 0], [1, 0]], constant_values=SOS_ID)
            _, weights = self.model((source_ids, target_input), training=False, return_attention=True)
            return {"weights": tf.cast(weights, tf.float32),
                    "source_pieces": self.module.source_tokenizer.id_to_string(source).to_tensor(""),
                    "target_pieces": self.module.target_tokenizer.id_to_string(target).to_tensor(""),
                    "source_lengths": tf.cast(source.row_lengths(), tf.int32),
                    "target_lengths": tf.cast(target.row_lengths(), tf.int32)}

        text = tf.TensorSpec([None], tf.string, name="sentences")
        return tf.function(attention, input_signature=[text, tf.TensorSpec([None], tf.string, name="translations")]
                           ).get_concrete_function()

    def _best(self, beam_size):
        def translate(sentences):
            texts, scores, _ = self._n_best(sentences, beam_size)
            return {"translations": texts[:, 0], "scores": scores[:, 0]}

        return _tensorflow().function(translate, input_signature=[self.sentences])

    def translate_functions(self) -> dict:
        """{beam size: the concrete function of its ``translate`` signature} (what `translator
        serve --run` calls, without saving)."""
        return {size: self._best(size).get_concrete_function() for size in (self.beam_size, *self.beam_sizes)}

    def signatures(self) -> dict:
        functions = self.translate_functions()
        signatures = {"serving_default": functions[self.beam_size], "translate": functions[self.beam_size],
                      "translate_n_best": self.n_best_function(self.beam_size)}
        for size in self.beam_sizes:
            signatures[f"translate_beam_{size}"] = functions[size]
        attention = self.attention_function()
        if attention is not None:
            signatures["attention"] = attention
        return signatures

    def readme(self) -> str:
        search = "greedy search" if self.beam_size == 1 else \
            f"beam search, beam size {self.beam_size}, length penalty {self.length_penalty}"
        others = "".join(f"- `translate_beam_{size}`: as `translate`, with "
                         f"{'greedy search' if size == 1 else f'beam size {size}'}.\n" for size in self.beam_sizes)
        return (f"- `translate` (also `serving_default`): `sentences` tf.string [batch] -> `translations` "
                f"tf.string [batch], `scores` float32 [batch] ({search}; an empty sentence gives an empty "
                f"translation; a sentence longer than {self.max_source_length} pieces is truncated).\n"
                f"- `translate_n_best`: `sentences` -> `translations` tf.string [batch, {self.beam_size}], "
                f"`scores` float32 [batch, {self.beam_size}] (best first; {UNFINISHED_SCORE:g} and an empty "
                f"text for a hypothesis that never finished), `truncated` bool [batch].\n{others}"
                + ("" if self.model.decoder.attention is None else
                   "- `attention`: `sentences` and their `translations` tf.string [batch] -> `weights` float32 "
                   "[batch, target pieces + 1, source pieces] (the model's attention while producing each "
                   "translation; the last row is the end of the sentence), `source_pieces`, `target_pieces` "
                   "tf.string (padded with \"\"), `source_lengths`, `target_lengths` int32 [batch].\n"))


class _TextModelExport:
    """What the exports of a classifier and a language model share: one tokenizer, ``text``."""

    kind = ""

    def __init__(self, model):
        self.model = model
        self.module = _module_of(model, tokenizer=model.tokenizer)

    def description(self) -> dict:
        return {"kind": self.kind}


class ClassifierExport(_TextModelExport):
    """The tf.Module of a classifier run's SavedModel: ``classify``."""

    kind = "classifier"

    def description(self) -> dict:
        return {**super().description(), "labels": list(self.model.label_names)}

    def signatures(self) -> dict:
        tf = _tensorflow()

        def classify(texts):
            ids = self.module.tokenizer.tokenize(texts).to_tensor(PAD_ID)
            # An empty text is one padding token, as in `Classifier.predict_ids` (`Classifier.predict`
            # refuses it; a batch here does not fail for one row).
            ids = tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])
            probabilities = tf.nn.softmax(tf.cast(self.model(ids, training=False), tf.float32))
            best = tf.argmax(probabilities, axis=1, output_type=tf.int32)
            return {"labels": tf.gather(tf.constant(list(self.model.label_names)), best),
                    "probabilities": tf.gather(probabilities, best, batch_dims=1),
                    "class_probabilities": probabilities}

        function = tf.function(classify, input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
        concrete = function.get_concrete_function()
        return {"serving_default": concrete, "classify": concrete}

    def readme(self) -> str:
        labels = list(self.model.label_names)
        return (f"- `classify` (also `serving_default`): `texts` tf.string [batch] -> `labels` tf.string "
                f"[batch], `probabilities` float32 [batch] (of those labels), `class_probabilities` float32 "
                f"[batch, {len(labels)}] in the order {labels}.\n")


class LanguageModelExport(_TextModelExport):
    """The tf.Module of a language-model run's SavedModel: ``sample``."""

    kind = "language_model"

    def signatures(self) -> dict:
        tf = _tensorflow()

        def sample(prime, length, temperature, top_k, seed):
            prime_ids = self.module.tokenizer.tokenize(prime)
            checks = [tf.debugging.assert_positive(tf.size(prime_ids),
                                                   message="prime has no token in this model's vocabulary"),
                      tf.debugging.assert_non_negative(length, message="length must be >= 0"),
                      tf.debugging.assert_non_negative(temperature, message="temperature must be >= 0"),
                      tf.debugging.assert_non_negative(top_k, message="top_k must be >= 0")]
            with tf.control_dependencies(checks):
                ids = self.model.sample_ids(prime_ids[None], length, temperature, top_k,
                                                   tf.stack([seed, 0]))
            return {"text": prime + self.module.tokenizer.detokenize(ids[0])}

        scalar = [tf.TensorSpec([], tf.string, name="prime"), tf.TensorSpec([], tf.int32, name="length"),
                  tf.TensorSpec([], tf.float32, name="temperature"), tf.TensorSpec([], tf.int32, name="top_k"),
                  tf.TensorSpec([], tf.int32, name="seed")]
        concrete = tf.function(sample, input_signature=scalar).get_concrete_function()
        return {"serving_default": concrete, "sample": concrete}

    def readme(self) -> str:
        return ("- `sample` (also `serving_default`): scalars `prime` tf.string, `length` int32, `temperature` "
                "float32 (0: the most likely token), `top_k` int32 (0: all tokens), `seed` int32 -> `text` "
                "tf.string, the prime and `length` tokens after it (the same seed, the same text).\n")


def exporter_of(run, precision: str | None = None, beam_sizes=(1,), shortlist: bool | None = None):
    """The export of a run directory, by the kind of its model; `shortlist` as `Translator.load`."""
    from translator.models.runs import read_run_config

    if isinstance(run, (list, tuple)):  # an ensemble of translation runs
        from translator.decoding.translator import Translator

        return TranslationExport(Translator.load(list(run), precision=precision, shortlist=shortlist), beam_sizes)
    run = Path(run)
    kind = read_run_config(run)["model"].get("type", "seq2seq")
    if kind == "classifier":
        from translator.models.classifiers import Classifier

        return ClassifierExport(Classifier.load(run))
    if kind == "language_model":
        from translator.models.language_models import LanguageModel

        return LanguageModelExport(LanguageModel.load(run))
    from translator.decoding.translator import Translator

    return TranslationExport(Translator.load(run, precision=precision, shortlist=shortlist), beam_sizes)


def export(run, out=None, precision: str | None = None, beam_sizes=(1,), shortlist: bool | None = None) -> dict:
    """Write the SavedModel of `run` into `out` (default ``RUN/export``, where `translator
    translate --run RUN` finds it; built in a temporary directory beside it, then renamed into
    place, replacing an earlier export); return its signatures' names."""
    tf = _tensorflow()
    members = None
    if isinstance(run, (list, tuple)):  # an ensemble: one SavedModel, the first run's config and tokenizers
        if out is None:
            raise ValueError(f"an ensemble of {len(run)} runs has no run directory of its own to export into; "
                             f"name one with --out DIR")
        members, exporter = [str(each) for each in run], exporter_of(run, precision, beam_sizes, shortlist)
        run = Path(run[0])
    else:
        run = Path(run)
        exporter = exporter_of(run, precision, beam_sizes, shortlist)
    out = run / "export" if out is None else Path(out)
    with frozen(exporter.model):
        signatures = exporter.signatures()
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        tf.saved_model.save(exporter.module, str(building), signatures=signatures)
        shutil.copyfile(run / "config.yaml", building / "config.yaml")
        shutil.copytree(run / "tokenizers", building / "tokenizers")  # for callers that count pieces
        model_file = (run / "model.keras").stat()  # which model.keras this is the export of
        description = {**exporter.description(), "run": str(run), "signatures": sorted(signatures),
                       "model_file": {"bytes": model_file.st_size, "mtime_ns": model_file.st_mtime_ns}}
        if members:
            description["ensemble"] = members
        (building / EXPORT_FILE).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
        (building / "README.md").write_text(_readme(run, exporter.readme()), encoding="utf-8")
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old."))
            os.replace(out, old / out.name)
        os.replace(building, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return {"directory": str(out), "signatures": sorted(signatures)}


def _readme(run: Path, signatures: str) -> str:
    return f"""# SavedModel of the run {run.name}

Exported by `translator export --run {run}`; `config.yaml` is the run's config. It needs
TensorFlow and `tensorflow-text` (the same minor version) only:

    import tensorflow as tf
    import tensorflow_text  # registers the SentencePiece ops
    model = tf.saved_model.load("THIS_DIRECTORY")

## Signatures

{signatures}
Show them with `saved_model_cli show --dir THIS_DIRECTORY --all`.
"""
