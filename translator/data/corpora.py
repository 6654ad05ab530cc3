"""Corpora: recipes that find, verify, read, clean and split public data sets, one module per
job, read in this order:

- `translator.data.recipes`: reading and checking a recipe (``corpora/NAME.yaml``), resolving a
  corpus name, and finding its files (the mirror, ``TRANSLATOR_DATA``, or a checked download);
- `translator.data.reading`: reading the files as rows of every task and format, cleaned and split;
- `translator.data.preparing`: writing the splits and their manifest to ``work/CORPUS/``;
- `translator.data.prepared`: reading a prepared corpus back, in memory, a row at a time or as a
  `datasets` dataset.

This module gives their public names under one roof, where code has always imported them from
(``from translator.data.corpora import read_prepared_split``; ``translator.corpora`` before the
package had folders).
"""

from translator.data.prepared import (  # noqa: F401
    iter_prepared_split,
    prepared_dataset,
    prepared_split_paths,
    read_manifest,
    read_prepared_split,
)
from translator.data.preparing import (  # noqa: F401
    prepare_corpus,
    split_files,
)
from translator.data.reading import (  # noqa: F401
    Cleaning,
    count_lines,
    iter_lines,
    load_corpus,
    read_corpus,
    read_into,
)
from translator.data.recipes import (  # noqa: F401
    FILE_KEYS,
    FORMATS,
    MULTILINGUAL_LANGUAGES,
    RECIPE_KEYS,
    SPLIT_NAMES,
    TASKS,
    ChecksumError,
    CorpusError,
    CorpusSpec,
    FileSpec,
    Recipe,
    cache_directory,
    data_directory,
    download,
    known_recipes,
    locate,
    read_recipe,
    recipe_directories,
    resolve_corpus,
    sha256_of,
    sha256_once,
    target_tag,
)
