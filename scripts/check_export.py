"""Check an export against `Translator`: the same translations of a file, greedy and beam.

    python scripts/check_export.py runs/demo runs/demo/export work/multi30k-de-en/test.de \
        --references work/multi30k-de-en/test.en

The export translates in a fresh Python process that imports only tensorflow and
tensorflow_text (this package is not importable there); `Translator.translate` translates here
with the run's settings (its beam size and length penalty, and beam size 1). Prints how many
translations are identical, each side's time, and with --references the BLEU of both.
"""

import argparse
import json
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

STANDALONE = """
import importlib.util, json, sys, time
sys.path.append(sys.argv[3])  # site-packages, without its .pth files: this package is not importable
assert importlib.util.find_spec("translator") is None, "the translator package is importable"
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1])
sentences = json.loads(open(sys.argv[2], encoding="utf-8").read())
def plain(value):  # bytes in (nested) lists -> str
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value.decode("utf-8") if isinstance(value, bytes) else value
outputs, seconds = {}, {}
for name in sys.argv[4:]:
    started = time.perf_counter()
    result = model.signatures[name](sentences=tf.constant(sentences))
    outputs[name] = {key: plain(value.numpy().tolist()) for key, value in result.items()}
    seconds[name] = time.perf_counter() - started
print(json.dumps({"outputs": outputs, "seconds": seconds}))
"""


def translate_standalone(export_dir, sentences: list[str], signatures: list[str]) -> dict:
    """Run `signatures` of the export on `sentences` in a process where only tensorflow and
    tensorflow_text can be imported; returns {"outputs": {name: {output: list}}, "seconds": {...}}."""
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "sentences.json").write_text(json.dumps(sentences), encoding="utf-8")
        # -I: no PYTHONPATH, user site or current directory; -S: no .pth files of site-packages
        # (the editable install of this package is one); the script adds site-packages itself.
        result = subprocess.run([sys.executable, "-I", "-S", "-c", STANDALONE, str(Path(export_dir).resolve()),
                                 str(Path(scratch) / "sentences.json"), sysconfig.get_paths()["purelib"],
                                 *signatures], capture_output=True, text=True, cwd=scratch)
    if result.returncode != 0:
        raise RuntimeError(f"the standalone process failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("export")
    parser.add_argument("sources", help="a file of sentences, one a line")
    parser.add_argument("--references", help="their reference translations, for BLEU")
    args = parser.parse_args()

    from translator import Translator

    sentences = Path(args.sources).read_text(encoding="utf-8").splitlines()
    standalone = translate_standalone(args.export, sentences, ["translate", "translate_beam_1"])
    translator = Translator.load(args.run)
    for name, beam_size in (("translate", translator.beam_size), ("translate_beam_1", 1)):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = translator.translate(sentences, beam_size=beam_size)
        seconds = time.perf_counter() - started
        exported = standalone["outputs"][name]["translations"]
        same = sum(a == b for a, b in zip(exported, expected))
        line = (f"{name} (beam {beam_size}): {same} of {len(sentences)} translations identical; export "
                f"{standalone['seconds'][name]:.1f} s (one batch, first call), Translator {seconds:.1f} s")
        if args.references:
            import sacrebleu

            references = [Path(args.references).read_text(encoding="utf-8").splitlines()]
            line += (f"; BLEU export {sacrebleu.corpus_bleu(exported, references).score:.2f}, "
                     f"Translator {sacrebleu.corpus_bleu(expected, references).score:.2f}")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
