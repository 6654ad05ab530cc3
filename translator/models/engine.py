"""The fused CPU engine: runs `RecurrentEncoder` and `RecurrentDecoder` with their own weights,
faster than Keras's cells do on a CPU, with the same numbers (up to float rounding).

The layers (`translator.models.encoders`, `translator.models.decoders`) read as the papers write them: Keras
cells, an attention layer, an output layer. Each owns an engine from this module and hands it
its weights; this is the one place that knows about the fused kernels ``[W; U; b]``
(`fused_kernels`), folded biases (`fold_bias`), per-vocabulary input tables, and the training
loop whose kernel gradients are one product after the loop (`LoopKernels`). The loops and
gate arithmetic themselves are in `translator.models.recurrence`; why the fast path looks as it
does, with measurements, is in README.md.

A layer uses its engine
- to decode (`step`) once `fuse_for_inference` has made its kernels, on any device;
- for everything (teacher forcing, encoding, stepping while training) when
  `translator.models.recurrence.use_fused_loop()` is true: on a CPU.
"""

import tensorflow as tf
from keras import ops

from translator.models.quantization import multiply as quantized_or_float_product
from translator.models.recurrence import (
    LoopKernels,
    cell_step,
    fold_bias,
    fused_cell_step,
    fused_kernels,
    matmul,
    project_inputs,
    run_cell,
    with_ones,
)

# `fuse_for_inference` (encoder and decoder) precomputes embedding x first-layer kernel for the
# whole vocabulary up to this many numbers (64 MiB in float32): 8,000 tokens x 4 x 512 LSTM
# units is 16.4 million.
EMBEDDING_PROJECTION_LIMIT = 16 * 2**20


class EncoderEngine:
    """Runs a `RecurrentEncoder`'s layers through `run_cell`, and its first layer from a table
    of every token's input side (`fuse_for_inference`). ``reverse(sequence, mask)`` reverses
    each row's real tokens (the encoder's `reverse_real_tokens`)."""

    def __init__(self, encoder, reverse):
        self.encoder = encoder
        self.reverse = reverse
        self.input_table = None

    def fuse_for_inference(self, embeddings):
        """Precompute, from the weights as they are now, the first layer's input side (input
        kernel and bias) of every row of `embeddings` [vocabulary, embedding_dim]; for a
        bidirectional layer the forward and backward sides side by side. The encoder then
        reads a token's row (``encoder(ops.take(encoder.input_table, ids, axis=0),
        inputs_projected=True)``) instead of multiplying its embedding: for an LSTM of 512
        units over 256-wide embeddings that is a third of the first layer's products. No table
        above `EMBEDDING_PROJECTION_LIMIT` numbers. Only for a copy that decodes and is not
        trained further (`translator.models.seq2seq.computing_in`)."""
        first = self.encoder.recurrent_layers[0]
        cells = [first.forward_layer.cell, first.backward_layer.cell] if self.encoder.bidirectional else [first.cell]
        if embeddings.shape[0] * sum(cell.kernel.shape[1] for cell in cells) > EMBEDDING_PROJECTION_LIMIT:
            return
        embeddings = ops.convert_to_tensor(embeddings)
        self.input_table = ops.concatenate([project_inputs(cell, embeddings) for cell in cells], axis=-1)

    def run_layer(self, layer, inputs, mask, initial_states, training=False, inputs_projected=False):
        """One layer through `translator.models.recurrence.run_cell`, returning what the Keras layer
        returns: outputs and [forward states..., backward states...]. Out of training, only the
        real tokens are computed (``skip_padding``).

        The backward direction reads the real tokens reversed, so it starts at each row's last
        real token exactly as Keras's masked ``go_backwards`` does. With `inputs_projected`, a
        bidirectional layer's inputs are [forward side, backward side].
        """
        skip_padding = not training
        if not self.encoder.bidirectional:
            return run_cell(layer.cell, inputs, initial_states, mask, skip_padding, inputs_projected, training)
        forward_inputs = backward_inputs = inputs
        if inputs_projected:
            forward_inputs, backward_inputs = ops.split(inputs, 2, axis=-1)
        forward, forward_states = run_cell(layer.forward_layer.cell, forward_inputs, initial_states, mask,
                                           skip_padding, inputs_projected, training)
        backward, backward_states = run_cell(layer.backward_layer.cell, self.reverse(backward_inputs, mask),
                                             initial_states, mask, skip_padding, inputs_projected, training)
        outputs = ops.concatenate([forward, self.reverse(backward, mask)], axis=-1)
        return outputs, forward_states + backward_states


class DecoderEngine:
    """Runs a `RecurrentDecoder`: its step from fused kernels, its teacher forcing as a
    `tf.while_loop` whose kernel gradients are one product each after the loop, and its output
    projection with the bias folded into the product.

    The decoder's own `advance` (the equations of one step) is reused: the engine only swaps
    in its ways of running a layer's cell (`fused_cell_step`, `cell_step`) and of taking the
    attention's weighted sum of the memory.
    """

    def __init__(self, decoder):
        self.decoder = decoder
        self.kernels = None  # made by `fuse_for_inference`

    # ------------------------------------------------------------------ decoding

    def fuse_for_inference(self):
        """Precompute, from the weights as they are now, the kernels that make `step` fast:
        each layer's step as one product ``[x, h, 1] @ [W; U; b]`` (`fused_kernels`), the
        embedding's share of the first layer's product for every token of the vocabulary (a
        step looks up its row: the product then has 256 fewer rows for a 256-wide embedding),
        and the output projection's bias as a row of its kernel (`fold_bias`). Only for a copy
        that decodes and is not trained further (`translator.models.seq2seq.computing_in`): the kernels
        do not follow later changes of the weights. Teacher forcing is unchanged."""
        decoder = self.decoder
        layers = decoder.recurrent_layers
        kernels = {f"layer_{index}": fused_kernels(layer.cell) for index, layer in enumerate(layers)}
        first = layers[0].cell
        if decoder.vocabulary_size * first.kernel.shape[1] <= EMBEDDING_PROJECTION_LIMIT:
            # The embedding's share of the first layer's input side, for every token at once:
            # a step looks its row up instead of multiplying the embedded token.
            embeddings = ops.convert_to_tensor(decoder.embedding.embeddings)
            kernels["embedding_projection"] = ops.cast(ops.matmul(embeddings, first.kernel[: decoder.embedding_dim]),
                                                       decoder.compute_dtype)
            kernels["layer_0"] = fused_kernels(first, skip_input_rows=decoder.embedding_dim)
        kernel, bias = decoder.output_kernel_and_bias()  # a tied projection stays a product of its own
        kernels["output"] = fold_bias(ops.convert_to_tensor(kernel), bias)
        self.kernels = kernels

    def step(self, previous_token_ids, cache, training=False, output=None):
        """`RecurrentDecoder.step`: with the fused kernels when there are any (not training),
        otherwise each layer's step through `cell_step` from its projected input; `output`: a
        restricted output projection (`RecurrentDecoder.restricted_output`)."""
        decoder = self.decoder
        kernels = self.kernels if not training else None
        projected = embedded = None
        if kernels is not None and "embedding_projection" in kernels:
            projected = ops.take(kernels["embedding_projection"], previous_token_ids, axis=0)
        else:
            embedded = decoder.embed(previous_token_ids, training)
        run_layer = self._fused_layer_step(kernels, projected) if kernels is not None else self._layer_step
        hidden, context, new_state, weights = decoder.advance(embedded, cache, cache, training, run_layer)
        if "attentional_vector" in new_state:
            pre_output = new_state["attentional_vector"]
        else:
            pre_output = decoder.pre_output(hidden, context, cache)
        return self.project(pre_output, output), {**cache, **new_state}, weights

    def project(self, pre_output, output=None):
        """The logits of `pre_output` [..., width]: ``[x, 1] @ [kernel; bias]`` (`fold_bias`),
        with the fused kernel for one decoding step, or `output` (a shortlist's columns of it,
        `RecurrentDecoder.restricted_output`). Also in training the bias's gradient then comes
        with the kernel's, instead of a separate pass over [tokens, vocabulary]."""
        decoder = self.decoder
        if decoder.tied_projection is not None:
            pre_output = decoder.tied_projection(pre_output)
        if output is None and self.kernels is not None and len(pre_output.shape) == 2:  # one decoding step
            output = self.kernels["output"]
        if output is not None:  # the fused kernel, or its columns of a shortlist (int8 too)
            return quantized_or_float_product(with_ones(pre_output), output)
        kernel, bias = decoder.output_kernel_and_bias()
        kernel, bias = ops.cast(kernel, pre_output.dtype), ops.cast(bias, pre_output.dtype)
        return matmul(with_ones(pre_output), fold_bias(kernel, bias))

    def _layer_step(self, index, inputs, states):
        cell = self.decoder.recurrent_layers[index].cell
        return cell_step(cell, project_inputs(cell, inputs), states)

    def _fused_layer_step(self, kernels, projected=None, multiply=None):
        """A layer's step with its kernels [x, h, 1] @ [W; U; b]; layer 0 adds `projected` (the
        embedding's share, looked up or computed for all steps); ``multiply(name, rows,
        kernel)`` computes the products (`LoopKernels`)."""
        layers = self.decoder.recurrent_layers

        def run_layer(index, inputs, states):
            if inputs is None:  # layer 0 reads only the projected embedding
                inputs = projected[:, :0]
            layer_multiply = None if multiply is None else (
                lambda key, rows, kernel: multiply(f"layer_{index}/{key}", rows, kernel))
            return fused_cell_step(layers[index].cell, kernels[f"layer_{index}"], inputs, states,
                                   projected=projected if index == 0 else None, multiply=layer_multiply)

        return run_layer

    # ------------------------------------------------------------------ teacher forcing

    def run_layer(self, index, inputs, initial_states, training):
        """No attention: one whole layer over all steps through `run_cell`."""
        return run_cell(self.decoder.recurrent_layers[index].cell, inputs, initial_states, training=training)

    def decode_step_by_step(self, embedded, cache, training):
        """`RecurrentDecoder._decode_step_by_step` on a CPU: the embedding's share of the first
        layer's input projection is one matrix product for all steps before the loop, the rest
        of each layer's step one product with kernels cast and stacked once before the loop
        (`fused_kernels`), and Bahdanau's attentional layer (which no later step reads) one
        product after it. When training, the gradients of those kernels, and the memory's
        through the attention's weighted sum, are one product each after the loop
        (`LoopKernels`)."""
        decoder = self.decoder
        first_cell = decoder.recurrent_layers[0].cell
        kernel = ops.cast(first_cell.kernel[: decoder.embedding_dim], embedded.dtype)
        projected = ops.transpose(matmul(embedded, kernel), (1, 0, 2))
        # Kept in float32 (the weights' dtype under mixed precision) and cast inside the loop,
        # so that their gradients are summed over the steps in float32.
        kernels = {
            f"layer_{index}": fused_kernels(layer.cell, "float32", decoder.embedding_dim if index == 0 else 0)
            for index, layer in enumerate(decoder.recurrent_layers)
        }
        steps, batch = ops.shape(projected)[0], ops.shape(projected)[1]
        projected = tf.TensorArray(projected.dtype, size=steps).unstack(projected)
        loop = None
        if training:  # the kernels' gradients as one product each after the loop
            loop_kernels = {f"{layer}/{key}": kernel for layer, layer_kernels in kernels.items()
                            for key, kernel in layer_kernels.items()}
            if decoder.attention is not None:  # one [source_time, memory_dim] "kernel" per row
                loop_kernels["memory"] = cache["memory"]
            loop = LoopKernels(loop_kernels, steps, batch, decoder.compute_dtype)
            kernels = {layer: {key: loop.constants[f"{layer}/{key}"] for key in layer_kernels}
                       for layer, layer_kernels in kernels.items()}

        def advance(time, state, records):
            multiply = None if loop is None else (lambda name, rows, kernel: loop.multiply(name, rows, time))
            attend = None
            if multiply is not None:
                attend = lambda query, cache: self._attend_multiplying(query, cache, multiply)  # noqa: E731
            run_layer = self._fused_layer_step(kernels, projected.read(time), multiply)
            result = decoder.advance(None, state, cache, training, run_layer, attend)
            return result, (records if loop is None else loop.record(time, records))

        pre_outputs, weights, state, records = decoder.step_loop(advance, steps, cache,
                                                                  loop.records() if loop is not None else {})
        if loop is not None:
            loop.finish(records)
        return pre_outputs, weights, state

    def _attend_multiplying(self, query, cache, multiply):
        """(context, weights), the weighted sum of the memory as ``multiply("memory", weights,
        memory)`` (`LoopKernels`: its gradient for the memory is one product after the loop)."""
        weights = self.decoder.attention_layer.alignment(query, cache["projected_memory"], cache["memory_mask"])
        return multiply("memory", weights, cache["memory"]), weights
