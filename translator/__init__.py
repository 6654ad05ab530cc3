"""translator: recurrent sequence-to-sequence models on Keras 3.

The names below are imported on first use, so ``import translator`` stays fast and does not
load TensorFlow until a model is needed.

    from translator import load_corpus, Tokenizer

The package, in the order its parts import one another (each imports only those before it):

    translator/            the shared basics: files, checks, config, special_ids, machine, reports
    translator/data/       corpus recipes, reading, preparing, prepared splits, tokenizers, batches
    translator/models/     layers (recurrence, engine, attention, encoders, decoders) and the heads
    translator/decoding/   search, shortlists, ensembles, `Translator`, evaluation
    translator/service/    the export (a SavedModel) and ``translator serve``
    translator/training/   the trainer, its step, the run directory, tf.distribute (data, models,
                           decoding: validation BLEU is greedy search)
    translator/studies/    benches, experiments and results (anything)
    translator/cli.py      the ``translator`` command (anything)
"""

import sys
from importlib import import_module
from importlib.util import spec_from_loader

__version__ = "0.1.0"

_EXPORTS = {
    "load_corpus": "translator.data.corpora",
    "prepare_corpus": "translator.data.corpora",
    "prepared_dataset": "translator.data.corpora",
    "Tokenizer": "translator.data.tokenizers",
    "train_tokenizers": "translator.data.tokenizers",
    "load_tokenizers": "translator.data.tokenizers",
    "Translator": "translator.decoding.translator",
    "Seq2Seq": "translator.models.seq2seq",
    "LanguageModel": "translator.models.language_models",
    "Classifier": "translator.models.classifiers",
    "train": "translator.training.trainer",
}

__all__ = list(_EXPORTS)


def lazy_names(names: dict):
    """A module's ``__getattr__`` that imports each of ``names`` (name -> module) on first use."""

    def __getattr__(name):
        if name not in names:
            raise AttributeError(f"module has no attribute '{name}'")
        return getattr(import_module(names[name]), name)

    return __getattr__


__getattr__ = lazy_names(_EXPORTS)


def __dir__():
    return sorted(list(globals()) + __all__)


# Where the modules of the flat package (until December 2026) live now. Code that imports them by
# their old names keeps working: ``import translator.corpora`` gives the module
# ``translator.data.corpora`` itself (one object, so patches and isinstance checks agree).
# ``translator.models`` and ``translator.training`` are packages that give their old names.
MOVED_MODULES = {
    "recipes": "data.recipes", "reading": "data.reading", "preparing": "data.preparing",
    "prepared": "data.prepared", "corpora": "data.corpora", "own_data": "data.own_data",
    "tokenizers": "data.tokenizers", "batching": "data.batching",
    "recurrence": "models.recurrence", "quantization": "models.quantization", "engine": "models.engine",
    "attention": "models.attention", "embeddings": "models.embeddings", "encoders": "models.encoders",
    "decoders": "models.decoders", "tasks": "models.tasks", "language_models": "models.language_models",
    "classifiers": "models.classifiers", "runs": "models.runs", "averaging": "models.averaging",
    "search": "decoding.search", "shortlists": "decoding.shortlists", "ensembles": "decoding.ensembles",
    "translator": "decoding.translator", "evaluation": "decoding.evaluation",
    "export": "service.export", "serving": "service.serving", "dynamic_batching": "service.dynamic_batching",
    "training_step": "training.training_step", "run_directory": "training.run_directory",
    "distributed": "training.distributed", "fine_tuning": "training.fine_tuning",
    "bench": "studies.bench", "claims": "studies.claims", "experiments": "studies.experiments",
    "results": "studies.results", "scale_bench": "studies.scale_bench", "serve_bench": "studies.serve_bench",
    "shortlist_bench": "studies.shortlist_bench", "gradient_flow": "studies.gradient_flow",
    "cell_activations": "studies.cell_activations", "continuation": "studies.continuation",
}


class _MovedModules:
    """The import-system finder and loader of `MOVED_MODULES`' old names."""

    def find_spec(self, name, path=None, target=None):
        old = name.removeprefix("translator.")
        return spec_from_loader(name, self) if name != old and old in MOVED_MODULES else None

    def create_module(self, spec):
        module = import_module("translator." + MOVED_MODULES[spec.name.removeprefix("translator.")])
        spec.loader_state = module.__spec__  # the import system sets __spec__ to the old name's
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state


sys.meta_path.append(_MovedModules())
