"""The package's layout: the folders import one way, and the names of the flat package still work."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_layout_holds():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_layout.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "the layout holds", result.stdout


def test_the_check_sees_an_import_against_the_direction(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import check_layout
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert check_layout.layer_of("translator.models.attention") == "models"
    assert check_layout.layer_of("translator.models") == "models"
    assert check_layout.layer_of("translator.files") == "basics"
    assert "decoding" not in check_layout.LAYERS["models"]
    assert "service" not in check_layout.LAYERS["training"]


@pytest.mark.parametrize("old", ["corpora", "tokenizers", "search", "translator", "export", "serving", "bench"])
def test_an_old_module_name_is_the_moved_module_itself(old):
    import translator

    moved = importlib.import_module(f"translator.{translator.MOVED_MODULES[old]}")
    assert importlib.import_module(f"translator.{old}") is moved
    assert moved.__spec__.name == f"translator.{translator.MOVED_MODULES[old]}"  # not renamed by the alias


def test_every_moved_module_exists():
    import translator

    for old, new in translator.MOVED_MODULES.items():
        assert (ROOT / "translator" / (new.replace(".", "/") + ".py")).is_file(), old
        assert not (ROOT / "translator" / f"{old}.py").exists(), f"translator/{old}.py is back beside its alias"


def test_the_old_modules_names_still_import():
    from translator.corpora import read_prepared_split
    from translator.translator import Translator as old_translator

    from translator.data.corpora import read_prepared_split as moved
    from translator.decoding.translator import Translator
    from translator.models import Seq2Seq, sequence_loss  # noqa: F401
    from translator.models.seq2seq import Seq2Seq as seq2seq
    from translator.training import Trainer, TrainingError  # noqa: F401
    from translator.training.trainer import Trainer as trainer

    assert read_prepared_split is moved and Seq2Seq is seq2seq and Trainer is trainer
    assert old_translator is Translator
    with pytest.raises(ImportError):
        from translator.models import NoSuchName  # noqa: F401
