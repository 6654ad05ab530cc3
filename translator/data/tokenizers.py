"""Tokenizers: SentencePiece models trained from recipes in ``tokenizers/``, and ``Tokenizer``.

A recipe (``tokenizers/NAME.yaml``) says how to cut text into pieces for one corpus:

    model_type: bpe          # unigram | bpe | char | word
    vocabulary: separate     # joint (one model for both sides) | separate (one per language)
    vocab_size: 8000         # per model; ignored in char mode (every character is kept)
    character_coverage: 1.0
    byte_fallback: false     # unknown characters become UTF-8 byte pieces instead of <unk>
    user_defined_symbols: [] # pieces always kept whole, e.g. ["<sep>"]
    normalization: nmt_nfkc  # SentencePiece's default: NFKC, so a no-break space decodes as a
                             # space; `identity` keeps every character as it is

Every model has the same special ids, which the models rely on:
pad = 0, unk = 1, <sos> = 2, <eos> = 3.

``translator tokenizers CORPUS`` reads the prepared training split (``translator data``),
trains the model(s) and writes ``work/<corpus>/tokenizers/<recipe>/``: ``<name>.model``,
``<name>.vocab`` and ``card.json`` (corpus, settings, vocabulary size, mean pieces per
sentence and the unknown-piece rate on the validation split).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from translator.checks import check_path, check_texts
from translator.data.corpora import read_manifest, resolve_corpus
from translator.files import atomic_write_text, read_yaml, search_path
from translator.special_ids import EOS_ID, PAD_ID, SOS_ID, UNK_ID

MODEL_TYPES = ("unigram", "bpe", "char", "word")
RECIPE_DEFAULTS = {
    "corpus": None, "model_type": "unigram", "vocabulary": "separate", "vocab_size": 8000,
    "character_coverage": 1.0, "byte_fallback": False, "normalization": "nmt_nfkc",
    "input_sentence_size": 0, "user_defined_symbols": [],
    "hard_vocab_limit": True,  # false: vocab_size is a maximum (a small corpus gives fewer pieces)
}
NORMALIZATIONS = ("nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf", "identity")


class TokenizerError(ValueError):
    """A tokenizer recipe or model is not what was expected."""


class Tokenizer:
    """A SentencePiece model with the toolkit's fixed special ids (pad 0, unk 1, <sos> 2, <eos> 3).

    >>> tokenizer = Tokenizer("work/multi30k-de-en/tokenizers/multi30k-de-en/en.model")  # doctest: +SKIP
    >>> ids = tokenizer.encode(["A dog runs."], add_eos=True)                            # doctest: +SKIP
    >>> tokenizer.decode(ids)                                                            # doctest: +SKIP
    ['A dog runs.']
    """

    pad_id, unk_id, sos_id, eos_id = PAD_ID, UNK_ID, SOS_ID, EOS_ID

    def __init__(self, model_file: str | Path):
        import sentencepiece

        check_path("model_file", model_file)
        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise FileNotFoundError(
                f"tokenizer model {self.model_file} not found; train it with `translator tokenizers CORPUS`"
            )
        self._processor = sentencepiece.SentencePieceProcessor(model_file=str(self.model_file))
        self._merge_ranks = None  # piece -> merge rank, for `sample`
        ids = (self._processor.pad_id(), self._processor.unk_id(), self._processor.bos_id(), self._processor.eos_id())
        if ids != (PAD_ID, UNK_ID, SOS_ID, EOS_ID):
            raise TokenizerError(
                f"{self.model_file}: special ids (pad, unk, bos, eos) are {ids}, expected (0, 1, 2, 3). "
                f"Train it with `translator tokenizers`, which fixes them."
            )

    @property
    def vocabulary_size(self) -> int:
        return self._processor.get_piece_size()

    def encode(self, texts, add_sos: bool = False, add_eos: bool = False):
        """Text -> ids. A string gives a list of ids; a list of strings gives a list of lists."""
        check_texts("texts", texts)
        return self._processor.encode(texts, out_type=int, add_bos=add_sos, add_eos=add_eos)

    def sample(self, texts: list[str], alpha: float, seed: int = 0) -> list[list[int]]:
        """Text -> ids, each text's segmentation drawn at random with BPE-dropout (Provilkov et
        al. 2020): the BPE merges are applied as in `encode`, best first, but at every step each
        possible merge is skipped with probability ``alpha``; when all are skipped the word
        stays as it is. ``alpha`` 0 gives `encode`'s ids. The same ``seed`` gives the same ids
        in any process (Python's Mersenne Twister: SentencePiece's own sampling is not
        reproducible across processes, its seed notwithstanding). BPE models only."""
        import random

        check_texts("texts", texts)
        if self._merge_ranks is None:
            self._merge_ranks = self._bpe_merge_ranks()
        ranks, generator, piece_id = self._merge_ranks, random.Random(seed), self._processor.piece_to_id
        sampled = []
        for pieces in self._processor.encode(texts, out_type=str):
            ids, word = [], []
            for piece in pieces + ["\u2581"]:  # a last word boundary flushes the last word
                if piece.startswith("\u2581") and word:
                    ids.extend(piece_id(symbol) for symbol in _bpe_dropout(word, ranks, alpha, generator))
                    word = []
                # A piece no merge made (unknown, byte, user-defined) is one unit, never split or merged.
                word.extend(list(piece) if piece in ranks else [(piece,)])
            sampled.append(ids)
        return sampled

    def _bpe_merge_ranks(self) -> dict:
        """Piece -> rank of the merge that makes it (lower first) for the pieces BPE merges build;
        a TokenizerError for a model that is not BPE."""
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(self.model_file.read_bytes())
        if proto.trainer_spec.model_type != proto.trainer_spec.BPE:
            raise TokenizerError(f"{self.model_file} is not a BPE model: subword sampling here is BPE-dropout; "
                                 f"train the tokenizer with model_type: bpe, or remove data.sampling")
        return {piece.piece: -piece.score for piece in proto.pieces if piece.type == piece.NORMAL}

    def encode_as_pieces(self, texts):
        return self._processor.encode(texts, out_type=str)

    def decode(self, ids):
        """Ids -> text; pad, <sos> and <eos> are dropped. A list of lists gives a list of strings."""
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise TypeError(f"ids must be a list of token ids or a list of such lists; got {type(ids).__name__} "
                            f"{ids!r:.60}")
        return self._processor.decode(ids)

    def unknown_shares(self, texts: list[str], ids: list[list[int]] | None = None) -> list[float]:
        """For each text, the share of its characters (spaces aside) that fall in ``<unk>``
        pieces; ``ids`` are the texts' ids if already encoded. 0.0 for text the model knows."""
        ids = self.encode(texts) if ids is None else ids
        shares = []
        for text, row in zip(texts, ids):
            if UNK_ID not in row:
                shares.append(0.0)
                continue
            # An <unk> piece is the unknown text itself; "\u2581" marks a word boundary, not text.
            lengths = [len(piece.replace("\u2581", "")) for piece in self.encode_as_pieces(text)]
            unknown = sum(length for length, index in zip(lengths, row) if index == UNK_ID)
            shares.append(unknown / max(sum(lengths), 1))
        return shares

    def id_to_piece(self, index: int) -> str:
        return self._processor.id_to_piece(index)

    @property
    def target_languages(self) -> list[str]:
        """The languages whose tag (``<2fr>``, a piece of its own) this tokenizer knows: the
        target languages of a multilingual model's source side; empty for a one-pair model."""
        if not hasattr(self, "_target_languages"):
            processor = self._processor
            pieces = map(processor.id_to_piece, range(processor.get_piece_size()))
            self._target_languages = [piece[2:-1] for piece in pieces
                                      if len(piece) > 3 and piece[:2] == "<2" and piece[-1] == ">"]
        return self._target_languages

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.model_file)!r}, vocabulary_size={self.vocabulary_size})"


def _bpe_dropout(symbols: list, ranks: dict, alpha: float, generator) -> list:
    """One word's BPE-dropout: ``symbols`` are its characters (a 1-tuple stands for a piece kept
    whole and never merged: unknown, byte or user-defined); the merged pieces."""
    symbols = list(symbols)
    while len(symbols) > 1:
        candidates = sorted((ranks[pair], index) for index in range(len(symbols) - 1)
                            if isinstance(symbols[index], str) and isinstance(symbols[index + 1], str)
                            and (pair := symbols[index] + symbols[index + 1]) in ranks)
        for _, index in candidates:
            if generator.random() >= alpha:
                symbols[index:index + 2] = [symbols[index] + symbols[index + 1]]
                break
        else:  # no merge left, or every one skipped
            break
    return [symbol[0] if isinstance(symbol, tuple) else symbol for symbol in symbols]


# ----------------------------------------------------------------------------- recipes

def tokenizer_directories() -> list[Path]:
    return search_path("tokenizers")


def find_recipe(corpus: str, recipe: str | None = None) -> Path:
    """The recipe file: ``recipe`` (a path or a name), else tokenizers/<corpus>.yaml, else
    tokenizers/<recipe name of the corpus>.yaml (so tokenizers/multi30k.yaml serves every pair)."""
    if recipe and Path(recipe).suffix in (".yaml", ".yml"):
        if not Path(recipe).is_file():
            raise FileNotFoundError(f"tokenizer recipe {recipe} not found")
        return Path(recipe)
    names = [recipe] if recipe else [corpus, resolve_corpus(corpus).recipe.name]
    for directory in tokenizer_directories():
        for name in names:
            if (directory / f"{name}.yaml").is_file():
                return directory / f"{name}.yaml"
    available = sorted({p.stem for d in tokenizer_directories() for p in d.glob("*.yaml")})
    raise TokenizerError(
        f"no tokenizer recipe {' or '.join(n + '.yaml' for n in names)} in "
        f"{', '.join(str(d) for d in tokenizer_directories()) or 'tokenizers/'}; available: "
        f"{', '.join(available) or 'none'}. Write one (see tokenizers/multi30k.yaml) or pass --recipe."
    )


def read_recipe(path: Path) -> dict:
    raw = read_yaml(path, TokenizerError) or {}
    if not isinstance(raw, dict):
        raise TokenizerError(f"{path}: a tokenizer recipe is a YAML mapping")
    unknown = set(raw) - set(RECIPE_DEFAULTS)
    if unknown:
        raise TokenizerError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(RECIPE_DEFAULTS)}")
    settings = {**RECIPE_DEFAULTS, **raw}
    if settings["model_type"] not in MODEL_TYPES:
        raise TokenizerError(f"{path}: model_type: '{settings['model_type']}' is not one of {list(MODEL_TYPES)}")
    if settings["vocabulary"] not in ("joint", "separate"):
        raise TokenizerError(f"{path}: vocabulary: '{settings['vocabulary']}' is not 'joint' or 'separate'")
    if settings["normalization"] not in NORMALIZATIONS:
        raise TokenizerError(f"{path}: normalization: '{settings['normalization']}' is not one of {list(NORMALIZATIONS)}")
    symbols = settings["user_defined_symbols"]
    if not isinstance(symbols, list) or not all(isinstance(symbol, str) and symbol for symbol in symbols):
        raise TokenizerError(f"{path}: user_defined_symbols: {symbols!r} is not a list of non-empty strings "
                             f"(pieces kept whole, e.g. [\"<sep>\"])")
    for key in ("byte_fallback", "hard_vocab_limit"):
        if not isinstance(settings[key], bool):
            raise TokenizerError(f"{path}: {key}: {settings[key]!r} is not true or false")
    if not 0.9 <= float(settings["character_coverage"]) <= 1.0:
        raise TokenizerError(f"{path}: character_coverage: {settings['character_coverage']} is not in [0.9, 1.0]")
    return settings


# ----------------------------------------------------------------------------- training

SAMPLE_SENTENCES = 1_000_000  # a model trains on all lines up to this many, else on a sample of this many


def _lines(corpus, split: str, work_dir, sides) -> callable:
    """A function giving the lines of a prepared split afresh, one at a time, side after side
    (``source`` then ``target`` for a joint model): a pair's sentences, an example's text or a
    line of a text."""
    from translator.data.corpora import iter_prepared_split

    def lines():
        for side in sides:
            for row in iter_prepared_split(corpus, split, work_dir):
                yield row["source" if side == "source" else "target" if side == "target" else "text"]
    return lines


def _train_model(lines, prefix: Path, settings: dict, char_mode_text: bool) -> int:
    """Train one SentencePiece model from ``lines()``, written line by line to a scratch file;
    returns the count of lines. Beyond SAMPLE_SENTENCES lines (and when the recipe sets no
    input_sentence_size) SentencePiece trains on a shuffled sample of that many, which it draws
    by reservoir sampling as it reads the file: memory stays bounded however large the corpus.
    Below it, every line is used, as before."""
    import sentencepiece

    handle, input_file = tempfile.mkstemp(suffix=".txt", dir=prefix.parent)
    count, characters = 0, set()
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        for line in lines():
            if settings["model_type"] == "char":
                characters.update(line)
            if line:
                out.write(line + "\n")
                count += 1
    sample = int(settings["input_sentence_size"]) or (SAMPLE_SENTENCES if count > SAMPLE_SENTENCES else 0)
    options = {
        "input": input_file, "model_prefix": str(prefix), "model_type": settings["model_type"],
        "vocab_size": int(settings["vocab_size"]), "character_coverage": float(settings["character_coverage"]),
        "byte_fallback": bool(settings["byte_fallback"]), "normalization_rule_name": settings["normalization"],
        "pad_id": PAD_ID, "unk_id": UNK_ID, "bos_id": SOS_ID, "eos_id": EOS_ID,
        "pad_piece": "<pad>", "unk_piece": "<unk>", "bos_piece": "<sos>", "eos_piece": "<eos>",
        "input_sentence_size": sample, "shuffle_input_sentence": True,
        "num_threads": os.cpu_count() or 1, "minloglevel": 2,
        "user_defined_symbols": list(settings["user_defined_symbols"]),
        "hard_vocab_limit": bool(settings["hard_vocab_limit"]),
    }
    if settings["model_type"] == "char":
        # Every character is a piece and the text comes back exactly: no normalization, no
        # dummy prefix, spaces kept as they are, and (for a language model) newline as a piece.
        options.update(vocab_size=len(characters) + 8, hard_vocab_limit=False,
                       normalization_rule_name="identity", remove_extra_whitespaces=False,
                       add_dummy_prefix=False)
        if char_mode_text:
            options["user_defined_symbols"] = ["\n", *options["user_defined_symbols"]]
    try:
        sentencepiece.SentencePieceTrainer.train(**options)
    except RuntimeError as error:
        # Unigram needs a vocabulary smaller than the corpus's pieces allow; BPE stops when it
        # runs out of merges, so it is the way out for unigram, not for itself.
        other = " (or use model_type: bpe)" if settings["model_type"] == "unigram" else ""
        raise TokenizerError(
            f"SentencePiece could not train a {settings['model_type']} model of {settings['vocab_size']} "
            f"pieces from {count:,} lines: {error}. Lower vocab_size{other} "
            f"in the tokenizer recipe."
        ) from None
    finally:
        os.unlink(input_file)
    return count


def _statistics(tokenizer: Tokenizer, lines) -> dict:
    """Mean pieces per sentence and the unknown-piece rate over the non-empty lines of
    ``lines()`` (the first SAMPLE_SENTENCES of them), encoded in blocks."""
    sentences = pieces = unknown = 0
    block = []
    for line in itertools.chain(lines(), [None]):
        if line:
            block.append(line)
        if block and (line is None or len(block) == 10_000 or sentences + len(block) >= SAMPLE_SENTENCES):
            encoded = tokenizer.encode(block)
            sentences += len(block)
            pieces += sum(len(ids) for ids in encoded)
            unknown += sum(ids.count(UNK_ID) for ids in encoded)
            block = []
            if sentences >= SAMPLE_SENTENCES:
                break
    return {"sentences": sentences, "mean_pieces_per_sentence": round(pieces / max(sentences, 1), 3),
            "unk_rate": round(unknown / max(pieces, 1), 6)}


def train_tokenizers(corpus: str, work_dir="work", recipe: str | None = None) -> dict:
    """Train the tokenizer(s) of a prepared corpus; write models and card.json; return the card.
    The prepared splits are read line by line, never whole (see ``_train_model``)."""
    recipe_path = find_recipe(corpus, recipe)
    settings = read_recipe(recipe_path)
    corpus_dir, manifest = read_manifest(corpus, work_dir)
    if settings["corpus"] and settings["corpus"] not in (manifest["corpus"], resolve_corpus(corpus).recipe.name):
        raise TokenizerError(f"{recipe_path}: corpus: is '{settings['corpus']}' but you asked for '{corpus}'")
    has_validation = "validation" in manifest["split_files"]
    is_text = manifest["task"] == "language_modeling"

    if manifest["task"] == "translation":
        languages = {"source": manifest["source_language"], "target": manifest["target_language"]}
        if settings["vocabulary"] == "joint":
            plan = {"joint": ["source", "target"]}
        else:
            plan = {languages[side]: [side] for side in ("source", "target")}
    else:
        plan = {"text": ["text"]}

    out = corpus_dir / "tokenizers" / recipe_path.stem
    out.mkdir(parents=True, exist_ok=True)
    models, sides = {}, {}
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        for name, covers in plan.items():
            started = time.time()
            lines = _lines(corpus, "train", work_dir, covers)
            _train_model(lines, Path(scratch) / name, settings, char_mode_text=is_text)
            for suffix in (".model", ".vocab"):  # move into place only once trained
                shutil.move(os.path.join(scratch, name + suffix), out / (name + suffix))
            tokenizer = Tokenizer(out / f"{name}.model")
            models[name] = {"file": f"{name}.model", "vocabulary_size": tokenizer.vocabulary_size,
                            "train_seconds": round(time.time() - started, 2),
                            "train": _statistics(tokenizer, lines)}
            for side in covers:
                sides[side] = name
                if has_validation:
                    models[name][f"validation_{side}"] = _statistics(
                        tokenizer, _lines(corpus, "validation", work_dir, [side]))
    card = {
        "corpus": manifest["corpus"], "task": manifest["task"], "recipe": _display(recipe_path),
        "settings": settings, "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "sos": SOS_ID, "eos": EOS_ID},
        "sides": sides, "languages": {"source": manifest.get("source_language"),
                                      "target": manifest.get("target_language")},
        "models": models, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(out / "card.json", json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    card["directory"] = str(out)
    return card


def _display(path: Path) -> str:
    """A path relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_tokenizers(directory: str | Path) -> dict[str, Tokenizer]:
    """The tokenizers of a trained recipe by side: {"source", "target"} or {"text"}."""
    check_path("directory", directory)
    directory = Path(directory)
    card_path = directory / "card.json"
    if not card_path.is_file():
        raise FileNotFoundError(f"{card_path} not found; train the tokenizers with `translator tokenizers CORPUS`")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    loaded = {name: Tokenizer(directory / info["file"]) for name, info in card["models"].items()}
    return {side: loaded[name] for side, name in card["sides"].items()}
