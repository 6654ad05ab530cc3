"""Training: the `Trainer` and ``train`` (`trainer`), the compiled step and its strategy
(`training_step`, `distributed`), the run directory's data record (`run_directory`), the
translation task (`translation_task`) and fine-tuning (`fine_tuning`). Imports decoding (the
validation BLEU is greedy search), models, data and the shared basics.

``from translator.training import Trainer`` works as it did when this was one module.
"""

from translator import lazy_names

__getattr__ = lazy_names({name: "translator.training.trainer" for name in (
    "FINGERPRINT_VERSION", "TASK_OF_MODEL", "Trainer", "TrainingError", "check_same_data", "data_fingerprint",
    "epoch_weights_path", "learning_rate", "make_strategy", "make_task", "make_training_step",
    "moving_average_weights", "prepare_run_directory", "train", "train_command", "train_if_missing",
    "version_1_fingerprint")})
