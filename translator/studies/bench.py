"""`translator bench` (`make bench`): training and decoding speed, side by side with the textbook.

In one run, on Multi30k de->en (prepared with `make data tokenizers CORPUS=multi30k-de-en`):

1. the matmul peak of this machine (float32 and bfloat16, 4096 x 4096 products);
2. the textbook Keras seq2seq, written here as the Keras examples write it: embedding 256, one
   LSTM of 512 units on each side, SentencePiece BPE 8k/8k, random batches of 64 padded to their
   longest sentence, ``model.fit``; then greedy decoding of test2016 with separately built
   inference models, 1,000 sentences in one batch, one call per token (``predict()`` and calling
   the models directly);
3. our path on the same model size: `translator.training.trainer`'s compiled step on token-count,
   length-bucketed batches; then our greedy and beam-5 search (`translator.Translator`) on the
   textbook model's own trained weights, copied into a `Seq2Seq`, so both decode the same model
   (the share of identical greedy outputs is reported);
4. the attention model of the issue (BiLSTM 2 x 256 encoder, Bahdanau attention, LSTM 512
   decoder, embeddings 256, joint BPE 8k), float32 and mixed bfloat16;
5. decoding on trained runs, as a user gets it (`Translator.load`): the attention model trained
   by `configs/bench-attention.yaml` into ``bench/runs/attention`` (trained and exported once,
   when missing; or any run given with ``--run``), greedy and beam 5, and the recipe run
   (``runs/multi30k-de-en-bigru-luong``, when trained) with beam 5 and its own beam 10. Every
   decoding row gives the mean output length beside the reference's: a row whose outputs are
   shorter than 80% of the reference is marked as not representative (a model that stops early
   decodes fast);
6. decoding that does less work (shortlists, int8) on the same runs (`translator.studies.shortlist_bench`);
7. the first translation: ``echo "Ein Hund." | translator translate --run RUN`` twice in a row
   (the first after other phases, the second right after it), wall time and peak memory.

Every phase runs in its own process (its own peak memory, no shared TensorFlow state) and
trains for a fixed time budget after the first batches (tracing) are done. Throughput counts
non-padding target tokens; model-FLOP utilisation (MFU) divides the model's useful FLOPs
(matrix products of the real tokens, forward and backward = 3 x forward) by the measured
float32 matmul peak. Results: bench/results/bench.json and bench/results/bench.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from translator.studies.shortlist_bench import phase_decode_less

CORPUS = "multi30k-de-en"
TEXTBOOK_MODEL = {"cell": "lstm", "embedding_dim": 256, "units": 512}
ATTENTION_MODEL = {"cell": "lstm", "embedding_dim": 256, "units": 512, "encoder_units": 256,
                   "bidirectional": True, "attention": "bahdanau"}
SEPARATE_TOKENIZER, JOINT_TOKENIZER = "multi30k", "multi30k-joint8k"
GREEDY_BATCH_SIZE, BEAM_BATCH_SIZE = 500, 64  # sentences per batch of our decoding
BENCH_CONFIG, BENCH_RUN = "configs/bench-attention.yaml", "bench/runs/attention"
RECIPE_RUN = "runs/multi30k-de-en-bigru-luong"
REPRESENTATIVE_LENGTH = 0.8  # a decoding row's outputs must be at least this share of the reference's length


# ----------------------------------------------------------------------------- shared

def _peak_memory_mib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def _data(tokenizer_recipe: str, work_dir: str = "work"):
    from translator.data.corpora import read_prepared_split
    from translator.data.tokenizers import load_tokenizers

    directory = Path(work_dir) / CORPUS / "tokenizers" / tokenizer_recipe
    if not (directory / "card.json").is_file():
        raise FileNotFoundError(f"{directory}/card.json not found: run `make data tokenizers CORPUS={CORPUS}` "
                                f"and `translator tokenizers {CORPUS} --recipe {tokenizer_recipe}` first")
    return load_tokenizers(directory), {split: read_prepared_split(CORPUS, split, work_dir)
                                        for split in ("train", "test")}


def _cell_flops(cell: str, inputs: int, units: int) -> int:
    gates = 3 if cell == "gru" else 4
    return 2 * (inputs + units) * gates * units  # [x; h] @ [W; U] for the gates


def forward_flops(settings: dict, source_length: int, target_length: int, source_vocabulary: int,
                  target_vocabulary: int) -> int:
    """Matrix-product FLOPs of one sentence pair's forward pass (embedding look-ups are free):
    the encoder over `source_length` pieces and `target_length` decoder steps. `settings` is a
    config's model section (LSTM or GRU, Bahdanau, Luong or no attention, any layers)."""
    embedding, units, cell = settings["embedding_dim"], settings["units"], settings.get("cell", "lstm")
    encoder_units = settings.get("encoder_units") or units
    directions = 2 if settings.get("bidirectional") else 1
    memory = directions * encoder_units
    flops = source_length * directions * (_cell_flops(cell, embedding, encoder_units) + (
        settings.get("encoder_layers", 1) - 1) * _cell_flops(cell, memory, encoder_units))
    attention = settings.get("attention") or "none"
    if attention == "bahdanau":
        flops += source_length * 2 * memory * units                # W_m m, once per source position
        per_step = _cell_flops(cell, embedding + memory, units)     # [y; c] in, s out
        per_step += 2 * units * units                              # W_q s
    else:
        if attention == "luong_general":
            flops += source_length * 2 * memory * units            # W m, once per source position
        per_step = _cell_flops(cell, embedding, units)
    per_step += (settings.get("decoder_layers", 1) - 1) * _cell_flops(cell, units, units)
    if attention != "none":
        per_step += source_length * (2 * units + 2 * memory)       # scores, weighted sum
        per_step += 2 * (units + memory) * units                   # attentional layer
    per_step += 2 * units * target_vocabulary                      # output projection
    return flops + target_length * per_step


def decoding_flops(settings: dict, source_lengths, output_lengths, beam_size: int, source_vocabulary: int,
                   target_vocabulary: int) -> int:
    """The useful matrix-product FLOPs of decoding: the encoder once per sentence, and one
    decoder step per output piece and its <eos> for each of the `beam_size` hypotheses (steps of
    hypotheses that lose, and padding, are not counted: like MFU, what the outputs need)."""
    total = 0
    for source, output in zip(source_lengths, output_lengths):
        encoder = forward_flops(settings, source, 0, source_vocabulary, target_vocabulary)
        total += encoder + beam_size * (forward_flops(settings, source, output + 1, source_vocabulary,
                                                      target_vocabulary) - encoder)
    return total


# ----------------------------------------------------------------------------- phases

def phase_matmul() -> dict:
    import tensorflow as tf

    results = {}
    for dtype in (tf.float32, tf.bfloat16):
        matrix = tf.cast(tf.random.normal((4096, 4096)), dtype)
        product = tf.function(lambda x: tf.matmul(x, x))
        product(matrix).numpy()
        best = 0.0
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(4):
                result = product(matrix)
            result.numpy()
            best = max(best, 4 * 2 * 4096**3 / (time.perf_counter() - started) / 1e9)
        results[dtype.name] = round(best, 1)
    return {"gflops": results}


def textbook_model(source_vocabulary: int, target_vocabulary: int):
    """The Keras example's seq2seq and its two inference models, built from the same layers.

    Returns a dict: model, encoder_model, decoder_model, and the layers by role.
    """
    import keras

    encoder_inputs = keras.Input((None,), dtype="int32", name="encoder_inputs")
    source_embedding = keras.layers.Embedding(source_vocabulary, 256, mask_zero=True)
    encoder = keras.layers.LSTM(512, return_state=True)
    _, state_h, state_c = encoder(source_embedding(encoder_inputs))
    decoder_inputs = keras.Input((None,), dtype="int32", name="decoder_inputs")
    target_embedding = keras.layers.Embedding(target_vocabulary, 256, mask_zero=True)
    decoder = keras.layers.LSTM(512, return_sequences=True, return_state=True)
    output = keras.layers.Dense(target_vocabulary, activation="softmax")
    outputs, _, _ = decoder(target_embedding(decoder_inputs), initial_state=[state_h, state_c])
    model = keras.Model([encoder_inputs, decoder_inputs], output(outputs))

    encoder_model = keras.Model(encoder_inputs, [state_h, state_c])
    input_h, input_c = keras.Input((512,)), keras.Input((512,))
    step_outputs, h, c = decoder(target_embedding(decoder_inputs), initial_state=[input_h, input_c])
    decoder_model = keras.Model([decoder_inputs, input_h, input_c], [output(step_outputs), h, c])
    return {"model": model, "encoder_model": encoder_model, "decoder_model": decoder_model,
            "source_embedding": source_embedding, "encoder": encoder, "target_embedding": target_embedding,
            "decoder": decoder, "output": output}


def _batch_figures(batches, settings, tokenizers, elapsed):
    """Throughput, padding and model GFLOP/s of timed (source, target_output) batches."""
    import numpy as np

    real = sum(int(np.count_nonzero(target)) for _, target in batches)
    padded = sum(target.size for _, target in batches)
    flops = 3 * sum(forward_flops(settings, int(np.count_nonzero(s)), int(np.count_nonzero(t)),
                                  tokenizers["source"].vocabulary_size, tokenizers["target"].vocabulary_size)
                    for source, target in batches for s, t in zip(source, target))
    return {"tokens_per_second": round(real / elapsed, 1), "target_padding": round(1 - real / padded, 3),
            "model_gflops_per_second": round(flops / elapsed / 1e9, 1), "batches": len(batches),
            "seconds": round(elapsed, 1), "peak_memory_mib": _peak_memory_mib()}


def phase_textbook_train(seconds: float, weights_path: str) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from translator.data.batching import pad
    from translator.special_ids import EOS_ID, SOS_ID

    tokenizers, splits = _data(SEPARATE_TOKENIZER)
    sources = tokenizers["source"].encode(splits["train"]["source"])
    targets = tokenizers["target"].encode(splits["train"]["target"])
    keras.utils.set_random_seed(1)
    textbook = textbook_model(tokenizers["source"].vocabulary_size, tokenizers["target"].vocabulary_size)
    model = textbook["model"]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    order = np.random.default_rng(1).permutation(len(sources))
    batches = []  # random batches of 64, padded to their longest sentence
    for start in range(0, len(order) - 63, 64):
        rows = order[start:start + 64]
        batches.append((pad([sources[i] for i in rows]), pad([[SOS_ID, *targets[i]] for i in rows]),
                        pad([[*targets[i], EOS_ID] for i in rows])))
    spec = tf.TensorSpec([None, None], tf.int32)
    dataset = tf.data.Dataset.from_generator(lambda: (((s, i), o) for s, i, o in batches),
                                             output_signature=((spec, spec), spec)).prefetch(2)

    class Clock(keras.callbacks.Callback):
        """Starts timing after the first 3 batches (tracing) and stops fit() after `seconds`."""

        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.started, self.first = time.perf_counter(), batch + 1
            elif batch > 2 and time.perf_counter() - self.started >= seconds:
                self.elapsed, self.last = time.perf_counter() - self.started, batch + 1
                self.model.stop_training = True

    clock = Clock()
    model.fit(dataset, epochs=1, verbose=0, callbacks=[clock])  # one fit(), as the Keras example does
    if not hasattr(clock, "elapsed"):
        raise RuntimeError("the textbook model went through the whole epoch before the time budget ran out")
    elapsed, position = clock.elapsed, clock.last
    model.save_weights(weights_path)
    return _batch_figures([(s, o) for s, _, o in batches[3:position]], TEXTBOOK_MODEL, tokenizers, elapsed)


def phase_ours_train(settings: dict, tokenizer_recipe: str, precision: str, seconds: float,
                     weights_path: str | None = None) -> dict:
    import keras
    import tensorflow as tf

    from translator.config import validate
    from translator.training.trainer import make_training_step
    from translator.training.translation_task import TranslationTask

    config = validate({"data": {"corpus": CORPUS, "tokenizer": tokenizer_recipe},
                       "model": settings, "training": {"batch_tokens": 4096, "precision": precision}})
    tokenizers, _ = _data(tokenizer_recipe)
    keras.utils.set_random_seed(1)
    task = TranslationTask(config, tokenizers, log=lambda *a: None)
    model = task.build_model(precision)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    step = make_training_step(config, model, optimizer, tf.distribute.get_strategy(), task.signature, task)
    batches = list(task.train_batches.epoch(0))
    for batch in batches[:3]:  # tracing
        step(*batch)
    position, started = 3, time.perf_counter()
    while time.perf_counter() - started < seconds and position < len(batches):
        [float(x) for x in step(*batches[position])]
        position += 1
    elapsed = time.perf_counter() - started
    if weights_path:
        model.save(weights_path)
    return _batch_figures([(s, o) for s, _, o in batches[3:position]], settings, tokenizers, elapsed)


def _textbook_greedy(textbook, tokenizers, sentences, max_length, call):
    """The textbook decoding loop: encoder model once, then the decoder model once per token."""
    import numpy as np

    from translator.data.batching import pad
    from translator.special_ids import EOS_ID, SOS_ID

    h, c = call(textbook["encoder_model"], pad(tokenizers["source"].encode(sentences)))
    tokens = np.full((len(sentences), 1), SOS_ID, np.int32)
    outputs, finished = [], np.zeros(len(sentences), bool)
    for _ in range(max_length):
        probabilities, h, c = call(textbook["decoder_model"], [tokens, h, c])
        tokens = np.argmax(np.asarray(probabilities)[:, -1, :], axis=-1).astype(np.int32)[:, None]
        outputs.append(np.where(finished, 0, tokens[:, 0]))
        finished |= tokens[:, 0] == EOS_ID
        if finished.all():
            break
    texts = []
    for row in np.stack(outputs, axis=1).tolist():
        texts.append(tokenizers["target"].decode(row[:row.index(EOS_ID)] if EOS_ID in row else row))
    return texts


def copy_textbook_weights(textbook, model):
    """The textbook model's weights into our Seq2Seq of the same shape (embedding 256, LSTM 512)."""
    pairs = [(textbook["source_embedding"].embeddings, model.source_embedding.embeddings),
             (textbook["target_embedding"].embeddings, model.decoder.embedding.embeddings),
             (textbook["output"].kernel, model.decoder.output_layer.kernel),
             (textbook["output"].bias, model.decoder.output_layer.bias)]
    for layer, ours in ((textbook["encoder"], model.encoder.recurrent_layers[0].cell),
                        (textbook["decoder"], model.decoder.recurrent_layers[0].cell)):
        pairs += [(layer.cell.kernel, ours.kernel), (layer.cell.recurrent_kernel, ours.recurrent_kernel),
                  (layer.cell.bias, ours.bias)]
    for source, target in pairs:
        target.assign(source)


def phase_decode_lstm(weights_path: str) -> dict:
    """Greedy decoding of test2016 by the textbook loop and by ours, on the same trained weights."""
    import numpy as np

    from translator.decoding.translator import Translator
    from translator.models.seq2seq import Seq2Seq, computing_in

    tokenizers, splits = _data(SEPARATE_TOKENIZER)
    sentences = splits["test"]["source"]
    textbook = textbook_model(tokenizers["source"].vocabulary_size, tokenizers["target"].vocabulary_size)
    textbook["model"].load_weights(weights_path)
    max_length = max(len(t) for t in tokenizers["target"].encode(splits["train"]["target"])) + 1
    results = {}
    predict = lambda model, inputs: model.predict(inputs, batch_size=len(sentences), verbose=0)  # noqa: E731
    direct = lambda model, inputs: [np.asarray(x) for x in model(inputs, training=False)]  # noqa: E731
    for name, call in (("textbook_predict", predict), ("textbook_direct", direct)):
        _textbook_greedy(textbook, tokenizers, sentences, max_length, call)  # warm-up: tracing, kernels
        started = time.perf_counter()
        texts = _textbook_greedy(textbook, tokenizers, sentences, max_length, call)
        results[name] = round(len(sentences) / (time.perf_counter() - started), 1)
    results["textbook_mean_output_words"] = round(sum(len(t.split()) for t in texts) / len(texts), 2)
    references = splits["test"]["target"]
    results["reference_mean_words"] = round(sum(len(t.split()) for t in references) / len(references), 2)
    model = Seq2Seq.from_settings(TEXTBOOK_MODEL, tokenizers["source"].vocabulary_size,
                                  tokenizers["target"].vocabulary_size)
    copy_textbook_weights(textbook, model)
    for precision in ("float32", "bfloat16"):  # the same weights, decoded in float32, then cast to bfloat16
        translator = Translator(computing_in(model, precision), tokenizers["source"], tokenizers["target"])
        ours, greedy_outputs = _our_decoding(translator, sentences)
        results.update({f"{key}_{precision}": value for key, value in ours.items()})
        results[f"identical_greedy_outputs_{precision}"] = round(
            float(np.mean([a == b for a, b in zip(greedy_outputs, texts)])), 4)
    results["peak_memory_mib"] = _peak_memory_mib()
    return results


def _our_decoding(translator, sentences) -> tuple[dict, list[str]]:
    """Speeds (sentences/s) and mean output lengths of greedy and beam 5; the greedy outputs."""
    results, greedy_outputs = {}, []
    for beam_size in (1, 5):
        batch_size = GREEDY_BATCH_SIZE if beam_size == 1 else BEAM_BATCH_SIZE
        translator.translate(sentences, beam_size=beam_size, batch_size=batch_size)  # warm-up: tracing, kernels
        started = time.perf_counter()
        outputs = translator.translate(sentences, beam_size=beam_size, batch_size=batch_size)
        name = "ours_greedy" if beam_size == 1 else "ours_beam5"
        results[name] = round(len(sentences) / (time.perf_counter() - started), 1)
        results[f"{name}_mean_output_words"] = round(sum(len(o.split()) for o in outputs) / len(outputs), 2)
        if beam_size == 1:
            greedy_outputs = outputs
    return results, greedy_outputs


def phase_decode_run(run: str, beam_sizes: list[int]) -> dict:
    """A trained run's decoding of test2016 as `Translator.load` gives it (its precision, its
    length penalty): sentences/s and mean output words per beam size, beside the reference's."""
    from translator.data.corpora import read_prepared_split
    from translator.decoding.translator import Translator
    from translator.models.runs import read_run_config

    test = read_prepared_split(CORPUS, "test")
    translator = Translator.load(run)
    settings = read_run_config(run)["model"]
    results = {"reference_mean_words": round(sum(len(t.split()) for t in test["target"]) / len(test["target"]), 2)}
    for beam_size in beam_sizes:
        batch_size = GREEDY_BATCH_SIZE if beam_size == 1 else BEAM_BATCH_SIZE
        translator.translate(test["source"], beam_size=beam_size, batch_size=batch_size)  # warm-up: tracing
        started = time.perf_counter()
        outputs = translator.translate(test["source"], beam_size=beam_size, batch_size=batch_size)
        elapsed = time.perf_counter() - started
        flops = decoding_flops(
            settings, [min(len(ids), translator.max_source_length) for ids in translator.source_tokenizer.encode(
                test["source"])], [len(ids) for ids in translator.target_tokenizer.encode(outputs)], beam_size,
            translator.source_tokenizer.vocabulary_size, translator.target_tokenizer.vocabulary_size)
        results[f"beam{beam_size}"] = {
            "sentences_per_second": round(len(outputs) / elapsed, 1),
            "mean_output_words": round(sum(len(o.split()) for o in outputs) / len(outputs), 2),
            "model_gflops_per_second": round(flops / elapsed / 1e9, 1)}
    results["length_penalty"] = translator.length_penalty
    results["precision"] = translator.model.dtype_policy.compute_dtype
    results["peak_memory_mib"] = _peak_memory_mib()
    return results


def phase_cold_start(run: str) -> dict:
    """``echo "Ein Hund." | translator translate --run RUN`` twice: wall time of each, and the
    peak memory of the two processes (this phase process starts nothing else)."""
    import resource

    executable = Path(sys.executable).parent / "translator"
    command = [str(executable)] if executable.is_file() else [sys.executable, "-m", "translator"]
    results = {}
    for attempt in ("first", "second"):
        started = time.perf_counter()
        completed = subprocess.run(command + ["translate", "--run", run], input="Ein Hund.\n",
                                   capture_output=True, text=True)
        results[f"{attempt}_seconds"] = round(time.perf_counter() - started, 2)
        if completed.returncode:
            raise RuntimeError(f"translator translate --run {run} failed:\n{completed.stderr[-2000:]}")
        results["translation"] = completed.stdout.strip()
        results["through_export"] = "using the export" in completed.stderr
    results["peak_memory_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return results


PHASES = {"matmul": phase_matmul, "textbook_train": phase_textbook_train, "ours_train": phase_ours_train,
          "decode_lstm": phase_decode_lstm, "decode_run": phase_decode_run, "cold_start": phase_cold_start,
          "decode_less": phase_decode_less}


# ----------------------------------------------------------------------------- the run

def _run_phase(name: str, *arguments) -> dict:
    """One phase in a fresh Python process; its result comes back as JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json") as output:
        command = [sys.executable, "-m", "translator.studies.bench", name, output.name, json.dumps(arguments)]
        print(f"  {name} {' '.join(str(a) for a in arguments if not str(a).startswith('/'))}", flush=True)
        completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if completed.returncode:
            raise RuntimeError(f"bench phase {name} failed:\n{completed.stderr[-3000:]}")
        return json.loads(Path(output.name).read_text())


def trained_run(run: str | None = None) -> dict:
    """The trained run the bench decodes with: `run`, or ``bench/runs/attention``, trained by
    `configs/bench-attention.yaml` and exported first when it has no model (once: later benches
    reuse it). Returns its path, epochs and training minutes from its log."""
    from translator.reports import read_log

    path = Path(run or BENCH_RUN)
    if run is None and not (path / "model.keras").is_file():
        print(f"  training {BENCH_CONFIG} into {path} (once; later benches reuse it)", flush=True)
        subprocess.run([sys.executable, "-m", "translator", "train", BENCH_CONFIG, "--run", str(path)], check=True)
        subprocess.run([sys.executable, "-m", "translator", "export", "--run", str(path)], check=True)
    if not (path / "model.keras").is_file():
        raise FileNotFoundError(f"{path}/model.keras not found: train the run first, or leave out --run to let "
                                f"the bench train its own ({BENCH_CONFIG})")
    log = read_log(path)
    return {"run": str(path), "epochs": len(log), "training_minutes": round(float(log[-1]["train_seconds"]) / 60, 1)}


def run(seconds: float = 60.0, output_dir: str = "bench/results", decoding_run: str | None = None,
        recipe_run: str = RECIPE_RUN) -> dict:
    """All phases; writes bench.json and bench.md into `output_dir` and returns the results.
    ``decoding_run``: the trained attention run to decode with (default: the bench's own);
    ``recipe_run``: the recipe's run, decoded too when it has a model."""
    import os
    import platform

    from translator.files import atomic_write_text
    from translator.machine import hardware, matrix_instructions

    _data(SEPARATE_TOKENIZER), _data(JOINT_TOKENIZER)  # fail early, with the command to run
    decoding = trained_run(decoding_run)
    started = time.time()
    output = Path(output_dir)
    results = {}

    def phase(key, name, *arguments):  # each result is written as soon as it is measured
        results[key] = _run_phase(name, *arguments)
        atomic_write_text(output / "bench.partial.json", json.dumps(results, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as scratch:
        textbook_weights = f"{scratch}/textbook.weights.h5"
        phase("matmul", "matmul")
        phase("textbook_train", "textbook_train", seconds, textbook_weights)
        phase("ours_train_lstm_float32", "ours_train", TEXTBOOK_MODEL, SEPARATE_TOKENIZER, "float32", seconds)
        phase("ours_train_lstm_bfloat16", "ours_train", TEXTBOOK_MODEL, SEPARATE_TOKENIZER, "mixed_bfloat16",
              seconds)
        phase("decode_lstm", "decode_lstm", textbook_weights)
        phase("ours_train_attention_float32", "ours_train", ATTENTION_MODEL, JOINT_TOKENIZER, "float32", seconds)
        phase("ours_train_attention_bfloat16", "ours_train", ATTENTION_MODEL, JOINT_TOKENIZER, "mixed_bfloat16",
              seconds)
    phase("decode_trained", "decode_run", decoding["run"], [1, 5])
    results["decode_trained"].update(decoding)
    if (Path(recipe_run) / "model.keras").is_file():
        phase("decode_recipe", "decode_run", recipe_run, [5, 10])
        results["decode_recipe"]["run"] = recipe_run
    phase("less_trained", "decode_less", decoding["run"])
    if (Path(recipe_run) / "model.keras").is_file():
        phase("less_recipe", "decode_less", recipe_run)
    phase("cold_start", "cold_start", decoding["run"])
    results["machine"] = {"processor": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
                          "hardware": hardware(), "matrix_instructions": matrix_instructions(),
                          "date": time.strftime("%Y-%m-%d"), "seconds_per_training_phase": seconds,
                          "total_minutes": round((time.time() - started) / 60, 1)}
    atomic_write_text(output / "bench.json", json.dumps(results, indent=2) + "\n")
    (output / "bench.partial.json").unlink()
    table = markdown(results)
    atomic_write_text(output / "bench.md", table)
    return results


def _length(words: float, reference: float) -> str:
    """Mean output length against the reference's, marked when the outputs are too short to
    say what a trained model's decoding costs."""
    share = words / reference
    mark = "" if share >= REPRESENTATIVE_LENGTH else " **not representative**"
    return f"{words} ({share:.0%}){mark}"


def markdown(results: dict) -> str:
    from translator.decoding.translator import BATCHES_IN_FLIGHT

    peak = results["matmul"]["gflops"]["float32"]
    bfloat16_peak = results["matmul"]["gflops"]["bfloat16"]
    baseline = results["textbook_train"]["tokens_per_second"]
    machine = results["machine"]
    lines = [f"# translator bench, {machine['date']}, {machine['hardware']} ({machine['matrix_instructions']})",
             "", f"Matmul peak (4096 x 4096): float32 {peak} GFLOP/s, bfloat16 {bfloat16_peak} GFLOP/s.", "",
             "## Training, Multi30k de->en (non-padding target tokens per second)", "",
             "| model | path | tokens/s | x textbook | target padding | model GFLOP/s | MFU (fp32 peak) "
             "| MFU (bf16 peak) | peak memory |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [("LSTM 512 (textbook size)", "textbook Keras, model.fit, random batches of 64", "textbook_train"),
            ("LSTM 512 (textbook size)", "ours, float32", "ours_train_lstm_float32"),
            ("LSTM 512 (textbook size)", "ours, mixed bfloat16", "ours_train_lstm_bfloat16"),
            ("BiLSTM 2x256 + Bahdanau + LSTM 512", "ours, float32", "ours_train_attention_float32"),
            ("BiLSTM 2x256 + Bahdanau + LSTM 512", "ours, mixed bfloat16", "ours_train_attention_bfloat16")]
    for model, path, key in rows:
        row = results[key]
        flops = row["model_gflops_per_second"]
        of_bfloat16_peak = f"{flops / bfloat16_peak:.1%}" if "bfloat16" in key else ""
        lines.append(f"| {model} | {path} | {row['tokens_per_second']:,.0f} | "
                     f"{row['tokens_per_second'] / baseline:.2f} | {row['target_padding']:.1%} | "
                     f"{flops} | {flops / peak:.1%} | {of_bfloat16_peak} | {row['peak_memory_mib']:,.0f} MiB |")
    decode = results["decode_lstm"]
    reference = decode["reference_mean_words"]
    predict, direct = decode["textbook_predict"], decode["textbook_direct"]
    textbook_words = _length(decode["textbook_mean_output_words"], reference)
    lines += ["", "## Decoding test2016, a model trained for "
              f"{machine['seconds_per_training_phase']:.0f} s (1,000 sentences, sentences per second, text in, "
              "text out)", "",
              "| model | decoding | greedy | beam 5 | greedy x predict() | greedy x direct | greedy = textbook "
              "| output words, greedy | beam 5 |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|",
              f"| LSTM 512 (the textbook run's weights) | textbook, predict() per token | {predict} | - | 1.0 | "
              f"{predict / direct:.1f} | | {textbook_words} | |",
              f"| LSTM 512 (the textbook run's weights) | textbook, direct call per token | {direct} | - | "
              f"{direct / predict:.1f} | 1.0 | | {textbook_words} | |"]
    for precision in ("float32", "bfloat16"):
        greedy = decode[f"ours_greedy_{precision}"]
        lines.append(f"| LSTM 512 (the textbook run's weights) | ours, {precision} | {greedy} | "
                     f"{decode[f'ours_beam5_{precision}']} | {greedy / predict:.1f} | {greedy / direct:.1f} | "
                     f"{decode[f'identical_greedy_outputs_{precision}']:.1%} | "
                     f"{_length(decode[f'ours_greedy_mean_output_words_{precision}'], reference)} | "
                     f"{_length(decode[f'ours_beam5_mean_output_words_{precision}'], reference)} |")
    lines += ["", f"Reference: {reference} words per sentence. Ours: greedy in batches of {GREEDY_BATCH_SIZE} "
              f"sentences (finished ones leave the batch), beam search in batches of {BEAM_BATCH_SIZE}, "
              f"{BATCHES_IN_FLIGHT} batches at once (`Translator`); the textbook loop decodes all 1,000 in one "
              "batch. Every decoder translates the test set once untimed first (tracing, and the kernels of every "
              "batch shape), then once timed. \"greedy = textbook\": the share of sentences whose greedy output "
              "is the textbook loop's. Output words: the mean length of the outputs and its share of the "
              f"reference's; below {REPRESENTATIVE_LENGTH:.0%} a row says little about a trained model's decoding.",
              "", "## Decoding test2016 with trained runs (`Translator.load`, sentences per second)", "",
              "| run | trained | decoding | sentences/s | output words | model GFLOP/s | of the peak | peak memory |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    lines += _trained_decoding(results, peak, bfloat16_peak)
    cold = results["cold_start"]
    how = "through the run's export" if cold["through_export"] else "without an export"
    lines += ["", f"The first translation: `echo \"Ein Hund.\" | translator translate --run "
              f"{results['decode_trained']['run']}` took {cold['first_seconds']} s, and {cold['second_seconds']} s "
              f"run again right after ({how}), peak memory {cold['peak_memory_mib']:,.0f} MiB; it printed "
              f"\"{cold['translation']}\".",
              "", f"Whole bench: {machine['total_minutes']} min."]
    return "\n".join(lines) + "\n"



def _trained_decoding(results: dict, peak: float, bfloat16_peak: float) -> list[str]:
    """The rows of the trained runs' decoding, and the section on decoding that does less work."""
    from translator.studies.shortlist_bench import markdown as less_markdown

    lines = []
    for key in ("decode_trained", "decode_recipe"):
        if key not in results:
            continue
        row = results[key]
        trained = f"{row['epochs']} epochs, {row['training_minutes']} min" if "epochs" in row else "its recipe"
        for beam in sorted(int(name[4:]) for name in row if name.startswith("beam")):
            figures = row[f"beam{beam}"]
            search = "greedy" if beam == 1 else f"beam {beam}, length penalty {row['length_penalty']}"
            flops = figures.get("model_gflops_per_second")
            of_peak = "" if flops is None else \
                f"{flops / (bfloat16_peak if row['precision'] == 'bfloat16' else peak):.1%}"
            lines.append(f"| `{row['run']}` | {trained} | {row['precision']}, {search} | "
                         f"{figures['sentences_per_second']} | "
                         f"{_length(figures['mean_output_words'], row['reference_mean_words'])} | "
                         f"{'' if flops is None else flops} | {of_peak} | {row['peak_memory_mib']:,.0f} MiB |")
    lines += ["", "Model GFLOP/s: the matrix products the outputs need (the encoder once per sentence, a decoder "
              "step per output piece and its <eos> for each hypothesis of the beam) per second of decoding; of "
              "the peak: against the matmul peak above of the decoding's precision. Decoding at a large share of "
              "it is bound by the matrix products, and only a faster matrix unit (AMX) makes it much faster."]
    lines += ["", "## Decoding that does less work: lexical shortlists and int8 (`translator.studies.shortlist_bench`)", ""]
    for key in ("less_trained", "less_recipe"):
        if key in results:
            lines += less_markdown(results[key]) + [""]
    lines += ["A shortlist is the union of its batch's sentences' (README, \"Shortlists and int8\"); x today and the "
              "differences compare a row with the fastest of today's rows of the same search."]
    return lines

if __name__ == "__main__":  # one phase: python -m translator.studies.bench PHASE OUTPUT_JSON ARGUMENTS_JSON
    phase, output_path, arguments = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    result = PHASES[phase](*arguments)
    Path(output_path).write_text(json.dumps(result))
