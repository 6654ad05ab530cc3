"""The models: the layer library (`recurrence`, `engine`, `quantization`, `embeddings`,
`attention`, `encoders`, `decoders`) and the heads built from it (`seq2seq`, `language_models`,
`classifiers`), a trained run's files (`runs`) and checkpoint averaging (`averaging`). Imports
the data side and the shared basics, never decoding, the service or training.

``from translator.models import Seq2Seq`` works as it did when this was one module.
"""

from translator import lazy_names

__getattr__ = lazy_names({name: "translator.models.seq2seq" for name in (
    "ConfiguredModel", "Seq2Seq", "computing_in", "count_parameters", "dtype_policy_of", "sequence_loss")})
