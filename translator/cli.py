"""The `translator` command: one subcommand per pipeline stage.

    translator data CORPUS          prepare a corpus (clean, split) into work/CORPUS/
    translator tokenizers CORPUS    train its SentencePiece tokenizer(s)
    translator train CONFIG         train (or resume) a model into runs/NAME/
    translator translate --run RUN  translate stdin to stdout, line by line
    translator evaluate --run RUN   translate a split, score it, write report.json/.md/.html
    translator compare RUN_A RUN_B  paired bootstrap resampling of two evaluated runs
    translator sample --run RUN     generate text with a trained language model
    translator classify --run RUN   label lines from stdin with a trained classifier
    translator bench                training and decoding speed against the textbook Keras seq2seq
    translator experiments          the seeds' claims about RNNs, measured (report and README section)
    translator export --run RUN     write a TensorFlow SavedModel that works on raw text
    translator serve --run RUN      an HTTP JSON translation service that batches requests
    translator serve-bench --run RUN  its throughput and latency beside offline translation
    translator scale-bench          time and peak memory of data, tokenizers, train at 500k and 5M pairs

Each subcommand imports what it needs when it runs, so `translator --help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from translator import cli_tools, native_logs
from translator.checks import (
    NON_NEGATIVE_INT,
    NON_NEGATIVE_NUMBER,
    POSITIVE_INT,
    RATIO,
)
from translator.cli_tools import BEAM_SIZE, LENGTH_PENALTY, add_shortlist_option


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="mirror directory holding the corpus files (default: $TRANSLATOR_DATA; "
                             "when neither is set, files are downloaded into ~/.cache/translator)")
    parser.add_argument("--work-dir", default="work", help="where prepared corpora go (default: work)")


def command_data(args) -> int:
    from translator.data.corpora import Cleaning, prepare_corpus, resolve_corpus

    if _recipe_from_own_data(args):
        print(f"wrote {args.corpus} (corpus recipe) and tokenizers/{Path(args.corpus).stem}.yaml (unless it "
              f"existed); preparing it")
        args.corpus = Path(args.corpus).stem
    cleaning = Cleaning.from_recipe(resolve_corpus(args.corpus).recipe, args.max_length, args.max_ratio,
                                    True if args.deduplicate else None)
    manifest = prepare_corpus(args.corpus, args.work_dir, args.data_dir, cleaning)
    direction = ""
    if manifest["source_language"]:
        direction = f" ({manifest['source_language']} -> {manifest['target_language']})"
    print(f"{manifest['corpus']}{direction}, {manifest['task']}, from {manifest['data_from']}")
    counts = manifest["counts"]
    if "pool" in counts:
        pool = counts["pool"]
        print(f"  read {pool['read']:,} examples; dropped {pool['empty']:,} empty, "
              f"{pool['duplicate']:,} duplicate; split with seed {manifest['seed']}")
    unit = "characters" if any(isinstance(row, dict) and row.get("unit") == "characters"
                               for row in counts.values()) else "examples"
    print(f"  {'split':<12}{'read':>12}{'kept':>12}  dropped ({unit})")
    for split in ("train", "validation", "test"):
        if split not in counts:
            continue
        row = counts[split]
        dropped = {k: v for k, v in row.items() if k not in ("read", "kept", "unit") and v}
        read = f"{row['read']:,}" if "read" in row else "-"
        detail = ", ".join(f"{k} {v:,}" for k, v in dropped.items()) or "0"
        print(f"  {split:<12}{read:>12}{row['kept']:>12,}  {detail}")
    if counts.get("undecodable_lines_replaced"):
        print(f"  {counts['undecodable_lines_replaced']} line(s) had bytes that are not UTF-8 (replaced)")
    if manifest["filters"]:
        print(f"  filters on train: {manifest['filters']}")
    print(f"wrote {args.work_dir}/{manifest['corpus']}/ ({', '.join(manifest['outputs'])}, manifest.json)")
    return 0


def _recipe_from_own_data(args) -> bool:
    """`translator data --from-files/--from-tsv/--from-dataset ... --name NAME`: writes the recipe
    corpora/NAME.yaml (its path into ``args.corpus``); False for a corpus named as usual."""
    from translator.data import own_data
    from translator.data.corpora import CorpusError

    forms = [form for form in ("from_files", "from_tsv", "from_dataset") if getattr(args, form)]
    if len(forms) > 1 or bool(forms) == bool(args.corpus):
        raise CorpusError("name a corpus (translator data multi30k-de-en) or give one of "
                         "--from-files SRC TGT, --from-tsv FILE, --from-dataset DIR_OR_ID, with --name NAME")
    if not forms:
        return False
    if not args.name:
        raise CorpusError(f"--{forms[0].replace('_', '-')}: give --name NAME (the corpus's name: "
                         f"corpora/NAME.yaml, work/NAME/)")
    if forms[0] != "from_files" and not args.columns:
        raise CorpusError(f"--{forms[0].replace('_', '-')}: give --columns SRC,TGT (the language "
                         f"of each column, e.g. en,de)")
    if args.from_files:
        path = own_data.recipe_from_files(args.name, args.from_files, args.valid, args.test, args.languages)
    elif args.from_tsv:
        for split in ("valid", "test"):
            if getattr(args, split) and len(getattr(args, split)) != 1:
                raise CorpusError(f"--from-tsv: --{split} takes one tab-separated file")
        path = own_data.recipe_from_tsv(args.name, args.from_tsv, args.columns, (args.valid or [None])[0],
                                        (args.test or [None])[0])
    else:
        if args.valid or args.test:
            raise CorpusError("--from-dataset takes the dataset's own splits (train, validation, test); "
                              "--valid and --test are for --from-files and --from-tsv")
        path = own_data.recipe_from_dataset(args.name, args.from_dataset, args.columns)
    args.corpus = str(path)
    return True


def _add_data_parser(commands) -> None:
    data = commands.add_parser("data", help="prepare a corpus: read, verify, clean, split; write work/CORPUS/",
                               description="Prepare a corpus from its recipe in corpora/, or write the recipe "
                                           "of your own files first (--from-files, --from-tsv, --from-dataset).")
    data.add_argument("corpus", nargs="?", help="corpus name (e.g. multi30k-de-en, tinyshakespeare, names) or "
                                                "recipe path")
    data.add_argument("--from-files", nargs=2, metavar=("SRC", "TGT"),
                      help="your own line-aligned training files (e.g. train.de train.en)")
    data.add_argument("--from-tsv", metavar="FILE", help="your own tab-separated training pairs (with --columns)")
    data.add_argument("--from-dataset", metavar="DIR_OR_ID",
                      help="a Hugging Face dataset: saved with save_to_disk, a parquet/json/csv file or folder, "
                           "or a hub id (with --columns)")
    data.add_argument("--name", help="with --from-*: the corpus's name (corpora/NAME.yaml, work/NAME/)")
    data.add_argument("--valid", nargs="+", metavar="FILE",
                      help="with --from-*: the validation files (SRC TGT; one file for --from-tsv); without "
                           "them 2%% of the training pairs are validation and 2%% test")
    data.add_argument("--test", nargs="+", metavar="FILE", help="with --from-*: the test files, as --valid")
    data.add_argument("--languages", help="with --from-files: SRC,TGT (default: the files' suffixes)")
    data.add_argument("--columns", help="with --from-tsv/--from-dataset: the columns' languages, SRC,TGT (e.g. en,de)")
    _add_data_options(data)
    data.add_argument("--max-length", type=POSITIVE_INT, default=None, help="drop training pairs longer than N words")
    data.add_argument("--max-ratio", type=RATIO, default=None,
                      help="drop training pairs whose longer side has more than R times the words of the shorter")
    data.add_argument("--deduplicate", action="store_true", help="drop repeated training pairs")
    data.set_defaults(handler=command_data)

def command_tokenizers(args) -> int:
    from translator.data.tokenizers import train_tokenizers

    card = train_tokenizers(args.corpus, args.work_dir, args.recipe)
    settings = card["settings"]
    vocabulary = f" ({settings['vocabulary']} vocabulary)" if "source" in card["sides"] else ""
    print(f"{card['corpus']}: {settings['model_type']} tokenizer{vocabulary} from {card['recipe']}")
    print(f"  {'model':<10}{'vocabulary':>12}{'pieces/sentence':>17}{'unk rate (validation)':>24}")
    for name, model in card["models"].items():
        validation = [v for k, v in model.items() if k.startswith("validation_")]
        pieces = validation[0]["mean_pieces_per_sentence"] if validation else model["train"]["mean_pieces_per_sentence"]
        unk = ", ".join(f"{v['unk_rate']:.4%}" for v in validation) or "no validation split"
        print(f"  {name:<10}{model['vocabulary_size']:>12,}{pieces:>17.2f}{unk:>24}")
    print(f"wrote {card['directory']}/ (card.json)")
    return 0


def _add_tokenizers_parser(commands) -> None:
    tokenizers = commands.add_parser("tokenizers", help="train the SentencePiece tokenizer(s) of a prepared corpus",
                                     description="Train tokenizers from a recipe in tokenizers/.")
    tokenizers.add_argument("corpus", help="a corpus prepared with `translator data`")
    tokenizers.add_argument("--recipe", default=None,
                            help="tokenizer recipe name or path (default: tokenizers/CORPUS.yaml, "
                                 "else the corpus recipe's name, e.g. tokenizers/multi30k.yaml)")
    tokenizers.add_argument("--work-dir", default="work", help="where prepared corpora are (default: work)")
    tokenizers.set_defaults(handler=command_tokenizers)

def command_train(args) -> int:
    overrides = (args.set or []) + ([f"training.init_from={args.init_from}"] if args.init_from else [])
    if args.workers is not None:  # N local processes, each running this command as one worker
        from translator.training.distributed import launch_training

        return launch_training(args.config, args.run, args.seed, args.workers, overrides)
    from translator.training.trainer import Trainer

    Trainer(args.config, args.run, seed=args.seed, overrides=overrides).train()
    return 0


def _add_train_parser(commands) -> None:
    train = commands.add_parser("train", help="train a model from a config; the same command resumes it",
                                description="Train (or resume) the model of a config in configs/.")
    train.add_argument("config", help="experiment config, e.g. configs/multi30k-de-en-bigru-luong.yaml")
    train.add_argument("--run", default=None, help="run directory (default: runs/CONFIG_NAME)")
    train.add_argument("--seed", type=NON_NEGATIVE_INT, default=None,
                       help="override training.seed (weights, dropout, batch order): the same recipe, another seed")
    train.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="override one key of the config (repeatable), e.g. --set training.epochs=3; the run's "
                            "config.yaml records the result")
    train.add_argument("--init-from", default=None, metavar="RUN",
                       help="fine-tune: start from RUN's weights and tokenizers (training.init_from), as a new run")
    train.add_argument("--workers", type=POSITIVE_INT, default=None, metavar="N",
                       help="run N local worker processes (training.strategy: multi_worker) on 127.0.0.1, "
                            "with a TF_CONFIG each; for real machines set TF_CONFIG yourself (see README)")
    train.set_defaults(handler=command_train)

def _import_tensorflow_without_dataframes_or_plots() -> None:
    """Import TensorFlow and ``tensorflow_text`` with pandas and matplotlib hidden. TensorFlow
    imports Keras eagerly, and Keras imports both when they are installed (for DataFrame inputs
    and image plots); a translation needs neither, and they cost about 0.8 s of the 5 s a
    one-line `translator translate` took. Only for this process: Keras then treats them as
    absent, so a command that needs them must not call this."""
    if "tensorflow" in sys.modules:
        return
    hidden = [name for name in ("pandas", "matplotlib") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # `import pandas` raises ImportError, which Keras handles
    try:
        import tensorflow  # noqa: F401
        import tensorflow_text  # noqa: F401
    finally:
        for name in hidden:  # importable again from here on
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def command_translate(args) -> int:
    import time
    import warnings

    _import_tensorflow_without_dataframes_or_plots()
    from translator.decoding.translator import MOSTLY_UNKNOWN, ExportedTranslator, Translator
    from translator.models.runs import check_run_kind, read_run_config

    for run in args.run:
        check_run_kind(run, read_run_config(run), "seq2seq")
    # The run's export (translator export --run RUN), when it holds this search: no Keras model
    # to build and no search to trace, so a first sentence takes seconds.
    with warnings.catch_warnings(record=True) as stale:  # an export older than the model: said below
        warnings.simplefilter("always")
        exported = None if args.n_best > 1 or len(args.run) > 1 or args.target_language else \
            ExportedTranslator.of_run(args.run[0], args.beam_size, args.length_penalty, args.shortlist)
    for warning in stale:
        print(f"translator translate: note: {warning.message}", file=sys.stderr)
    if exported is not None:
        print(f"translator translate: using the export in {exported.directory}", file=sys.stderr)
    translator = exported or Translator.load(args.run if len(args.run) > 1 else args.run[0], shortlist=args.shortlist)
    started, done, mostly_unknown = time.time(), 0, 0
    language = {"target_language": args.target_language} if args.target_language else {}  # never the export's

    def flush(lines):
        nonlocal done, mostly_unknown
        with warnings.catch_warnings():  # reported below, with the line number in the input
            warnings.simplefilter("ignore")
            results = translator.translate_detailed(lines, beam_size=args.beam_size, length_penalty=args.length_penalty,
                                                    batch_size=args.batch_size, n_best=args.n_best,
                                                    **language)
        for result in results:
            if result.truncated:
                print(f"\ntranslator translate: warning: line {done + 1} is longer than the model's limit of "
                      f"{translator.max_source_length} pieces; only its beginning was translated", file=sys.stderr)
            if result.unknown_share > MOSTLY_UNKNOWN:
                if not mostly_unknown:
                    print(f"\ntranslator translate: warning: line {done + 1} is mostly text the model's tokenizer "
                          f"does not know ({result.unknown_share:.0%} of its characters): its translation is "
                          f"unrelated to it. Is the input in the run's source language?", file=sys.stderr)
                mostly_unknown += 1
            if args.n_best > 1:
                for text, score in result.n_best:
                    sys.stdout.write(f"{done}\t{score:.4f}\t{text}\n")
            else:
                sys.stdout.write(result.text + "\n")
            done += 1
        sys.stdout.flush()
        rate = done / max(time.time() - started, 1e-9)
        print(f"\rtranslated {done:,} lines ({rate:.1f} lines/s)", end="", file=sys.stderr, flush=True)

    chunk = []
    for raw in sys.stdin.buffer:  # bytes that are not UTF-8 become U+FFFD instead of a crash
        chunk.append(raw.decode("utf-8", errors="replace").rstrip("\n").rstrip("\r"))
        if len(chunk) == args.chunk_size:
            flush(chunk)
            chunk = []
    if chunk:
        flush(chunk)
    print(file=sys.stderr)
    if mostly_unknown:
        print(f"translator translate: warning: {mostly_unknown:,} of {done:,} lines were mostly text the "
              f"tokenizer does not know", file=sys.stderr)
    args.exit_at_once = True  # nothing left to write: `console` skips TensorFlow's teardown
    return 0


def _add_translate_parser(commands) -> None:
    translate = commands.add_parser(
        "translate", help="translate lines from stdin to stdout with a trained run",
        description="Translate stdin to stdout, one line per line: an empty line gives an empty line; a line "
                    "longer than the model's source limit is truncated to it, with a warning on stderr.")
    translate.add_argument("--run", required=True, action="append",
                           help="run directory (with model.keras and tokenizers/); give it twice or more for an "
                                "ensemble, whose models' log-probabilities are averaged at every step")
    translate.add_argument("--beam-size", type=BEAM_SIZE, default=None,
                           help="beam size; 1 is greedy search (default: the run's decoding config, else 5)")
    translate.add_argument("--length-penalty", type=LENGTH_PENALTY, default=None,
                           help="GNMT length penalty alpha (default: the run's decoding config, else 0.6)")
    translate.add_argument("--batch-size", type=POSITIVE_INT, default=64, help="sentences per batch (default 64)")
    translate.add_argument("--n-best", type=POSITIVE_INT, default=1,
                           help="print the N best translations as 'LINE<TAB>SCORE<TAB>TEXT' (default 1: text only)")
    translate.add_argument("--chunk-size", type=POSITIVE_INT, default=1000,
                           help="lines read before translating and writing them (default 1000)")
    translate.add_argument("--target-language", default=None,
                           help="the language a multilingual model writes (its tag goes before every line)")
    add_shortlist_option(translate)
    translate.set_defaults(handler=command_translate)

def command_sample(args) -> int:
    from translator.models.language_models import LanguageModel

    model = LanguageModel.load(args.run)
    text = model.sample(args.prime.encode().decode("unicode_escape") if args.escapes else args.prime,
                        length=args.length, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    sys.stdout.write(text + "\n")
    return 0


def _add_sample_parser(commands) -> None:
    sample = commands.add_parser("sample", help="generate text with a trained language model",
                                 description="Continue a prime text with a language model run's compiled "
                                             "sampling loop; prints the prime and its continuation.")
    sample.add_argument("--run", required=True, help="run directory of a language model")
    sample.add_argument("--prime", default="\n", help="text to continue (default: a newline)")
    sample.add_argument("--escapes", action="store_true", help=r"read \n and \t in --prime as escapes")
    sample.add_argument("--length", type=NON_NEGATIVE_INT, default=500, help="tokens (characters) to generate (default 500)")
    sample.add_argument("--temperature", type=NON_NEGATIVE_NUMBER, default=1.0,
                        help="softmax temperature; 0 picks the most likely token (default 1.0)")
    sample.add_argument("--top-k", type=NON_NEGATIVE_INT, default=0, help="sample among the k most likely tokens; 0: all")
    sample.add_argument("--seed", type=NON_NEGATIVE_INT, default=None, help="random seed (the same seed, the same text)")
    sample.set_defaults(handler=command_sample)

def command_classify(args) -> int:
    from translator.models.classifiers import Classifier

    model = Classifier.load(args.run)
    lines = [raw.decode("utf-8", errors="replace").rstrip("\n").rstrip("\r") for raw in sys.stdin.buffer]
    empty = [number for number, line in enumerate(lines, start=1) if not line.strip()]
    if empty:
        raise ValueError(f"line {empty[0]} of the input is empty ({len(empty):,} empty line(s) in all): there "
                         f"is nothing to classify in it; remove empty lines")
    for label, probability in model.predict(lines, batch_size=args.batch_size):
        sys.stdout.write(f"{label}\t{probability:.4f}\n")
    print(f"classified {len(lines):,} lines", file=sys.stderr)
    return 0


def _add_classify_parser(commands) -> None:
    classify = commands.add_parser("classify", help="label lines from stdin with a trained classifier",
                                   description="Print 'LABEL<TAB>PROBABILITY' for every line of stdin.")
    classify.add_argument("--run", required=True, help="run directory of a classifier")
    classify.add_argument("--batch-size", type=POSITIVE_INT, default=128, help="lines per batch (default 128)")
    classify.set_defaults(handler=command_classify)

def command_evaluate(args) -> int:
    from translator.decoding.evaluation import evaluate

    report = evaluate(args.run if len(args.run) > 1 else args.run[0], args.split, beam_size=args.beam_size,
                      length_penalty=args.length_penalty, batch_size=args.batch_size, out=args.out,
                      corpus=args.corpus, target_language=args.target_language, shortlist=args.shortlist)
    directory = Path(report["directory"])
    if "accuracy" in report:  # a classifier
        print(f"{report['run']} on {report['corpus']} {report['split']} ({report['examples']:,} examples): "
              f"accuracy {report['accuracy']:.2%}, macro-F1 {report['macro_f1']:.4f}")
        print(f"{directory.resolve() / 'report.html'}")
        return 0
    print(f"{report['run']} on {report['corpus']} {report['split']} ({report['sentences']:,} sentences, "
          f"{report['search']}, {report['sentences_per_second']:.1f} sentences/s):")
    for name, value in report["scores"].items():
        print(f"  {name:<18} {value['score']:6.2f}   {value['signature']}")
    print(f"report: {directory}/report.json, {directory}/report.md")
    print(f"{directory.resolve() / 'report.html'}")
    return 0


def _add_evaluate_parser(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="translate a split, score it, write the report",
                                   description="Translate a split of the run's corpus and score it with sacrebleu "
                                               "(BLEU, chrF, TER, lowercased BLEU), writing report.json, report.md "
                                               "and report.html into the run directory.")
    evaluate.add_argument("--run", required=True, action="append",
                          help="run directory; give it twice or more to evaluate the ensemble of those runs")
    evaluate.add_argument("--out", default=None,
                          help="directory for the report (default: the run; for an ensemble "
                               "runs/ensemble-A+B beside the first run)")
    evaluate.add_argument("--split", default="test", help="split to translate (default: test)")
    evaluate.add_argument("--beam-size", type=BEAM_SIZE, default=None,
                          help="beam size; 1 is greedy (default: the run's decoding config, else 5)")
    evaluate.add_argument("--length-penalty", type=LENGTH_PENALTY, default=None,
                          help="GNMT length penalty (default: the run's decoding config, else 0.6)")
    evaluate.add_argument("--batch-size", type=POSITIVE_INT, default=64, help="sentences per batch (default 64)")
    evaluate.add_argument("--corpus", default=None,
                          help="a prepared corpus other than the run's, e.g. one direction of a multilingual "
                               "model's (the report then goes to RUN/CORPUS unless --out)")
    evaluate.add_argument("--target-language", default=None,
                          help="the language a multilingual model writes (its tag goes before every sentence)")
    add_shortlist_option(evaluate)
    evaluate.set_defaults(handler=command_evaluate)

def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="translator", description="Recurrent sequence-to-sequence models on Keras 3: "
        "prepare corpora, train tokenizers and models, translate and evaluate.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: TRANSLATOR_DEBUG=1)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own C++ log lines on stderr, which the command leaves out "
                             "(also: TRANSLATOR_VERBOSE=1); real errors show either way")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Each subcommand's options sit beside its handler, in `_add_NAME_parser` above or
    # `add_NAME_parser` in cli_tools.py; in the order `translator --help` lists them.
    for add in (_add_data_parser, _add_tokenizers_parser, _add_train_parser, _add_translate_parser,
                _add_evaluate_parser, cli_tools.add_average_parser, cli_tools.add_compare_parser, _add_sample_parser,
                _add_classify_parser, cli_tools.add_results_parser, cli_tools.add_experiments_parser,
                cli_tools.add_bench_parser, cli_tools.add_export_parser, cli_tools.add_shortlist_parser,
                cli_tools.add_serve_parser, cli_tools.add_serve_bench_parser, cli_tools.add_scale_bench_parser):
        add(commands)
    return parser


def _version() -> str:
    from translator import __version__

    return __version__


def debugging(args=None) -> bool:
    """Whether errors show their traceback: ``translator --debug ...`` or TRANSLATOR_DEBUG=1."""
    return bool(getattr(args, "debug", False)) or os.environ.get("TRANSLATOR_DEBUG", "") not in ("", "0")


def main(argv=None, args=None) -> int:
    """Run one command: `argv` (default sys.argv[1:]) or already parsed `args`; returns the exit
    status (2 for an error of input, 1 for any other)."""
    args = build_parser().parse_args(argv) if args is None else args
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"translator {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 (every error reaches the user as one line, see below)
        if debugging(args):
            raise
        # Errors of input (files, configs, arguments) say what to fix in one line; anything else
        # is a bug or a problem of the environment, and its traceback is one flag away.
        expected = isinstance(error, (ValueError, TypeError, OSError, RuntimeError)) and str(error).strip()
        if expected:
            print(f"translator {args.command}: error: {str(error).strip()}", file=sys.stderr)
            return 2
        print(f"translator {args.command}: error: {type(error).__name__}: {error} (run with --debug, or set "
              f"TRANSLATOR_DEBUG=1, for the traceback)", file=sys.stderr)
        return 1


def console() -> None:
    """The `translator` program (and ``python -m translator``): `main` on the command line, then
    exit with its status. A command that sets ``args.exit_at_once`` (translate, when it has
    written everything) ends with os._exit after flushing stdout and stderr: the interpreter's
    teardown of TensorFlow and a loaded model takes about 1 s, a fifth of a one-line
    translation from the shell.

    First of all, before anything imports TensorFlow, TensorFlow's C++ log lines are filtered
    out of stderr unless ``--verbose`` or TRANSLATOR_VERBOSE=1 (see native_logs.py); at exit
    the filter writes out what it holds."""
    native_logs.quiet()
    args = build_parser().parse_args()
    status = main(args=args)
    if getattr(args, "exit_at_once", False):
        sys.stdout.flush()
        sys.stderr.flush()
        native_logs.restore()  # os._exit skips atexit, where it would run otherwise
        os._exit(status)
    raise SystemExit(status)


if __name__ == "__main__":
    console()
