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


def project_inputs(cell, inputs):
    """The input side of every step at once: inputs [..., input_dim] -> [..., gates * units]."""
    kernel = tf.cast(cell.kernel, inputs.dtype)
    projected = tf.matmul(tf.reshape(inputs, [-1, kernel.shape[0]]), kernel)
    if cell.use_bias:
        bias = tf.cast(cell.bias, inputs.dtype)
        projected += bias[0] if cell_kind(cell) == "gru" else bias  # GRU: input bias row
    return tf.reshape(projected, tf.concat([tf.shape(inputs)[:-1], [kernel.shape[1]]], 0))


def cell_step(cell, projected_input, states):
    """One step from an already projected input [batch, gates * units]; returns (h, new_states)."""
    kind = cell_kind(cell)
    recurrent_kernel = tf.cast(cell.recurrent_kernel, projected_input.dtype)
    h = states[0]
    inner = tf.matmul(h, recurrent_kernel)
    if kind == "lstm":
        z = projected_input + inner
        i, f, c, o = tf.split(z, 4, axis=-1)
        c = tf.sigmoid(f) * states[1] + tf.sigmoid(i) * tf.tanh(c)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, [h, c]
    if kind == "gru":
        if cell.use_bias:
            inner += tf.cast(cell.bias[1], inner.dtype)  # recurrent bias row (reset_after)
        x_z, x_r, x_h = tf.split(projected_input, 3, axis=-1)
        r_z, r_r, r_h = tf.split(inner, 3, axis=-1)
        z = tf.sigmoid(x_z + r_z)
        r = tf.sigmoid(x_r + r_r)
        candidate = tf.tanh(x_h + r * r_h)
        h = z * h + (1.0 - z) * candidate
        return h, [h]
    h = tf.tanh(projected_input + inner)
    return h, [h]


def run_cell(cell, inputs, initial_states, mask=None):
    """Runs `cell` over inputs [batch, time, input_dim] from `initial_states`.

    Args:
        cell: a built keras LSTMCell, GRUCell (reset_after) or SimpleRNNCell, without
            recurrent dropout.
        inputs: float [batch, time, input_dim].
        initial_states: list of [batch, units] tensors ([h, c] for LSTM, [h] otherwise).
        mask: optional bool [batch, time]; where False the states are carried over
            unchanged and the output is 0.

    Returns:
        ``(outputs [batch, time, units], final_states)``.
    """
    projected = tf.transpose(project_inputs(cell, inputs), (1, 0, 2))  # time-major
    steps = tf.shape(projected)[0]
    states = [tf.cast(state, projected.dtype) for state in initial_states]
    time_mask = None if mask is None else tf.transpose(tf.cast(mask, "bool"), (1, 0))
    # Read through a TensorArray: its gradient is one stack, not a full-size zero tensor per step.
    projected_steps = tf.TensorArray(projected.dtype, size=steps).unstack(projected)
    outputs = tf.TensorArray(projected.dtype, size=steps)

    def body(time, states, outputs):
        h, new_states = cell_step(cell, projected_steps.read(time), states)
        if time_mask is not None:
            keep = tf.expand_dims(time_mask[time], -1)
            new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states)]
            h = tf.where(keep, h, tf.zeros_like(h))
        return time + 1, new_states, outputs.write(time, h)

    _, states, outputs = tf.while_loop(
        lambda time, *_: time < steps, body, (tf.constant(0), states, outputs),
        maximum_iterations=steps,
    )
    return tf.transpose(outputs.stack(), (1, 0, 2)), states
