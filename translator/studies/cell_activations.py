"""Interpretable cells (Karpathy, "The Unreasonable Effectiveness of Recurrent Neural Networks"):
find the cells of a trained character language model whose activation tracks something a reader
can name, and show the text coloured by that cell, as his figures do.

- `cell_activations`: the top layer's memory (the LSTM cell state c, else the hidden state h)
  after every character of a text, from a zero state.
- `text_features`: per character, what a reader sees in a play: the position in the line, being
  inside a speaker's name (a line like "ROMEO:"), and the distance to the end of the line.
- `best_cells`: for each feature, the cell whose activation correlates most (Pearson, either
  sign) with it.
- `coloured_html`: the text with every character's background coloured by one cell's
  activation (blue negative, red positive).
"""

from __future__ import annotations

import html

import numpy as np


def cell_activations(model, ids) -> np.ndarray:
    """[len(ids), units]: the top layer's cell state (LSTM) or hidden state (GRU, RNN) after
    each token of ``ids``, read by `model` (a `LanguageModel`) from a zero state."""
    import tensorflow as tf

    decoder = model.decoder
    top = decoder.num_layers - 1
    key = f"cell_state_{top}" if decoder.cell == "lstm" else f"hidden_state_{top}"

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def run(token_ids):
        cache = decoder.initial_state(batch_size=1)
        states = tf.TensorArray(tf.float32, size=tf.shape(token_ids)[0])

        def advance(index, cache, states):
            _, cache, _ = decoder.step(token_ids[index][None], cache)
            return index + 1, cache, states.write(index, tf.cast(cache[key][0], tf.float32))

        _, _, states = tf.while_loop(lambda index, *_: index < tf.shape(token_ids)[0], advance,
                                     (tf.constant(0), cache, states))
        return states.stack()

    return run(tf.constant(np.asarray(ids, dtype=np.int32))).numpy()


def text_features(text: str) -> dict[str, np.ndarray]:
    """Per character of ``text``: ``position_in_line`` (0 at a line's first character),
    ``in_speaker_name`` (1 inside a line that names who speaks: upper-case letters ending in
    ':'), ``characters_to_line_end`` (0 on the newline itself)."""
    position, speaker, to_end = [], [], []
    for line in text.split("\n"):
        name = line.rstrip().endswith(":") and line.strip(": ").replace(" ", "").isupper()
        length = len(line) + 1  # the newline belongs to the line it ends
        position += list(range(length))
        speaker += [1.0 if name else 0.0] * length
        to_end += list(range(length - 1, -1, -1))
    cut = len(text)  # the last line has no newline after it
    return {"position_in_line": np.array(position[:cut], dtype=float),
            "in_speaker_name": np.array(speaker[:cut], dtype=float),
            "characters_to_line_end": np.array(to_end[:cut], dtype=float)}


def correlations(activations: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson correlation of every cell's activation [time, units] with ``feature`` [time];
    0 for a cell (or feature) that never changes."""
    centred_cells = activations - activations.mean(axis=0)
    centred_feature = feature - feature.mean()
    denominator = np.sqrt((centred_cells ** 2).sum(axis=0) * (centred_feature ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (centred_cells * centred_feature[:, None]).sum(axis=0) / denominator
    return np.nan_to_num(values)


def best_cells(activations: np.ndarray, features: dict[str, np.ndarray]) -> dict[str, dict]:
    """For each feature: ``{"cell": index, "correlation": r}`` of the cell with the largest |r|."""
    found = {}
    for name, feature in features.items():
        values = correlations(activations, feature)
        cell = int(np.argmax(np.abs(values)))
        found[name] = {"cell": cell, "correlation": round(float(values[cell]), 4)}
    return found


def coloured_html(text: str, activation: np.ndarray) -> str:
    """``text`` as HTML, each character on a background from blue (-1) through white to red (+1)
    by ``activation`` (scaled by its largest magnitude); newlines are kept."""
    scale = max(float(np.abs(activation).max()), 1e-9)
    spans = []
    for character, value in zip(text, activation / scale):
        red, blue = (255, int(255 * (1 - value))) if value >= 0 else (int(255 * (1 + value)), 255)
        colour = f"rgb({red},{min(red, blue)},{blue})"
        shown = "&#8629;<br>" if character == "\n" else html.escape(character)
        spans.append(f'<span style="background:{colour}">{shown}</span>')
    return '<div style="font-family:monospace;white-space:pre-wrap;line-height:1.5">' + "".join(spans) + "</div>"
