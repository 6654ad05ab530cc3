"""A fast CPU loop over time for the Keras LSTM, GRU and SimpleRNN cells, with their own weights.

On a CPU, Keras runs a recurrent layer by calling its cell once per time step, and the cell
multiplies that step's input by the input kernel inside the loop. The input side does not
depend on the previous step, so here it is done for all steps at once, as one large matrix
product (Appleyard et al. 2016, "Optimizing Performance of Recurrent Neural Networks on
GPUs", section 3.1), and the loop keeps only ``h @ recurrent_kernel`` and the gates. The
weights are the cell's own variables (``kernel``, ``recurrent_kernel``, ``bias``), so a layer
saved by Keras loads unchanged and ``cell(...)`` one step at a time gives the same numbers.

With a GPU, the layers keep using Keras's own path (cuDNN); see ``use_fused_loop``.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from translator.models.quantization import Int8Kernel
from translator.models.quantization import multiply as quantized_or_float_product


@functools.cache
def use_fused_loop() -> bool:
    """True when no GPU is visible (the Keras layers then fall back to a per-step cell call)."""
    return not tf.config.list_physical_devices("GPU")


def cell_kind(cell) -> str:
    name = type(cell).__name__
    kinds = {"LSTMCell": "lstm", "GRUCell": "gru", "SimpleRNNCell": "rnn"}
    if name not in kinds:
        raise TypeError(f"no fused loop for {name}; expected an LSTMCell, GRUCell or SimpleRNNCell")
    if name == "GRUCell" and not cell.reset_after:
        raise TypeError("the fused GRU loop needs reset_after=True (the Keras default)")
    return kinds[name]


def fold_bias(kernel, bias):
    """``[kernel; bias]``, so that ``x @ kernel + bias == with_ones(x) @ fold_bias(kernel, bias)``.

    In bfloat16, TensorFlow's fused product-plus-bias is slow on a CPU (several times the
    product alone); the bias as one more row of the product costs next to nothing. In
    training, the bias's gradient then comes with the kernel's product instead of a separate
    sum over every row. (Measurements: README, "Why the fast path looks as it does".)
    """
    return tf.concat([kernel, tf.expand_dims(tf.cast(bias, kernel.dtype), 0)], 0)


def with_ones(x):
    """x [..., n] -> [x, 1] [..., n + 1] (see `fold_bias`)."""
    return tf.concat([x, tf.ones(tf.concat([tf.shape(x)[:-1], [1]], 0), x.dtype)], -1)


def transpose_kernel(kernel):
    """kernel [k, m] -> a copy [m, k]. As an einsum: Grappler folds a Transpose op that feeds a
    product back into it as ``transpose_b``, the slow form `matmul` avoids."""
    return tf.einsum("ij->ji", kernel)


def matmul(rows, kernel, transposed_kernel=None, kernel_gradient=True):
    """``rows @ kernel`` for rows [..., k] and kernel [k, m], whose gradient for `rows` in float32
    multiplies by a transposed copy of the kernel (`transposed_kernel` if given, made once
    before a loop) instead of by the kernel with ``transpose_b`` as autodiff does: on a CPU,
    oneDNN runs that float32 product at a fraction of the speed of the same product on a copy
    (README, "Why the fast path looks as it does"); in bfloat16 both run alike, and other
    dtypes take `tf.matmul` as it is.
    ``kernel_gradient=False`` for a kernel hidden from autodiff (`LoopKernels`)."""
    if rows.shape.rank != 2:  # one product: rows [b, t, k] would broadcast the kernel
        shape = tf.concat([tf.shape(rows)[:-1], [kernel.shape[1]]], 0)
        return tf.reshape(matmul(tf.reshape(rows, [-1, kernel.shape[0]]), kernel, transposed_kernel,
                                 kernel_gradient), shape)
    if rows.dtype != tf.float32:
        return tf.linalg.matmul(rows, kernel)

    @tf.custom_gradient
    def product(rows, kernel):
        def gradient(upstream):
            transposed = transpose_kernel(kernel) if transposed_kernel is None else transposed_kernel
            rows_gradient = tf.linalg.matmul(upstream, transposed)
            return rows_gradient, (tf.linalg.matmul(rows, upstream, transpose_a=True) if kernel_gradient else None)

        return tf.linalg.matmul(rows, kernel), gradient

    return product(rows, kernel)


def project_inputs(cell, inputs):
    """The input side of every step at once: inputs [..., input_dim] -> [..., gates * units]."""
    kernel = tf.cast(cell.kernel, inputs.dtype)
    if not cell.use_bias:
        return matmul(inputs, kernel)
    bias = tf.cast(cell.bias, inputs.dtype)
    bias = bias[0] if cell_kind(cell) == "gru" else bias  # GRU: the input bias row
    return matmul(with_ones(inputs), fold_bias(kernel, bias))


def cell_step(cell, projected_input, states, multiply=None):
    """One step from an already projected input [batch, gates * units]; returns (h, new_states).
    ``multiply(h)``, if given, computes ``h @ recurrent_kernel`` (with kernels made once before
    a loop: see `run_cell`)."""
    kind = cell_kind(cell)
    if multiply is None:
        inner = matmul(states[0], tf.cast(cell.recurrent_kernel, projected_input.dtype))
    else:
        inner = multiply(states[0])
    if kind == "gru" and cell.use_bias:
        inner += tf.cast(cell.bias[1], inner.dtype)  # the recurrent bias row (reset_after)
    return gates(kind, projected_input, inner, states)


def fused_kernels(cell, dtype=None, skip_input_rows: int = 0) -> dict:
    """Kernels for a step that computes its pre-activations from the raw input in one product
    (in a loop whose input is only known step by step: decoding, teacher forcing with
    attention). Made once before the loop, cast to ``dtype`` (default: the weights' own).

    LSTM and simple RNN: ``{"all": [kernel; recurrent_kernel; bias]}``, read as
    ``[x, h, 1] @ all``. GRU (reset_after): ``{"input": [kernel; input bias], "recurrent":
    [recurrent_kernel; recurrent bias]}``, read as ``[x, 1] @ input`` and ``[h, 1] @ recurrent``.
    ``skip_input_rows`` leaves out the first rows of the input kernel: the share of the input
    that the caller projects beforehand for all steps at once.
    """
    def value(weight):
        weight = tf.convert_to_tensor(weight)
        return weight if dtype is None else tf.cast(weight, dtype)

    kernel, recurrent_kernel = value(cell.kernel)[skip_input_rows:], value(cell.recurrent_kernel)
    gru = cell_kind(cell) == "gru"
    bias_shape = [2, recurrent_kernel.shape[1]] if gru else [recurrent_kernel.shape[1]]  # GRU: input, recurrent
    bias = value(cell.bias) if cell.use_bias else tf.zeros(bias_shape, kernel.dtype)
    if gru:
        return {"input": fold_bias(kernel, bias[0]), "recurrent": fold_bias(recurrent_kernel, bias[1])}
    return {"all": fold_bias(tf.concat([kernel, recurrent_kernel], 0), bias)}


def fused_cell_step(cell, kernels: dict, inputs, states, projected=None, multiply=None):
    """`cell_step` from the unprojected input [batch, input_dim] with `fused_kernels(cell)`
    (cast to the input's dtype here); ``projected``, if given, is the input side's share
    computed beforehand (added). ``multiply(key, rows, kernel)``, if given, computes
    ``rows @ kernel`` for ``kernels[key]`` (see `LoopKernels`)."""
    kernels = {key: kernel if isinstance(kernel, Int8Kernel) else tf.cast(kernel, inputs.dtype)
               for key, kernel in kernels.items()}
    multiply = multiply or (lambda key, rows, kernel: quantized_or_float_product(rows, kernel))
    if "all" in kernels:
        product = multiply("all", with_ones(tf.concat([inputs, states[0]], -1)), kernels["all"])
        return gates(cell_kind(cell), product if projected is None else product + projected, None, states)
    input_side = multiply("input", with_ones(inputs), kernels["input"])
    input_side = input_side if projected is None else input_side + projected
    return gates("gru", input_side, multiply("recurrent", with_ones(states[0]), kernels["recurrent"]), states)


class LoopKernels:
    """Products ``rows_t @ kernel`` at every step of a training loop whose kernel gradients are
    computed after the loop, one product per kernel: ``stack(rows)^T @ stack(dZ)``.

    Differentiating a ``tf.while_loop`` that reads a kernel gives each step's share of its
    gradient separately, a [rows, batch] x [batch, width] product per step, cast to float32 and
    added to a running sum the size of the kernel. Here the loop multiplies by the kernel
    cast once and hidden from autodiff, and adds a zero "probe" tensor to each product: the
    gradient reaching the probe is every step's dZ, and the probe's own gradient (custom) is
    the one large product with the rows recorded during the loop, computed in the compute
    dtype and cast to float32 once: the arithmetic of a mixed-precision layer outside a loop.

    A kernel [k, width] is shared by every row of the batch; a kernel [batch, k, width] has
    one matrix per row (the attention memory: ``context_t = weights_t @ memory`` row by row),
    and its gradient is then one batched product, ``stack(rows)^T @ stack(dZ)`` per row.

    Use: ``loop = LoopKernels({name: kernel}, steps, batch, dtype)``; in the loop body
    ``loop.multiply(name, rows, time)`` and ``records = loop.record(time, records)`` with
    ``records = loop.records()`` carried as a loop variable; after the loop
    ``loop.finish(records)`` (before any gradient is taken).
    """

    def __init__(self, kernels: dict, steps, batch, dtype):
        self.dtype = dtype
        self.constants = {name: tf.stop_gradient(tf.cast(kernel, dtype)) for name, kernel in kernels.items()}
        self.transposed = {name: transpose_kernel(kernel) for name, kernel in self.constants.items()
                           if kernel.shape.rank == 2}
        self.probes = {name: tf.TensorArray(dtype, size=steps).unstack(self._probe(name, kernel, steps, batch))
                       for name, kernel in kernels.items()}
        self.steps, self._rows, self._stacked = steps, {}, {}

    def _probe(self, name, kernel, steps, batch):
        width = kernel.shape[-1]

        @tf.custom_gradient
        def zeros(kernel):
            def gradient(upstream):  # [steps, batch, width]: dZ of every step
                rows = self._stacked[name]  # [steps, batch, k]
                if kernel.shape.rank == 3:
                    product = tf.einsum("tbk,tbw->bkw", rows, upstream)
                else:
                    product = tf.matmul(tf.reshape(rows, [-1, rows.shape[-1]]), tf.reshape(upstream, [-1, width]),
                                        transpose_a=True)
                return tf.cast(product, kernel.dtype)

            return tf.zeros([steps, batch, width], self.dtype), gradient

        return zeros(kernel)

    def records(self) -> dict:
        return {name: tf.TensorArray(self.dtype, size=self.steps) for name in self.constants}

    def multiply(self, name, rows, time):
        """rows [batch, k] @ the kernel `name` at step `time`: [batch, width]."""
        self._rows[name] = rows
        kernel = self.constants[name]
        if kernel.shape.rank == 3:
            product = tf.einsum("bk,bkw->bw", rows, kernel)
        else:
            product = matmul(rows, kernel, self.transposed[name], kernel_gradient=False)
        return product + self.probes[name].read(time)

    def record(self, time, records: dict) -> dict:
        return {name: array.write(time, tf.stop_gradient(self._rows[name])) for name, array in records.items()}

    def finish(self, records: dict) -> None:
        self._stacked = {name: array.stack() for name, array in records.items()}


def gates(kind, input_side, recurrent_side, states):
    """The new (h, states) from the input side x W + b and the recurrent side h U (+ b for
    GRU); for LSTM and simple RNN, ``recurrent_side`` None means ``input_side`` is their sum.

    In bfloat16 the gate math runs in float32 and only its results are cast back: on a CPU,
    TensorFlow's bfloat16 sigmoid is slower than casting to float32, the float32 sigmoid and
    casting back.
    """
    if input_side.dtype != tf.bfloat16:
        return _gates(kind, input_side, recurrent_side, states)
    as_float = lambda x: None if x is None else tf.cast(x, tf.float32)  # noqa: E731
    h, new_states = _gates(kind, as_float(input_side), as_float(recurrent_side), [as_float(s) for s in states])
    h = tf.cast(h, tf.bfloat16)
    return h, [h] + [tf.cast(state, tf.bfloat16) for state in new_states[1:]]


def _gates(kind, input_side, recurrent_side, states):
    h = states[0]
    if kind == "lstm":
        z = input_side if recurrent_side is None else input_side + recurrent_side
        i, f, c, o = tf.split(z, 4, axis=-1)
        c = tf.sigmoid(f) * states[1] + tf.sigmoid(i) * tf.tanh(c)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, [h, c]
    if kind == "gru":
        x_z, x_r, x_h = tf.split(input_side, 3, axis=-1)
        r_z, r_r, r_h = tf.split(recurrent_side, 3, axis=-1)
        z = tf.sigmoid(x_z + r_z)
        r = tf.sigmoid(x_r + r_r)
        candidate = tf.tanh(x_h + r * r_h)
        h = z * h + (1.0 - z) * candidate
        return h, [h]
    h = tf.tanh(input_side if recurrent_side is None else input_side + recurrent_side)
    return h, [h]


def run_cell(cell, inputs, initial_states, mask=None, skip_padding=False, inputs_projected=False,
             training=False):
    """Runs `cell` over inputs [batch, time, input_dim] from `initial_states`.

    Args:
        cell: a built keras LSTMCell, GRUCell (reset_after) or SimpleRNNCell, without
            recurrent dropout.
        inputs: float [batch, time, input_dim].
        initial_states: list of [batch, units] tensors ([h, c] for LSTM, [h] otherwise).
        mask: optional bool [batch, time]; where False the states are carried over
            unchanged and the output is 0.
        skip_padding: with a mask, compute each step on the rows that have a real token
            there only (gathered, then scattered back), as PyTorch's packed sequences do: a
            batch of mixed lengths then costs its real tokens, not batch x longest. The
            numbers are the same; for inference (the gradient would go through the
            gathers).
        inputs_projected: the inputs are already the input side of every step,
            [batch, time, gates * units] (`project_inputs`, bias included), e.g. rows of a
            table made once for a vocabulary (`RecurrentEncoder.fuse_for_inference`).
        training: the recurrent kernel's gradient will be taken: it is then one product after
            the loop (`LoopKernels`) instead of one per step summed up.

    Returns:
        ``(outputs [batch, time, units], final_states)``.
    """
    if mask is not None and skip_padding:
        return _run_cell_packed(cell, inputs, initial_states, mask, inputs_projected)
    time_major = tf.transpose(inputs, (1, 0, 2))  # before the projection, which is wider
    projected = time_major if inputs_projected else project_inputs(cell, time_major)
    steps = tf.shape(projected)[0]
    states = [tf.cast(state, projected.dtype) for state in initial_states]
    time_mask = None if mask is None else tf.transpose(tf.cast(mask, "bool"), (1, 0))
    # Read through a TensorArray: its gradient is one stack, not a full-size zero tensor per step.
    projected_steps = tf.TensorArray(projected.dtype, size=steps).unstack(projected)
    outputs = tf.TensorArray(projected.dtype, size=steps)

    if training:  # the recurrent kernel's gradient: one product after the loop
        loop = LoopKernels({"recurrent": cell.recurrent_kernel}, steps, tf.shape(projected)[1], projected.dtype)
        multiply = lambda rows, time: loop.multiply("recurrent", rows, time)  # noqa: E731
    else:  # cast and transposed once (the transpose is read by float32 gradients only: see `matmul`)
        recurrent = tf.cast(cell.recurrent_kernel, projected.dtype)
        kernels = (recurrent, transpose_kernel(recurrent))
        multiply = lambda rows, time: matmul(rows, *kernels)  # noqa: E731

    def body(time, states, outputs, records):
        h, new_states = cell_step(cell, projected_steps.read(time), states, lambda rows: multiply(rows, time))
        if training:
            records = loop.record(time, records)
        if time_mask is not None:
            keep = tf.expand_dims(time_mask[time], -1)
            new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states)]
            h = tf.where(keep, h, tf.zeros_like(h))
        return time + 1, new_states, outputs.write(time, h), records

    _, states, outputs, records = tf.while_loop(
        lambda time, *_: time < steps, body, (tf.constant(0), states, outputs, loop.records() if training else {}),
        maximum_iterations=steps,
    )
    if training:
        loop.finish(records)
    return tf.transpose(outputs.stack(), (1, 0, 2)), states


def _run_cell_packed(cell, inputs, initial_states, mask, inputs_projected=False):
    """`run_cell` on the real tokens only, as PyTorch's packed sequences do.

    The rows are sorted by length, longest first, so the rows with a token at time t are the
    first ``counts[t]`` ones: step t computes those only, and the rows whose last token it was
    leave the loop with their final states. The input side of all real tokens is one product.
    Padding must be at the end of each row (as everywhere in this package).
    """
    mask = tf.cast(mask, "bool")
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    order = tf.argsort(lengths, direction="DESCENDING", stable=True)
    sorted_mask = tf.gather(mask, order)
    positions = tf.where(tf.transpose(sorted_mask))  # (time, sorted row), by time, then row
    batch_positions = tf.stack([tf.gather(order, tf.cast(positions[:, 1], tf.int32)),
                                tf.cast(positions[:, 0], tf.int32)], 1)
    projected = tf.gather_nd(inputs, batch_positions)  # the real tokens, packed: [real, width]
    if not inputs_projected:
        projected = project_inputs(cell, projected)
    counts = tf.reduce_sum(tf.cast(sorted_mask, tf.int32), axis=0)  # rows with a token at each time
    steps = tf.size(counts)
    offsets = tf.concat([[0], tf.cumsum(counts)], 0)
    next_counts = tf.concat([counts[1:], [0]], 0)
    states = [tf.gather(tf.cast(state, projected.dtype), order) for state in initial_states]
    started = tf.reduce_sum(tf.cast(lengths > 0, tf.int32))  # rows with at least one token
    finals = [tf.TensorArray(projected.dtype, size=steps, infer_shape=False) for _ in states]
    outputs = tf.TensorArray(projected.dtype, size=steps, infer_shape=False)

    def body(time, active, finals, outputs):
        h, active = cell_step(cell, projected[offsets[time]:offsets[time + 1]], active)
        stay = next_counts[time]
        # Written back to front: the rows ending at time t come before those ending earlier.
        finals = [array.write(steps - 1 - time, state[stay:]) for array, state in zip(finals, active)]
        return time + 1, [state[:stay] for state in active], finals, outputs.write(time, h)

    _, _, finals, outputs = tf.while_loop(
        lambda time, *_: time < steps, body,
        (tf.constant(0), [state[:started] for state in states], finals, outputs),
        shape_invariants=(tf.TensorShape([]), [tf.TensorShape([None]).concatenate(state.shape[1:])
                                               for state in states], [None] * len(states), None),
        maximum_iterations=steps,
    )
    inverse = tf.math.invert_permutation(order)
    final_states = [tf.gather(tf.concat([array.concat(), state[started:]], 0), inverse)
                    for array, state in zip(finals, states)]
    shape = tf.concat([tf.shape(mask, out_type=tf.int64), tf.shape(states[0], out_type=tf.int64)[-1:]], 0)
    return tf.scatter_nd(tf.cast(batch_positions, tf.int64), outputs.concat(), shape), final_states


def take_positions(values, mask):
    """values [batch, time, width] at the positions where mask [batch, time] is True:
    [count, width], in row-major order (as ``tf.boolean_mask``). Its gradient is one gather
    (each position's row, or a row of zeros for the others) instead of ``tf.boolean_mask``'s
    segment sum, which is several times slower on a CPU."""
    width = values.shape[-1]
    flat_mask = tf.reshape(tf.cast(mask, tf.bool), [-1])
    positions = tf.cast(tf.where(flat_mask)[:, 0], tf.int32)
    count = tf.size(positions)
    rows = tf.where(flat_mask, tf.cumsum(tf.cast(flat_mask, tf.int32)) - 1, count)  # `count`: the zero row

    @tf.custom_gradient
    def take(values):
        def gradient(upstream):
            padded = tf.concat([upstream, tf.zeros([1, width], upstream.dtype)], 0)
            return tf.reshape(tf.gather(padded, rows), tf.shape(values))

        return tf.gather(tf.reshape(values, [-1, width]), positions), gradient

    return take(values)
