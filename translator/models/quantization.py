"""int8 decoding: ``Translator.load(run, precision="int8")``, ``translator export --precision int8``.

As in CTranslate2 and Keras's own int8 layers: every weight matrix a decoding step multiplies
is stored as int8 with one float32 scale per output column (``max |w| / 127``), and each
step's activations are quantized per row as they come (``max |x| / 127``, dynamic: no
calibration); the product is accumulated in int32 and scaled back to float32. Quantized here:
the decoder's fused recurrent kernels (`translator.models.engine`), its output projection (also when
restricted to a shortlist), and its attentional layer (Keras's ``Dense.quantize("int8")``).
The encoder runs once per sentence and stays in float32, as do the embedding look-ups.

On this project's CPUs TensorFlow has no fast int8 product: ``tf.linalg.matmul`` of int8
matrices into int32 (what Keras's int8 layers call) and oneDNN's ``QuantizedMatMulWithBias``
are both several times slower than the bfloat16 product (README, "Shortlists and int8"), so
int8 makes decoding slower here; it is kept for its smaller weights and for the record.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


class Int8Kernel(NamedTuple):
    """A weight matrix [k, m] as int8 ``values`` and float32 ``scales`` [m]: ``values * scales``."""

    values: tf.Tensor
    scales: tf.Tensor


def quantize_kernel(kernel) -> Int8Kernel:
    """`kernel` [k, m] with one scale per output column (symmetric, round to nearest)."""
    kernel = tf.cast(kernel, tf.float32)
    scales = tf.maximum(tf.reduce_max(tf.abs(kernel), axis=0), 1e-12) / 127.0
    return Int8Kernel(tf.cast(tf.clip_by_value(tf.round(kernel / scales), -127, 127), tf.int8), scales)


def int8_matmul(rows, kernel: Int8Kernel):
    """``rows @ kernel`` for float rows [n, k]: the rows quantized per row, the product in
    int32, scaled back to float32."""
    rows = tf.cast(rows, tf.float32)
    row_scales = tf.maximum(tf.reduce_max(tf.abs(rows), axis=1, keepdims=True), 1e-12) / 127.0
    quantized = tf.cast(tf.round(rows / row_scales), tf.int8)
    product = tf.linalg.matmul(quantized, kernel.values, output_type=tf.int32)
    return tf.cast(product, tf.float32) * row_scales * kernel.scales


def columns(kernel: Int8Kernel, pieces) -> Int8Kernel:
    """The columns `pieces` of a quantized kernel (a shortlist's output projection)."""
    return Int8Kernel(tf.gather(kernel.values, pieces, axis=1), tf.gather(kernel.scales, pieces))


def multiply(rows, kernel):
    """``rows @ kernel`` for a float or an `Int8Kernel` kernel."""
    if isinstance(kernel, Int8Kernel):
        return int8_matmul(rows, kernel)
    return tf.linalg.matmul(rows, tf.cast(kernel, rows.dtype))


def quantize_decoder(decoder) -> None:
    """Quantize a fused float32 decoder (`RecurrentDecoder.fuse_for_inference` done) in place."""
    kernels = decoder.engine.kernels
    if kernels is None:
        raise ValueError("quantize_decoder needs the decoder's fused kernels: call fuse_for_inference() first")
    for name, kernel in list(kernels.items()):
        if name == "output":
            kernels[name] = quantize_kernel(kernel)
        elif name.startswith("layer_"):
            kernels[name] = {key: quantize_kernel(value) for key, value in kernel.items()}
    if getattr(decoder, "attentional_layer", None) is not None:
        decoder.attentional_layer.quantize("int8")
