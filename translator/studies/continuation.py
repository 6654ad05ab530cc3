"""Translation as continuing a text ("Why RNNs work": "no one's ever published a paper on it"):
a language model trained on lines ``SOURCE <sep> TARGET <end>`` (the ``parallel_text`` corpus
format, e.g. ``corpora/multi30k-continuation.yaml``) translates a sentence by reading
``<end> SOURCE <sep>`` (a line as it starts after the previous one) and continuing it greedily
until ``<end>``.
"""

from __future__ import annotations

from translator.checks import check_non_negative_int, check_number, check_texts


def translate_by_continuing(model, sentences, separator: str = "<sep>", end: str = "<end>",
                            max_length_ratio: float = 2.0, max_length_offset: int = 10) -> list[str]:
    """The continuation of each sentence after the separator, up to the end symbol, by a
    language model (`translator.models.language_models.TextModel` with its tokenizer); at most
    ``max_length_ratio`` x the sentence's pieces + ``max_length_offset`` pieces, as the
    encoder-decoder's search. An empty sentence gives an empty translation."""
    sentences, _ = check_texts("sentences", sentences)
    check_number("max_length_ratio", max_length_ratio, 0.0)
    check_non_negative_int("max_length_offset", max_length_offset)
    translations = []
    for sentence in sentences:
        if not sentence.strip():
            translations.append("")
            continue
        prime = f"{end} {sentence.strip()} {separator}"
        limit = int(len(model.tokenizer.encode(sentence)) * max_length_ratio) + max_length_offset
        continued = model.sample(prime, length=limit, temperature=0.0)[len(prime):]
        translations.append(continued.split(end, 1)[0].strip())
    return translations
