"""How fast can a shortlist make greedy search? The floor of a trained run's greedy decoding of
test2016 when the output projection costs nothing: the encoder's time, and a decoder step's time
as the projection's columns go from the whole vocabulary to 4 pieces.

    TRANSLATOR_DATA=../shared/data taskset -c 1 .venv/bin/python scripts/greedy_floor.py \
        [--run runs/multi30k-de-en-bigru-luong]

A shortlist shrinks only the projection: the encoder, the attention, the recurrent cells and
the loop's own work stay. So greedy search with any shortlist is at most (encoder + search) /
(encoder + search x step at 4 columns / step at the whole vocabulary) times today's.
"""

import argparse
import time

import tensorflow as tf

from translator.data.batching import pad
from translator.data.corpora import read_prepared_split
from translator.decoding.translator import Translator

BATCH = 128


def milliseconds(function, *arguments, repeats=1):
    function(*arguments)  # tracing
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            result = function(*arguments)
        tf.nest.map_structure(lambda tensor: tensor.numpy(), result)
        best = min(best, (time.perf_counter() - started) / repeats * 1e3)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/multi30k-de-en-bigru-luong")
    args = parser.parse_args()
    translator = Translator.load(args.run, shortlist=False)
    model = translator.model
    encoded = translator.source_tokenizer.encode(read_prepared_split("multi30k-de-en", "test")["source"])
    encoded.sort(key=len)
    batches = [tf.constant(pad(encoded[start:start + BATCH])) for start in range(0, len(encoded), BATCH)]

    encode = tf.function(lambda ids: model.encode(ids, training=False))
    search = translator._search(1, 0.0, 2.0, 10, False, False)  # greedy, as translate() runs it
    encoder = milliseconds(lambda: [encode(ids) for ids in batches])
    searched = milliseconds(lambda: [search(ids)[0] for ids in batches])
    print(f"{len(encoded):,} sentences in batches of {BATCH}: encoder {encoder:.1f} ms, "
          f"greedy search (encoder included) {searched:.1f} ms")

    cache = model.encode(batches[len(batches) // 2], training=False)
    tokens = tf.fill([BATCH], 2)
    full = tf.function(lambda tokens, cache: model.decoder.step(tokens, cache, training=False)[0])
    restricted = tf.function(lambda tokens, cache, output: model.decoder.step(tokens, cache, training=False,
                                                                               output=output)[0])
    whole = milliseconds(full, tokens, cache, repeats=300)
    print(f"one decoder step of {BATCH} rows, whole vocabulary: {whole:.3f} ms")
    for columns in (2954, 1752, 1262, 964, 4):
        output = model.decoder.restricted_output(tf.range(columns, dtype=tf.int32))
        step = milliseconds(restricted, tokens, cache, output, repeats=300)
        bound = searched / (encoder + (searched - encoder) * step / whole)
        print(f"  {columns:,} columns: {step:.3f} ms, so greedy search at most {bound:.2f}x today's")


if __name__ == "__main__":
    main()
