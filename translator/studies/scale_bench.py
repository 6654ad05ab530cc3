"""`translator scale-bench` (`make scale-bench`): time and peak memory of every corpus stage as the
corpus grows tenfold, from 500,000 to 5,000,000 training pairs.

    translator scale-bench            # writes bench/results/scale.json and scale.md

For each size, a translation corpus is generated into a scratch directory (never into the
repository): its training pairs are Multi30k de-en training pairs from the mirror, each joined
with a second one drawn at random half of the time (so pairs vary in length and rarely repeat);
its validation and test splits are Multi30k's. A corpus recipe beside it names the generated files
by path and sha256, as any recipe does. Then each stage runs as its own process, timed, its peak
resident memory read from the kernel when it ends (``os.wait4``):

1. ``translator data``: read, clean, split, write and hash the files (line by line);
2. ``translator tokenizers``: SentencePiece BPE, 8,000 pieces per language, trained on a sample
   of 300,000 lines at both sizes (the recipe's ``input_sentence_size``);
3. ``translator train``: 200 steps of a small attention model with the training pairs streamed
   from the prepared files (``data.stream: true`` at both sizes, so the same code is measured).

The bench says, for every stage, whether the peak memory at the largest size is at most 1.5
times that at the smallest: memory that does not grow with the corpus.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = (500_000, 5_000_000)
STAGES = ("data", "tokenizers", "train")
TOKENIZER = "model_type: bpe\nvocabulary: separate\nvocab_size: 8000\ninput_sentence_size: 300000\n"
MODEL = {"cell": "lstm", "embedding_dim": 64, "units": 128, "attention": "luong_general"}
ALLOWED_GROWTH = 1.5


def _multi30k(data_dir) -> dict:
    """The paths of Multi30k de-en's files in the mirror (verified), by split and language."""
    from translator.data.corpora import data_directory, locate, resolve_corpus

    spec = resolve_corpus("multi30k-de-en")
    directory = data_directory(data_dir)
    if directory is None:
        raise FileNotFoundError("translator scale-bench reads Multi30k from the data mirror: set TRANSLATOR_DATA "
                                "(e.g. TRANSLATOR_DATA=../shared/data) or pass --data-dir")
    return {split: {language: locate(files[language], spec.recipe, directory) for language in ("de", "en")}
            for split, files in spec.recipe.splits.items()}


def _write_file(path: Path, lines) -> str:
    """Write lines (in blocks) and return the file's sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for block in lines:
            data = ("\n".join(block) + "\n").encode("utf-8")
            digest.update(data)
            out.write(data)
    return digest.hexdigest()


def generate_corpus(size: int, directory: Path, data_dir=None, seed: int = 20) -> Path:
    """A recipe of ``size`` generated training pairs (Multi30k pairs, half of them joined with a
    second pair) and Multi30k's validation and test splits, under ``directory``; its path."""
    from translator.data.corpora import iter_lines

    name = f"scale-{size}"
    mirror = directory / "mirror" / name
    mirror.mkdir(parents=True, exist_ok=True)
    sources = {split: {language: list(iter_lines(path)) for language, path in files.items()}
               for split, files in _multi30k(data_dir).items()}
    train = sources.pop("train")
    rng = np.random.RandomState(seed)
    first, second = rng.randint(len(train["de"]), size=size), rng.randint(len(train["de"]), size=size)
    joined = rng.rand(size) < 0.5
    entries = {}
    for language in ("de", "en"):
        lines = train[language]

        def blocks(lines=lines):
            for start in range(0, size, 100_000):
                stop = min(start + 100_000, size)
                yield [lines[a] + " " + lines[b] if join else lines[a]
                       for a, b, join in zip(first[start:stop], second[start:stop], joined[start:stop])]
        entries[("train", language)] = _write_file(mirror / f"train.{language}", blocks())
        for split, columns in sources.items():
            entries[(split, language)] = _write_file(mirror / f"{split}.{language}", [columns[language]])
    splits = {}
    for (split, language), digest in entries.items():
        path = mirror / f"{split}.{language}"
        splits.setdefault(split, []).append(f"    {language}:\n      path: {name}/{path.name}\n"
                                            f"      url: {path.as_uri()}\n      sha256: {digest}")
    recipe = directory / f"{name}.yaml"
    recipe.write_text(f"name: {name}\ntask: translation\nformat: parallel\nlanguages: [de, en]\n"
                      f"default_pair: [de, en]\nsplits:\n"
                      + "".join(f"  {split}:\n" + "\n".join(lines) + "\n" for split, lines in splits.items()),
                      encoding="utf-8")
    return recipe


# A stage's peak memory is read by a small launcher process: the kernel counts, in a child's peak,
# the memory of the process it was forked from up to its exec (here: the generated corpus), so the
# stage is forked from this bare interpreter instead, whose own few MiB are below any stage's.
LAUNCHER = """import json, resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump({"returncode": code, "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}, out)
sys.exit(code)
"""


def measure(command: list[str], log: Path) -> dict:
    """Run one stage in its own process: its wall time and peak resident memory (MiB)."""
    started = time.time()
    usage = log.with_suffix(".usage.json")
    with open(log, "w") as output:
        code = subprocess.call([sys.executable, "-c", LAUNCHER, str(usage), *command], stdout=output,
                               stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"`{' '.join(command)}` failed ({code}); the end of {log}:\n" + "\n".join(tail))
    peak = json.loads(usage.read_text())["maxrss_kib"] / 1024
    return {"seconds": round(time.time() - started, 1), "peak_memory_mib": round(peak, 1)}


def run_size(size: int, scratch: Path, steps: int, data_dir=None, log=print) -> dict:
    """Generate a corpus of ``size`` pairs and measure each stage on it."""
    import yaml

    directory = scratch / f"scale-{size}"
    started = time.time()
    recipe = generate_corpus(size, directory, data_dir)
    log(f"{size:,} pairs: generated in {time.time() - started:.0f} s")
    tokenizer = directory / "scale-tokenizer.yaml"
    tokenizer.write_text(TOKENIZER, encoding="utf-8")
    work = directory / "work"
    config = directory / "scale-train.yaml"
    config.write_text(yaml.safe_dump({
        "name": f"scale-{size}",
        "data": {"corpus": str(recipe), "tokenizer": str(tokenizer), "work_dir": str(work), "stream": True},
        "model": MODEL,
        "training": {"epochs": 1, "max_steps": steps, "batch_tokens": 4096, "learning_rate": 0.002,
                     "schedule": "constant", "bleu_every": 0, "checkpoint_every": 100_000},
    }), encoding="utf-8")
    translator = [sys.executable, "-m", "translator"]
    commands = {
        "data": [*translator, "data", str(recipe), "--work-dir", str(work), "--data-dir", str(directory / "mirror")],
        "tokenizers": [*translator, "tokenizers", str(recipe), "--recipe", str(tokenizer), "--work-dir", str(work)],
        "train": [*translator, "train", str(config), "--run", str(directory / "run")],
    }
    results = {}
    for stage in STAGES:
        results[stage] = measure(commands[stage], directory / f"{stage}.log")
        log(f"{size:,} pairs: translator {stage}: {results[stage]['seconds']} s, "
            f"peak {results[stage]['peak_memory_mib']:,} MiB")
    with open(directory / "run" / "log.csv", encoding="utf-8") as rows:
        results["train"]["validation_loss"] = float(list(csv.DictReader(rows))[-1]["validation_loss"])
    train_log = (directory / "train.log").read_text(errors="replace")
    counted = re.search(r"counted in (\d+) s", train_log)
    described = re.search(r"([\d,]+) training pairs.*?, (\d+) batches per epoch", train_log)
    if counted and described:  # what was streamed, and how long the first pass took
        results["train"].update(first_pass_seconds=int(counted[1]), training_pairs=int(described[1].replace(",", "")),
                                batches_per_epoch=int(described[2]))
    return results


def run(sizes=SIZES, steps: int = 200, output_dir="bench/results", scratch=None, data_dir=None, keep=False,
        log=print) -> dict:
    """Every size, smallest first; writes scale.json and scale.md into ``output_dir``."""
    from translator.files import atomic_write_text
    from translator.machine import hardware

    sizes = sorted(sizes)
    scratch = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="translator-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = {"sizes": {}}
    try:
        for size in sizes:
            results["sizes"][str(size)] = run_size(size, scratch, steps, data_dir, log)
            if not keep:
                shutil.rmtree(scratch / f"scale-{size}")
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    smallest, largest = results["sizes"][str(sizes[0])], results["sizes"][str(sizes[-1])]
    results["memory_growth"] = {stage: round(largest[stage]["peak_memory_mib"] / smallest[stage]["peak_memory_mib"], 3)
                                for stage in STAGES}
    results["bounded"] = {stage: growth <= ALLOWED_GROWTH for stage, growth in results["memory_growth"].items()}
    results["machine"] = {"hardware": hardware(), "cpu_cores": len(os.sched_getaffinity(0)),
                          "date": time.strftime("%Y-%m-%d"), "training_steps": steps,
                          "total_minutes": round((time.time() - started) / 60, 1)}
    output = Path(output_dir)
    atomic_write_text(output / "scale.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(output / "scale.md", markdown(results))
    return results


def markdown(results: dict) -> str:
    sizes = sorted(results["sizes"], key=int)
    machine = results["machine"]
    head = " | ".join(f"{int(size):,} pairs: time | peak memory" for size in sizes)
    lines = [f"# translator scale-bench, {machine['date']}, {machine['hardware']}", "",
             f"| stage | {head} | memory growth | at most {ALLOWED_GROWTH}x |",
             "|---|" + "---:|---:|" * len(sizes) + "---:|---|"]
    names = {"data": "translator data", "tokenizers": "translator tokenizers",
             "train": f"translator train ({machine['training_steps']} steps, streamed)"}
    for stage in STAGES:
        cells = " | ".join(f"{results['sizes'][size][stage]['seconds']:,.0f} s | "
                           f"{results['sizes'][size][stage]['peak_memory_mib']:,.0f} MiB" for size in sizes)
        lines.append(f"| {names[stage]} | {cells} | {results['memory_growth'][stage]:.2f}x | "
                     f"{'yes' if results['bounded'][stage] else 'NO'} |")
    lines.append("")
    for size in sizes:
        train = results["sizes"][size]["train"]
        if "first_pass_seconds" in train:
            lines.append(f"- {int(size):,} pairs: {train['training_pairs']:,} training pairs streamed, "
                         f"{train['batches_per_epoch']:,} batches per epoch, counted by a first pass of "
                         f"{train['first_pass_seconds']} s; validation loss after the steps "
                         f"{train['validation_loss']:.3f}.")
    lines += ["", f"Whole bench: {machine['total_minutes']} min (generating the corpora included)."]
    return "\n".join(lines) + "\n"
