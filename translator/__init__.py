"""translator: recurrent sequence-to-sequence models on Keras 3.

The names below are imported on first use, so ``import translator`` stays fast and does not
load TensorFlow until a model is needed.

    from translator import load_corpus, Tokenizer
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "load_corpus": "translator.corpora",
    "prepare_corpus": "translator.corpora",
    "prepared_dataset": "translator.corpora",
    "Tokenizer": "translator.tokenizers",
    "train_tokenizers": "translator.tokenizers",
    "load_tokenizers": "translator.tokenizers",
    "Translator": "translator.translator",
    "Seq2Seq": "translator.models",
    "LanguageModel": "translator.language_models",
    "Classifier": "translator.classifiers",
    "train": "translator.training",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'translator' has no attribute '{name}'")


def __dir__():
    return sorted(list(globals()) + __all__)
