"""What an int8 product costs in TensorFlow on this CPU, beside float32 and bfloat16: one decoding
step's output projection of the recipe ([rows, 257] x [257, 8,000], the bias folded in) and a
GRU-sized one, as `tf.linalg.matmul` int8 x int8 -> int32 (what Keras's int8 layers and
`translator.models.quantization` call) and oneDNN's `QuantizedMatMulWithBias` (uint8 x int8).

    taskset -c 0 .venv/bin/python scripts/int8_matmul.py     # microseconds per product
"""

import time

import tensorflow as tf


def microseconds(function, *arguments, repeats=200):
    function(*arguments)
    started = time.perf_counter()
    for _ in range(repeats):
        result = function(*arguments)
    result.numpy()
    return (time.perf_counter() - started) / repeats * 1e6


def main():
    product = tf.function(lambda a, b: tf.linalg.matmul(a, b))
    int8_product = tf.function(lambda a, b: tf.linalg.matmul(a, b, output_type=tf.int32))
    print("rows x inner x columns: float32, bfloat16, int8 matmul, oneDNN QuantizedMatMulWithBias (us)")
    for rows, inner, columns in ((64, 257, 8000), (320, 257, 8000), (320, 512, 768)):
        x, w = tf.random.normal([rows, inner]), tf.random.normal([inner, columns])
        x8 = tf.cast(tf.clip_by_value(x * 30, -127, 127), tf.int8)
        w8 = tf.cast(tf.clip_by_value(w * 30, -127, 127), tf.int8)
        xq = tf.bitcast(tf.cast(tf.random.uniform([rows, inner], 0, 255), tf.uint8), tf.quint8)
        wq = tf.bitcast(w8, tf.qint8)
        bias = tf.zeros([columns])
        onednn = tf.function(lambda a, b, bias: tf.raw_ops.QuantizedMatMulWithBias(
            a=a, b=b, bias=bias, min_a=0.0, max_a=255.0, min_b=-127.0, max_b=127.0, Toutput=tf.qint32)[0])
        figures = (microseconds(product, x, w), microseconds(product, tf.cast(x, tf.bfloat16), tf.cast(w, tf.bfloat16)),
                   microseconds(int8_product, x8, w8), microseconds(onednn, xq, wq, bias))
        print(f"{rows} x {inner} x {columns}: " + ", ".join(f"{value:,.0f}" for value in figures))


if __name__ == "__main__":
    main()
