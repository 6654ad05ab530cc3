"""Experiment configs: YAML files in configs/, checked against one schema before any work.

Every key has a default (``configs/reference.yaml`` lists and explains them all); a config
names only what it changes. An unknown key or a bad value is an error that names the key and
says what is allowed, raised before data is read or a model is built.
"""

from __future__ import annotations

import copy
from pathlib import Path

from translator.files import read_yaml

CELLS = ("lstm", "gru", "rnn")
ATTENTIONS = (None, "luong_dot", "luong_general", "bahdanau")
SCHEDULES = ("constant", "inverse_sqrt", "cosine", "plateau")
STRATEGIES = ("default", "mirrored", "multi_worker")
EARLY_STOPPING_METRICS = ("validation_loss", "validation_bleu", "validation_accuracy")
MODEL_TYPES = ("seq2seq", "language_model", "classifier")
POOLINGS = ("final", "attention", "max")
CLASS_WEIGHTS = (None, "balanced", "sqrt_balanced")
PRECISIONS = ("float32", "mixed_bfloat16")


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(low, high):
    def check(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
    check.describe = f"a number in [{low}, {high}]"
    return check


def _optional_positive_int(value):
    return value is None or _positive_int(value)


def _optional_positive_number(value):
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0)


def _auto_or_bool(value):
    return value == "auto" or isinstance(value, bool)


def _sampling(value):
    """null, or {alpha: a number in [0, 1), nbest: -1}: BPE-dropout of the training pairs with
    merge-skipping probability alpha (`Tokenizer.sample`); nbest -1 (from every segmentation,
    the only choice) is accepted as SentencePiece's sampling options spell it."""
    if value is None:
        return True
    if not isinstance(value, dict) or set(value) - {"alpha", "nbest"} or "alpha" not in value:
        return False
    alpha = value["alpha"]
    return (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 <= alpha < 1
            and value.get("nbest", -1) == -1)


def _optional_fraction(value):
    return value is None or isinstance(value, float) and 0 < value < 1


_sampling.describe = "null or {alpha: a number in [0, 1)} (BPE-dropout's probability, e.g. 0.1)"
_optional_fraction.describe = "null or a number between 0 and 1 (exclusive), e.g. 0.9999"
_optional_positive_number.describe = "null or a number > 0"
_auto_or_bool.describe = "auto, true or false"
_positive_int.describe = "a positive integer"
_optional_positive_int.describe = "null or a positive integer"
_non_negative_int.describe = "an integer >= 0"

# section -> key -> (default, check); a check is a tuple of allowed values, a type, or a function.
SCHEMA = {
    "data": {
        "corpus": (None, str),                    # a corpus prepared by `translator data`
        "tokenizer": (None, (type(None), str)),   # tokenizer recipe name (default: as `translator tokenizers`)
        "work_dir": ("work", str),
        "max_source_length": (100, _positive_int),  # pieces; longer training pairs are skipped
        "max_target_length": (100, _positive_int),
        "stream": ("auto", _auto_or_bool),        # translation: training pairs read from the files a
                                                  # window at a time; auto: from 1,000,000 pairs on
        "stream_window": (50_000, _positive_int),  # pairs per window when streaming (the shuffle window)
        "sampling": (None, _sampling),            # translation: subword regularization of training batches
    },
    "model": {
        "type": ("seq2seq", MODEL_TYPES),           # seq2seq | language_model | classifier
        "cell": ("lstm", CELLS),
        "embedding_dim": (256, _positive_int),
        "units": (512, _positive_int),
        "encoder_units": (None, _optional_positive_int),  # null: same as units
        "encoder_layers": (1, _positive_int),
        "decoder_layers": (1, _positive_int),
        "bidirectional": (False, bool),
        "reverse_source": (False, bool),
        "attention": (None, ATTENTIONS),
        "feed_context": (False, bool),
        "tie_embeddings": (False, bool),
        "dropout": (0.0, _number(0.0, 0.9)),
        "pooling": ("final", POOLINGS),           # classifier: final states, attention or max pooling
        "ensemble": (1, _positive_int),           # classifier: models from seeds seed, +1, ..., averaged
        "window": (0, _non_negative_int),         # language model: 0 recurrent; N > 0 an MLP over the last N tokens
    },
    "training": {
        "epochs": (10, _positive_int),
        "max_minutes": (None, _optional_positive_number),  # stop when training has taken this long
        "max_steps": (None, _optional_positive_int),  # stop after this many steps (e.g. a benchmark)
        "batch_tokens": (4096, _positive_int),    # target tokens per batch (length-bucketed batches)
        "max_batch_size": (256, _positive_int),
        "sequence_length": (128, _positive_int),  # language model: steps of truncated BPTT per batch
        "batch_size": (64, _positive_int),        # language model: parallel streams of the text
        "class_weights": (None, CLASS_WEIGHTS),    # classifier: null | balanced | sqrt_balanced
        "learning_rate": (0.001, _number(1e-7, 10.0)),
        "schedule": ("plateau", SCHEDULES),
        "warmup_steps": (0, _non_negative_int),
        "plateau_factor": (0.5, _number(0.01, 1.0)),
        "plateau_patience": (1, _non_negative_int),
        "min_learning_rate": (1e-5, _number(0.0, 10.0)),
        "clip_norm": (1.0, _number(0.0, 1e6)),    # global gradient-norm clipping; 0 = off
        "label_smoothing": (0.0, _number(0.0, 0.9)),
        "early_stopping_metric": ("validation_loss", EARLY_STOPPING_METRICS),
        "early_stopping_patience": (3, _non_negative_int),  # epochs without improvement; 0 = off
        "bleu_every": (1, _non_negative_int),     # epochs between validation BLEU; 0 = never
        "bleu_sentences": (500, _positive_int),   # validation sentences decoded for BLEU
        "checkpoint_every": (200, _positive_int),  # steps between checkpoints of the last state
        "keep_checkpoints": (0, _non_negative_int),  # epoch-end weights kept for `translator average`
        "ema_decay": (None, _optional_fraction),  # exponential moving average of the weights
        "seed": (1234, _non_negative_int),
        "deterministic": (False, bool),
        "strategy": ("default", STRATEGIES),
        "jit_compile": (False, bool),
        "precision": ("float32", PRECISIONS),
        "init_from": (None, (type(None), str)),  # fine-tuning: a trained run whose weights and tokenizers start this one
        "initialize_encoder_from": (None, (type(None), str)),  # seq2seq: a run whose encoder starts this one
        "freeze_encoder": (False, bool),          # keep that encoder fixed; only the decoder trains
    },
    "decoding": {                                 # seq2seq: the defaults of translate and evaluate
        "beam_size": (5, _positive_int),          # 1 is greedy search
        "length_penalty": (0.6, _number(0.0, 10.0)),  # GNMT alpha; tune on the validation split
        "shortlist": (False, bool),               # decode over RUN/shortlist.npz (`translator shortlist`)
    },
}


class ConfigError(ValueError):
    """A config key or value is not allowed (the message names it and the allowed values)."""


def _describe(check) -> str:
    if isinstance(check, tuple) and not all(isinstance(c, type) for c in check):
        return "one of " + ", ".join("null" if c is None else repr(c) for c in check)
    if isinstance(check, type):
        return {bool: "true or false", str: "a string", int: "an integer"}.get(check, check.__name__)
    if isinstance(check, tuple):
        return " or ".join("null" if c is type(None) else _describe(c) for c in check)
    return getattr(check, "describe", "a valid value")


def _valid(value, check) -> bool:
    if isinstance(check, tuple) and not all(isinstance(c, type) for c in check):
        return value in check
    if isinstance(check, (type, tuple)):
        return isinstance(value, check) and not (check is int and isinstance(value, bool))
    return check(value)


def defaults() -> dict:
    return {section: {key: copy.deepcopy(default) for key, (default, _) in keys.items()}
            for section, keys in SCHEMA.items()}


def validate(raw: dict, source: str = "config") -> dict:
    """Merge ``raw`` over the defaults and check every key and value; return the full config."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config is a YAML mapping with sections {list(SCHEMA)}")
    config = defaults()
    for section, values in raw.items():
        if section == "name":
            continue
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section '{section}'; allowed: {['name', *SCHEMA]}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: '{section}' must be a mapping of keys to values")
        for key, value in values.items():
            if key not in SCHEMA[section]:
                raise ConfigError(
                    f"{source}: unknown key '{section}.{key}'; allowed keys in '{section}': "
                    f"{', '.join(SCHEMA[section])}"
                )
            try:
                config[section][key] = check_setting(section, key, value, f"'{section}.{key}'")
            except ValueError as error:
                raise ConfigError(f"{source}: {error}") from None
    if config["data"]["corpus"] is None:
        raise ConfigError(f"{source}: 'data.corpus' is required (a corpus prepared by `translator data`)")
    training = config["training"]
    if training["early_stopping_metric"] == "validation_accuracy" and config["model"]["type"] != "classifier":
        raise ConfigError(f"{source}: 'training.early_stopping_metric' is validation_accuracy, which only "
                          f"a classifier reports; use validation_loss")
    if training["early_stopping_metric"] == "validation_bleu" and config["model"]["type"] != "seq2seq":
        raise ConfigError(f"{source}: 'training.early_stopping_metric' is validation_bleu, which only "
                          f"a seq2seq model reports; use validation_loss")
    if training["early_stopping_metric"] == "validation_bleu" and not training["bleu_every"]:
        raise ConfigError(f"{source}: 'training.early_stopping_metric' is validation_bleu but "
                          f"'training.bleu_every' is 0, so BLEU is never computed; set bleu_every to 1 or more")
    if config["model"]["ensemble"] > 1 and config["model"]["type"] != "classifier":
        raise ConfigError(f"{source}: 'model.ensemble' is {config['model']['ensemble']}, but only a classifier "
                          f"trains an ensemble; set it to 1 or remove it")
    if training["max_minutes"] and training["strategy"] == "multi_worker":
        raise ConfigError(f"{source}: 'training.max_minutes' stops on this process's clock, which the workers of "
                          f"'strategy: multi_worker' do not share; use epochs instead")
    if config["model"]["window"] and config["model"]["type"] != "language_model":
        raise ConfigError(f"{source}: 'model.window' is {config['model']['window']}, but only a language model "
                          f"can be a window model; set it to 0 or remove it")
    if (training["initialize_encoder_from"] or training["freeze_encoder"]) and config["model"]["type"] != "seq2seq":
        raise ConfigError(f"{source}: 'training.initialize_encoder_from' and 'training.freeze_encoder' are for "
                          f"seq2seq models; remove them")
    if training["init_from"] and (config["model"]["type"] != "seq2seq" or training["initialize_encoder_from"]):
        raise ConfigError(f"{source}: 'training.init_from' fine-tunes a translation (seq2seq) run, and starts every "
                          f"weight from it (so 'training.initialize_encoder_from' goes): remove one of them")
    if training["freeze_encoder"] and not training["initialize_encoder_from"]:
        raise ConfigError(f"{source}: 'training.freeze_encoder' is true but 'training.initialize_encoder_from' is "
                          f"null: a frozen encoder would stay random; name the run whose encoder to keep")
    if config["data"]["sampling"] is not None:
        if config["model"]["type"] != "seq2seq":
            raise ConfigError(f"{source}: 'data.sampling' samples the subwords of translation pairs; a "
                              f"{config['model']['type']} does not use it: remove it")
        if config["data"]["stream"] is True:
            raise ConfigError(f"{source}: 'data.sampling' re-tokenizes the training pairs every epoch, which it "
                              f"does for pairs held in memory; set 'data.stream' to false or remove 'data.sampling'")
        config["data"]["sampling"] = {"alpha": float(config["data"]["sampling"]["alpha"]), "nbest": -1}
    config["name"] = raw.get("name") or Path(source).stem
    return config


def check_setting(section: str, key: str, value, name: str | None = None):
    """``value`` if the schema allows it for ``section.key``, else a ValueError naming ``name``
    (default: the key) and what is allowed: the API and the command line keep to the same
    limits as a config file (for example ``decoding.length_penalty``)."""
    check = SCHEMA[section][key][1]
    if isinstance(value, int) and not isinstance(value, bool) and getattr(check, "describe", "").startswith("a number"):
        value = float(value)
    if not _valid(value, check):
        raise ValueError(f"{name or key} is {value!r}; expected {_describe(check)}")
    return value


def load_config(path: str | Path, overrides=()) -> dict:
    """Read a YAML config file (and the recipe it extends with ``base:``), apply ``overrides``
    (``"section.key=value"`` strings, as ``translator train --set`` gives them) and validate it."""
    path = Path(path)
    raw = _read_extending(path, ())
    for override in overrides:
        section, key, value = parse_override(override)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{path}: '{section}' must be a mapping of keys to values")
        raw[section][key] = value
    return validate(raw, str(path))


def _read_extending(path: Path, extended_by: tuple) -> dict:
    """A config file's mapping, merged over the recipe its ``base:`` names (a path relative to
    the file), key by key within each section; ``name`` is never inherited."""
    if not path.is_file():
        what = f"base recipe of {extended_by[-1]}" if extended_by else "config"
        raise FileNotFoundError(f"{what} {path} not found; see configs/ for the recipes")
    raw = read_yaml(path, ConfigError) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a YAML mapping with sections {list(SCHEMA)}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: 'base' is {base!r}; expected the path of another config, relative to "
                          f"{path.parent} (e.g. base: multi30k-de-en-bigru-luong.yaml)")
    base_path = path.parent / base
    if base_path.resolve() in [p.resolve() for p in (*extended_by, path)]:
        chain = " -> ".join(str(p) for p in (*extended_by, path, base_path))
        raise ConfigError(f"{path}: 'base' makes a cycle ({chain}); a recipe cannot extend itself")
    merged = _read_extending(base_path, (*extended_by, path))
    merged.pop("name", None)
    for section, values in raw.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def parse_override(text: str) -> tuple[str, str, object]:
    """``"training.epochs=3"`` -> ("training", "epochs", 3): the value is read as YAML (``null``,
    ``true``, numbers, strings), and the key must exist in the schema."""
    import yaml

    name, equals, value = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not equals or not dot:
        raise ConfigError(f"--set {text}: expected SECTION.KEY=VALUE, for example --set training.epochs=3")
    if section not in SCHEMA or key not in SCHEMA[section]:
        allowed = f"keys in '{section}': {', '.join(SCHEMA[section])}" if section in SCHEMA else \
            f"sections: {', '.join(SCHEMA)}"
        raise ConfigError(f"--set {text}: unknown key '{section}.{key}'; allowed {allowed}")
    try:
        return section, key, yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {text}: the value {value!r} is not a YAML scalar") from None
