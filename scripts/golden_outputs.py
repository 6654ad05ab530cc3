"""Golden outputs of trained runs, for checking that a restructuring changed nothing.

    python scripts/golden_outputs.py --translation runs/demo --language-model runs/tinyshakespeare-charlm \
        --classifier runs/trec-classifier --out before.json
    (change the code)
    python scripts/golden_outputs.py ... --out after.json && cmp before.json after.json

Writes, as JSON: the greedy and beam-5 translations of the first 200 sentences of test2016 (and
their beam scores), 300 characters sampled with seed 1234 after "ROMEO:", and the class
probabilities of the first 200 test texts (rounded to 6 decimals). tests/test_golden.py holds the
tiny-model version of the same check.
"""

import argparse
import json
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--translation", required=True, help="a trained translation run")
    parser.add_argument("--language-model", required=True, help="a trained language-model run")
    parser.add_argument("--classifier", required=True, help="a trained classifier run")
    parser.add_argument("--work-dir", default="work")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from translator import Classifier, LanguageModel, Translator
    from translator.data.corpora import read_prepared_split
    from translator.models.runs import read_run_config

    outputs = {}
    translator = Translator.load(args.translation)
    corpus = read_run_config(args.translation)["data"]["corpus"]
    sources = read_prepared_split(corpus, "test", args.work_dir)["source"][:200]
    outputs["greedy"] = translator.translate(sources, beam_size=1)
    beams = translator.translate_detailed(sources, beam_size=5, length_penalty=0.6)
    outputs["beam5"] = [translation.text for translation in beams]
    outputs["beam5_scores"] = [round(float(translation.score), 4) for translation in beams]

    outputs["sample"] = LanguageModel.load(args.language_model).sample("ROMEO:", length=300, seed=1234)

    classifier = Classifier.load(args.classifier)
    corpus = read_run_config(args.classifier)["data"]["corpus"]
    texts = read_prepared_split(corpus, "test", args.work_dir)["text"][:200]
    probabilities = classifier.predict_ids([classifier.tokenizer.encode(text) for text in texts])
    outputs["probabilities"] = [[round(float(p), 6) for p in row] for row in probabilities]

    Path(args.out).write_text(json.dumps(outputs, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(outputs['greedy'])} translations, a sample of {len(outputs['sample'])} "
          f"characters, {len(outputs['probabilities'])} class distributions")


if __name__ == "__main__":
    main()
