# translator: every target is a thin call of the `translator` command, so make and Python agree.
#   make demo                 set up, then run the main job end to end
#   make test                 set up, then run the test suite
#   make data tokenizers CORPUS=multi30k-de-en
#   make train CONFIG=configs/NAME.yaml [RUN=runs/NAME]
#   make results              train and score the recipes of configs/results.yaml into README.md
#   make de-en-ensemble       two seeds of the de->en recipe, averaged and ensembled: 40.61 BLEU
#   make tatoeba-ensemble     two seeds of the Tatoeba es->en recipe as an ensemble: 48.21 BLEU
#   make multilingual         one model for six Multi30k directions, scored per direction and zero-shot
#   make experiments [JOBS=2] measure the seeds' claims about RNNs into experiments/report.html,
#                             training in JOBS processes at once, one per core
#   make export RUN=runs/demo [EXPORT=DIR]   a SavedModel that translates raw sentences (default RUN/export)
#   make serve RUN=runs/demo  an HTTP JSON translation service (make serve-bench measures it)
#   make scale-bench          time and peak memory of each corpus stage at 500k and 5M pairs
# Corpus files are read from $TRANSLATOR_DATA when set (e.g. TRANSLATOR_DATA=../shared/data),
# otherwise downloaded (with checksums) into ~/.cache/translator.

PYTHON  ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
CLI      = $(BIN)/translator
CORPUS  ?= multi30k-de-en
CONFIG  ?= configs/demo.yaml
RUN     ?= runs/$(basename $(notdir $(CONFIG)))
INPUT   ?= /dev/stdin
SPLIT   ?= test
JOBS    ?= 2

.PHONY: setup data tokenizers train translate evaluate demo test bench results experiments export serve serve-bench scale-bench de-en-ensemble tatoeba-ensemble multilingual clean

# The virtual environment is rebuilt only when pyproject.toml changes (the stamp is older).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

data: setup
	$(CLI) data $(CORPUS)

tokenizers: setup
	$(CLI) tokenizers $(CORPUS)

train: setup
	$(CLI) train $(CONFIG) --run $(RUN)

translate: setup
	$(CLI) translate --run $(RUN) < $(INPUT)

evaluate: setup
	$(CLI) evaluate --run $(RUN) --split $(SPLIT)

# A TensorFlow SavedModel of the run that takes raw sentences (needs tensorflow and tensorflow-text only).
EXPORT  ?= $(RUN)/export
export: setup
	$(CLI) export --run $(RUN) --out $(EXPORT)

serve: setup
	$(CLI) serve --run $(RUN)

# The server's throughput and p50/p99 latency with 1, 8 and 32 concurrent clients on the run's
# test split (test2016 for runs/demo), beside offline Translator.translate in the same run: greedy
# search asking for translations only (as offline) and with scores, and the run's beam search;
# writes bench/results/serve-beam1-texts, serve-beam1 and serve .{json,md}.
# `make serve-bench RUN=runs/NAME` for another run.
serve-bench: setup
	$(CLI) serve-bench --run $(RUN) --beam-size 1 --no-scores
	$(CLI) serve-bench --run $(RUN) --beam-size 1
	$(CLI) serve-bench --run $(RUN)

# Corpora that do not fit in memory: generates translation corpora of 500,000 and 5,000,000 pairs
# from Multi30k (in a temporary directory, removed afterwards), runs `translator data`,
# `translator tokenizers` and 200 training steps on each as separate processes, and writes their
# time and peak memory to bench/results/scale.{json,md}; fails when a stage's peak memory at 5M
# is more than 1.5x that at 500k. Needs the data mirror (TRANSLATOR_DATA); about 15 min on 1 core.
scale-bench: setup
	$(CLI) scale-bench

# The main job: Multi30k de->en from raw data to a BLEU report; the last line is the report's path.
DEMO_RUN = runs/demo
demo: setup
	$(CLI) data multi30k-de-en
	$(CLI) tokenizers multi30k-de-en
	$(CLI) train configs/demo.yaml --run $(DEMO_RUN)
	$(CLI) export --run $(DEMO_RUN)
	@echo "Example translations (test2016, beam 5; through the export in $(DEMO_RUN)/export):"
	@head -n 5 work/multi30k-de-en/test.de > $(DEMO_RUN)/examples.de
	@$(CLI) translate --run $(DEMO_RUN) < $(DEMO_RUN)/examples.de > $(DEMO_RUN)/examples.en 2>/dev/null
	@paste -d '\n' $(DEMO_RUN)/examples.de $(DEMO_RUN)/examples.en | sed 'n;s/^/  -> /'
	$(CLI) evaluate --run $(DEMO_RUN) --split test

# pytest exits non-zero when a test fails and with 5 when it collected no test: both fail here.
test: setup
	$(BIN)/python -m pytest -q

# Training and decoding speed against the textbook Keras seq2seq; writes bench/results/bench.{json,md}.
# Decoding is measured on trained runs: bench/runs/attention (configs/bench-attention.yaml, trained
# and exported by the first `make bench`, about 15 minutes once) and, when trained, the recipe's
# runs/multi30k-de-en-bigru-luong. `make bench BENCH_FLAGS="--run runs/NAME"` decodes with another run.
BENCH_SECONDS ?= 60
BENCH_FLAGS ?=
bench: setup
	$(CLI) data multi30k-de-en
	$(CLI) tokenizers multi30k-de-en
	$(CLI) tokenizers multi30k-de-en --recipe multi30k-joint8k
	$(CLI) bench --seconds $(BENCH_SECONDS) $(BENCH_FLAGS)

# The results table of README.md: trains the runs of configs/results.yaml that have none yet (an
# hour or more each on a CPU; an interrupted run resumes), scores each on test2016 with its
# recipe's decoding settings, and rewrites the table. `make results RESULTS_FLAGS=` only re-scores.
RESULTS_FLAGS ?= --train
results: setup
	for pair in de-en en-de fr-en cs-en en-fr en-cs; do \
	  $(CLI) data multi30k-$$pair && $(CLI) tokenizers multi30k-$$pair && \
	  $(CLI) tokenizers multi30k-$$pair --recipe multi30k-joint8k || exit 1; done
	$(CLI) data tatoeba-spa-eng && $(CLI) tokenizers tatoeba-spa-eng
	$(CLI) data multi30k-multilingual && $(CLI) tokenizers multi30k-multilingual
	$(CLI) data multi30k-de-fr   # the multilingual model's zero-shot direction
	$(CLI) results $(RESULTS_FLAGS)

# de->en above 40 BLEU (README.md, "Averaging, ensembles and subword sampling"): the recipe from two
# seeds, the last 5 epochs of each averaged (translator average), the two averaged models decoded as
# an ensemble on test2016 (translator evaluate --run A --run B). About 30 min of training per seed
# on one core; a run already trained is not trained again.
ENSEMBLE_RUNS = runs/multi30k-de-en-bigru-luong-kept-seed1234 runs/multi30k-de-en-bigru-luong-kept-seed2
de-en-ensemble: setup
	$(CLI) data multi30k-de-en && $(CLI) tokenizers multi30k-de-en --recipe multi30k-joint8k
	for run in $(ENSEMBLE_RUNS); do \
	  $(CLI) train configs/multi30k-de-en-bigru-luong.yaml --seed $${run##*-seed} \
	    --set training.keep_checkpoints=5 --run $$run && \
	  $(CLI) average --run $$run --last 5 || exit 1; done
	$(CLI) evaluate $(foreach run,$(ENSEMBLE_RUNS),--run $(run)-average-last5) --split $(SPLIT)

# One model for six Multi30k directions (README.md, "One model, many languages"): trains
# configs/multi30k-multilingual-bigru-luong.yaml (about an hour on one core) and scores each
# direction, and de->fr zero-shot, on test2016 (the multilingual rows of configs/results.yaml).
MULTILINGUAL_PAIRS = de-en fr-en cs-en en-de en-fr en-cs de-fr
multilingual: setup
	$(CLI) data multi30k-multilingual && $(CLI) tokenizers multi30k-multilingual
	for pair in $(MULTILINGUAL_PAIRS); do $(CLI) data multi30k-$$pair || exit 1; done
	$(CLI) train configs/multi30k-multilingual-bigru-luong.yaml
	for pair in $(MULTILINGUAL_PAIRS); do \
	  $(CLI) evaluate --run runs/multi30k-multilingual-bigru-luong --corpus multi30k-$$pair \
	    --target-language $${pair##*-} --split $(SPLIT) || exit 1; done

# Tatoeba es->en above 48 BLEU (README.md, same section): the recipe from two seeds decoded as an
# ensemble on its own test split (the plain models: their averages scored lower on validation).
# About 36 min of training per seed on one core.
TATOEBA_RUNS = runs/tatoeba-spa-en-bigru-luong-kept-seed1234 runs/tatoeba-spa-en-bigru-luong-kept-seed2
tatoeba-ensemble: setup
	$(CLI) data tatoeba-spa-eng && $(CLI) tokenizers tatoeba-spa-eng
	for run in $(TATOEBA_RUNS); do \
	  $(CLI) train configs/tatoeba-spa-en-bigru-luong.yaml --seed $${run##*-seed} \
	    --set training.keep_checkpoints=5 --run $$run || exit 1; done
	$(CLI) evaluate $(foreach run,$(TATOEBA_RUNS),--run $(run)) --split $(SPLIT)

# The seeds' claims about RNNs, measured (configs/experiments/): trains and measures what is
# missing (results cached in experiments/results/, so it resumes), writes experiments/report.html
# and README.md's section "What the seeds claim, measured".
experiments: setup
	$(CLI) data multi30k-de-en
	$(CLI) tokenizers multi30k-de-en
	$(CLI) tokenizers multi30k-de-en --recipe multi30k-joint8k
	$(CLI) data multi30k-de-fr
	$(CLI) tokenizers multi30k-de-fr
	$(CLI) data multi30k-continuation
	$(CLI) tokenizers multi30k-continuation
	$(CLI) data tinyshakespeare
	$(CLI) tokenizers tinyshakespeare
	$(CLI) experiments --train --jobs $(JOBS)

clean:
	rm -rf work runs exports bench/results bench/runs .pytest_cache
