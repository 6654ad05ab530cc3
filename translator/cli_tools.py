"""The `translator` subcommands beyond the pipeline's stages (`translator.cli` has those and
the program itself): export, shortlist, serve, the benches, the results table, the experiments,
compare and average. Each imports what it needs when it runs.
"""

from __future__ import annotations

import argparse

from translator.checks import (
    POSITIVE_INT,
    POSITIVE_NUMBER,
    option_type,
)
from translator.config import check_setting


def decoding_option(key):
    """An option type that keeps to the config schema's limits of ``decoding.KEY``."""
    return option_type(float if key == "length_penalty" else int,
                       lambda name, value: check_setting("decoding", key, value, name))


# The decoding options keep to the config schema's limits (see checks.py for the others).
BEAM_SIZE, LENGTH_PENALTY = decoding_option("beam_size"), decoding_option("length_penalty")


def add_shortlist_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shortlist", action=argparse.BooleanOptionalAction, default=None,
                        help="decode over the run's lexical shortlist (RUN/shortlist.npz, from `translator "
                             "shortlist --run RUN`), or not (default: the run's decoding config, else not)")


def command_bench(args) -> int:
    from translator.studies import bench

    print(f"translator bench: {args.seconds:.0f} s per training measurement, each phase in its own process")
    results = bench.run(args.seconds, args.output_dir, args.run, args.recipe_run)
    print()
    print(bench.markdown(results), end="")
    print(f"wrote {args.output_dir}/bench.json and {args.output_dir}/bench.md")
    return 0


def add_bench_parser(commands) -> None:
    bench = commands.add_parser("bench", help="training and decoding speed against the textbook Keras seq2seq",
                                description="Measure training throughput (tokens/s, MFU, memory) and decoding "
                                            "speed (sentences/s) of the textbook Keras seq2seq and of ours on "
                                            "Multi30k de->en, side by side (needs `make data tokenizers`).")
    bench.add_argument("--seconds", type=POSITIVE_NUMBER, default=60.0, help="time per training measurement (default 60)")
    bench.add_argument("--output-dir", default="bench/results", help="where bench.json and bench.md go")
    bench.add_argument("--run", help="a trained attention run to decode with (default: bench/runs/attention, "
                                     "trained by configs/bench-attention.yaml and exported when missing)")
    bench.add_argument("--recipe-run", default="runs/multi30k-de-en-bigru-luong",
                       help="the recipe's run, decoded with beam 5 and 10 when it is trained "
                            "(default runs/multi30k-de-en-bigru-luong)")
    bench.set_defaults(handler=command_bench)


def command_export(args) -> int:
    from translator.service.export import export

    runs = args.run if len(args.run) > 1 else args.run[0]
    result = export(runs, args.out, precision=args.precision, beam_sizes=args.beam_sizes, shortlist=args.shortlist)
    print(f"wrote the SavedModel of {' + '.join(args.run)} into {result['directory']}: signatures "
          f"{', '.join(result['signatures'])} (see {result['directory']}/README.md)")
    return 0


def add_export_parser(commands) -> None:
    export = commands.add_parser(
        "export", help="write a TensorFlow SavedModel of a run that works on raw text",
        description="Write a SavedModel that needs only TensorFlow and tensorflow-text: SentencePiece and the "
                    "search run inside the graph. Translation runs get `translate` (sentences -> translations, "
                    "scores), `translate_n_best` and `translate_beam_K`; classifiers `classify`; language "
                    "models `sample`. The directory also holds the run's config.yaml and a README.md.")
    export.add_argument("--run", required=True, action="append",
                        help="run directory (with model.keras, tokenizers/, config.yaml); give it twice or more "
                             "to export the ensemble of those runs as one SavedModel (then --out is needed)")
    export.add_argument("--out", default=None,
                        help="directory to write (default RUN/export, where `translator translate --run RUN` "
                             "finds it and starts in seconds; an earlier export there is replaced)")
    export.add_argument("--precision", choices=("float32", "bfloat16", "int8"), default=None,
                        help="dtype decoding computes in (default: the training's, as Translator.load; int8: "
                             "the decoder's weights in int8, README \"Shortlists and int8\")")
    export.add_argument("--beam-sizes", type=BEAM_SIZE, nargs="*", default=[1], metavar="K",
                        help="beam sizes that get a `translate_beam_K` signature besides the run's own "
                             "(default: 1, greedy search)")
    add_shortlist_option(export)
    export.set_defaults(handler=command_export)

def command_shortlist(args) -> int:
    from translator.decoding.shortlists import build_for_run

    path, shortlist = build_for_run(args.run, args.per_source, args.frequent)
    print(f"wrote {path}: {shortlist.frequent.size:,} frequent target pieces and up to {args.per_source} per source "
          f"piece (of {shortlist.target_vocabulary:,}); decode with it: translator translate --run {args.run} "
          f"--shortlist")
    return 0


def add_shortlist_parser(commands) -> None:
    from translator.decoding.shortlists import FREQUENT, PER_SOURCE

    shortlist = commands.add_parser(
        "shortlist", help="build a run's lexical shortlist, which decoding with --shortlist scores instead of "
                          "the whole vocabulary",
        description="Train IBM Model 1 on the run's training pairs and write RUN/shortlist.npz: for every "
                    "source piece its most probable target pieces, and the target pieces in most sentences.")
    shortlist.add_argument("--run", required=True, help="translation run directory")
    shortlist.add_argument("--per-source", type=POSITIVE_INT, default=PER_SOURCE,
                           help=f"target pieces kept per source piece (default {PER_SOURCE})")
    shortlist.add_argument("--frequent", type=POSITIVE_INT, default=FREQUENT,
                           help=f"most frequent target pieces always kept (default {FREQUENT})")
    shortlist.set_defaults(handler=command_shortlist)


def command_serve(args) -> int:
    from translator.service.serving import serve

    serve(args)
    return 0


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `translator serve` (its service's settings, `translator.service.serving.DEFAULTS`)."""
    from translator import checks
    from translator.service.serving import DEFAULTS

    positive, non_negative, seconds = checks.POSITIVE_INT, checks.NON_NEGATIVE_INT, checks.NON_NEGATIVE_NUMBER
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run directory of a translation model (exported in memory at start)")
    source.add_argument("--export", help="directory written by `translator export`")
    parser.add_argument("--name", default=None, help="model name in /v1/models/NAME:predict (default: the "
                                                     "directory's name)")
    parser.add_argument("--host", default=DEFAULTS["host"], help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=non_negative, default=DEFAULTS["port"],
                        help="port (default 8000; 0: any free one)")
    parser.add_argument("--beam-sizes", type=positive, nargs="*", default=[1], metavar="K",
                        help="with --run: beam sizes requests may ask for besides the run's (default: 1)")
    parser.add_argument("--max-batch-sentences", type=positive, default=DEFAULTS["max_batch_sentences"],
                        help="sentences of waiting requests translated together (default 128)")
    parser.add_argument("--max-wait-ms", type=seconds, default=DEFAULTS["max_wait_ms"],
                        help="how long a batch waits for more requests before it runs (default 5)")
    parser.add_argument("--batches-in-flight", type=positive, default=DEFAULTS["batches_in_flight"],
                        help="batches translated at once, each in its own thread (default 2)")
    parser.add_argument("--max-queue", type=positive, default=DEFAULTS["max_queue"],
                        help="requests that may wait for a batch; one more gets 503 with Retry-After (default 256)")
    parser.add_argument("--request-timeout", type=seconds, default=DEFAULTS["request_timeout"],
                        help="seconds a request may wait for its translation before a 503 (default 60)")
    parser.add_argument("--drain-seconds", type=seconds, default=DEFAULTS["drain_seconds"],
                        help="on SIGTERM, how long the requests already taken may take to be answered "
                             "(default 30)")
    parser.add_argument("--max-sentences", type=positive, default=DEFAULTS["max_sentences"],
                        help="most sentences in one request (default 256)")
    parser.add_argument("--max-characters", type=positive, default=DEFAULTS["max_characters"],
                        help="most characters in one sentence (default 2000)")
    parser.add_argument("--max-body-bytes", type=positive, default=DEFAULTS["max_body_bytes"],
                        help="largest request body (default 4 MiB)")


def add_serve_parser(commands) -> None:
    serve = commands.add_parser(
        "serve", help="an HTTP JSON service of a run or an export that batches concurrent requests",
        description="POST /v1/translate {\"sentences\": [...]} -> {\"translations\": [...]}; the TensorFlow "
                    "Serving REST form POST /v1/models/NAME:predict {\"instances\": [...]}; GET /health. "
                    "Prints the address it listens on.")
    add_serve_arguments(serve)
    add_shortlist_option(serve)
    serve.set_defaults(handler=command_serve)

def command_serve_bench(args) -> int:
    from translator.studies.serve_bench import markdown, run

    results = run(args.run, args.split, args.clients, args.sentences_per_request, args.beam_size, args.output_dir,
                  passes=args.passes, scores=not args.no_scores)
    print()
    print(markdown(results), end="")
    print(f"wrote {' and '.join(results['files'])}")
    return 0


def add_serve_bench_parser(commands) -> None:
    serve_bench = commands.add_parser(
        "serve-bench", help="the server's throughput and latency beside offline translation",
        description="Translate the run's test split offline (Translator) and through `translator serve` with "
                    "1, 8 and 32 concurrent clients; write serve.json and serve.md.")
    serve_bench.add_argument("--run", required=True, help="run directory of a translation model")
    serve_bench.add_argument("--split", default="test", help="split whose sentences are sent (default: test)")
    serve_bench.add_argument("--clients", type=POSITIVE_INT, nargs="+", default=[1, 8, 32], help="concurrent clients")
    serve_bench.add_argument("--sentences-per-request", type=POSITIVE_INT, default=8, help="(default 8)")
    serve_bench.add_argument("--passes", type=POSITIVE_INT, default=3,
                             help="times the split is sent through the server at each client count (default 3)")
    serve_bench.add_argument("--no-scores", action="store_true",
                             help='requests ask for translations only ("scores": false), as offline translation gives')
    serve_bench.add_argument("--beam-size", type=BEAM_SIZE, default=None, help="(default: the run's decoding config)")
    serve_bench.add_argument("--output-dir", default="bench/results", help="where serve.json and serve.md go")
    serve_bench.set_defaults(handler=command_serve_bench)

def command_scale_bench(args) -> int:
    from translator.studies.scale_bench import ALLOWED_GROWTH, markdown, run

    results = run(args.sizes, args.steps, args.output_dir, args.scratch, args.data_dir, args.keep)
    print()
    print(markdown(results), end="")
    for stage, bounded in results["bounded"].items():
        print(f"{stage}: peak memory at {max(args.sizes):,} pairs is {results['memory_growth'][stage]:.2f}x that at "
              f"{min(args.sizes):,}: {'within' if bounded else 'NOT within'} {ALLOWED_GROWTH}x")
    print(f"wrote {args.output_dir}/scale.json and {args.output_dir}/scale.md")
    return 0 if all(results["bounded"].values()) else 1


def add_scale_bench_parser(commands) -> None:
    scale_bench = commands.add_parser(
        "scale-bench", help="time and peak memory of data, tokenizers and train at 500k and 5M pairs",
        description="Generate translation corpora of each size from Multi30k (in a scratch directory), run "
                    "translator data, tokenizers and 200 training steps on each as separate processes, and write "
                    "scale.json and scale.md; fails when a stage's peak memory grows more than 1.5x.")
    scale_bench.add_argument("--sizes", type=POSITIVE_INT, nargs="+", default=[500_000, 5_000_000],
                             help="training pairs of each generated corpus (default: 500000 5000000)")
    scale_bench.add_argument("--steps", type=POSITIVE_INT, default=200, help="training steps (default 200)")
    scale_bench.add_argument("--data-dir", default=None, help="the mirror holding Multi30k (default: $TRANSLATOR_DATA)")
    scale_bench.add_argument("--scratch", default=None, help="where the corpora are generated (default: a "
                                                             "temporary directory, removed afterwards)")
    scale_bench.add_argument("--keep", action="store_true", help="keep the scratch directory")
    scale_bench.add_argument("--output-dir", default="bench/results", help="where scale.json and scale.md go")
    scale_bench.set_defaults(handler=command_scale_bench)


def command_results(args) -> int:
    from translator.studies.results import table, write_readme

    text = table(args.manifest, args.runs_dir, args.split, train=args.train)
    print(text, end="")
    if args.readme:
        write_readme(args.readme, text)
        print(f"wrote the table into {args.readme}")
    return 0


def add_results_parser(commands) -> None:
    results = commands.add_parser(
        "results", help="score the recipes of configs/results.yaml and write the results table into README.md",
        description="Evaluate every run of the results manifest on its test split (training it first with "
                    "--train) and write the table between the results markers of README.md.")
    results.add_argument("--manifest", default="configs/results.yaml", help="rows of the table")
    results.add_argument("--runs-dir", default="runs", help="where the runs are (default: runs)")
    results.add_argument("--split", default="test", help="split to score (default: test)")
    results.add_argument("--readme", default="README.md", help="file whose results section is rewritten; "
                                                               "'' prints the table only")
    results.add_argument("--train", action="store_true", help="train the runs that have no model yet")
    results.set_defaults(handler=command_results)

def command_experiments(args) -> int:
    from translator.studies.experiments import run

    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: expected a number of worker processes, 1 or more")
    status = run(train=args.train, only=args.only, output_dir=args.output_dir, readme=args.readme or None,
                 jobs=args.jobs)
    missing = [name for name, state in status.items() if state.startswith("missing")]
    print(f"wrote {args.output_dir}/report.html" + (f" and the experiments section of {args.readme}" if args.readme
                                                   else ""))
    if missing:
        print(f"missing (run `translator experiments --train` to measure them): {', '.join(missing)}")
    return 0


def add_experiments_parser(commands) -> None:
    experiments = commands.add_parser(
        "experiments", help="the seeds' claims about RNNs, measured: experiments/report.html and a README section",
        description="Measure the claims of the articles this project grew from (configs/experiments/): with "
                    "--train, train and measure what is missing (results are cached in experiments/results/, so "
                    "an interrupted run resumes); without it, only render the report from what exists.")
    experiments.add_argument("--train", action="store_true", help="train and measure what is missing")
    experiments.add_argument("--only", default=None, metavar="NAME", help="one experiment (e.g. vanishing-gradients)")
    experiments.add_argument("--jobs", type=int, default=1, metavar="N",
                             help="with --train, N worker processes at once, each pinned to a CPU of its own when "
                                  "there are N (make experiments uses 2); they share the work run by run")
    experiments.add_argument("--output-dir", default="experiments", help="where results and report.html go")
    experiments.add_argument("--readme", default="README.md", help="file whose experiments section is rewritten; "
                                                                   "'' for none")
    experiments.set_defaults(handler=command_experiments)

def command_compare(args) -> int:
    from translator.decoding.evaluation import compare

    result = compare(args.run_a, args.run_b, args.split, args.samples)
    print(f"paired bootstrap resampling, {result['samples']} samples, {result['split']} split "
          f"(the first run is the baseline):")
    for name, metrics in result["systems"].items():
        parts = []
        for metric, value in metrics.items():
            part = f"{metric} {value['score']:.2f} ({value['mean']:.2f} +- {value['ci95']:.2f})"
            if value["p_value"] is not None:
                verdict = "significant" if value["p_value"] < 0.05 else "not significant"
                part += f" p = {value['p_value']:.4f}, {verdict} at 0.05"
            parts.append(part)
        print(f"  {name}: " + "; ".join(parts))
    for metric, signature in result["signatures"].items():
        print(f"  {metric} signature: {signature}")
    return 0


def add_compare_parser(commands) -> None:
    compare = commands.add_parser("compare", help="paired bootstrap resampling of two evaluated runs",
                                  description="Compare two runs evaluated on the same split (sacrebleu's "
                                              "paired bootstrap resampling; the first run is the baseline).")
    compare.add_argument("run_a", help="baseline run")
    compare.add_argument("run_b", help="run compared with it")
    compare.add_argument("--split", default="test")
    compare.add_argument("--samples", type=POSITIVE_INT, default=1000, help="bootstrap samples (default 1000)")
    compare.set_defaults(handler=command_compare)

def command_average(args) -> int:
    from translator.models.averaging import average

    average(args.run, last=args.last, best=args.best, out=args.out)
    return 0


def add_average_parser(commands) -> None:
    average = commands.add_parser(
        "average", help="average the weights of a run's last or best epochs into a new run",
        description="Checkpoint averaging: the mean of the weights training kept in RUN/epochs/ "
                    "(training.keep_checkpoints) becomes the model of a new run directory, which evaluate, "
                    "translate, export and serve take like any other.")
    average.add_argument("--run", required=True, help="a trained translation run with kept epochs")
    which = average.add_mutually_exclusive_group(required=True)
    which.add_argument("--last", type=POSITIVE_INT, help="average the last N kept epochs")
    which.add_argument("--best", type=POSITIVE_INT, help="average the N kept epochs of lowest validation loss")
    average.add_argument("--out", default=None, help="the new run directory (default RUN-average-lastN or -bestN)")
    average.set_defaults(handler=command_average)
