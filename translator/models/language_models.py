"""Character-level (or any-token) recurrent language model: the decoder without an encoder.

Karpathy's char-rnn, on the shared layer library: a `RecurrentDecoder` with no attention and
no encoder, started from zero states, predicting the next token of a contiguous text.

Training (``translator train configs/tinyshakespeare-charlm.yaml``) is truncated
backpropagation through time (Williams and Peng 1990): the text is cut into ``batch_size``
contiguous streams, each batch is the next ``sequence_length`` tokens of every stream, and the
hidden state reached at the end of a batch starts the next one (gradients stop at the batch
boundary). The carried state is checkpointed with the weights, so a resumed run continues
exactly. Validation runs the same way over the validation text and reports the loss in nats
per token (per character for a character vocabulary), the figure nanoGPT and char-rnn report.

Generation: ``LanguageModel.load(run).sample(prime="ROMEO:", length=500, temperature=0.8)``
or ``translator sample --run RUN --prime "ROMEO:"``, with the compiled sampling loop of
`sample`.

`WindowLanguageModel` (``model.window: N``) is the model a recurrent one replaced: a
multilayer perceptron over the last N tokens. Both are a `TextModel`: the same training,
loading and sampling serve both.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from translator.checks import check_non_negative_int, check_number, check_positive_int, check_rate
from translator.models.decoders import RecurrentDecoder
from translator.models.embeddings import TokenEmbedding
from translator.models.runs import load_text_model
from translator.models.seq2seq import ConfiguredModel, dtype_policy_of
from translator.models.tasks import Task
from translator.special_ids import PAD_ID


class TextModel(ConfiguredModel):
    """What the two language models share: loading a trained run, and sampling text through
    their ``step`` (one token: ids [batch] and a cache -> logits, new cache, None) with the
    compiled loop of `sample`. A subclass is called as
    ``model(token_ids, state=None, training=False, return_state=False)``."""

    def build_for_shapes(self):
        with dtype_policy_of(self):
            self(ops.convert_to_tensor([[4, 5]], dtype="int32"))

    # ------------------------------------------------------------------ a trained run

    @classmethod
    def load(cls, run) -> TextModel:
        """The model of a finished run directory (``model.keras``), with its tokenizer."""
        return load_text_model(run, "language_model")

    def sample_ids(self, prime_ids, length, temperature, top_k, seed):
        """The graph of `sample`: int32 [batch, length] token ids drawn after ``prime_ids``
        (int32 [batch, time >= 1]) by `sample` (``seed``: int32 [2]). Also
        the body of the exported ``sample`` signature (`translator.service.export`)."""
        import tensorflow as tf

        def after_prime():  # the state after all but the prime's last token
            return self(prime_ids[:, :-1], return_state=True)[1]

        # A one-token prime starts from the zero state: a stacked decoder cannot run on no token.
        state = tf.cond(tf.shape(prime_ids)[1] > 1, after_prime,
                        lambda: self.initial_state(tf.shape(prime_ids)[0]))
        return sample(self.step, state, prime_ids[:, -1], length, temperature, top_k, seed)

    def sample(self, prime: str = "\n", length: int = 500, temperature: float = 1.0, top_k: int = 0,
               seed: int | None = None) -> str:
        """Continue `prime` by `length` tokens; returns prime + continuation.

        temperature 0 takes the most likely token at every step (greedy); top_k > 0 samples
        among the k most likely only. The same seed gives the same text.
        """
        import tensorflow as tf

        if getattr(self, "tokenizer", None) is None:
            raise ValueError("this model has no tokenizer; use LanguageModel.load(run)")
        if not isinstance(prime, str):
            raise TypeError(f"prime must be a string; got {type(prime).__name__} {prime!r:.60}")
        if not prime:
            raise ValueError("prime must hold at least one character (the default is a newline)")
        length = check_non_negative_int("length", length)
        temperature = check_number("temperature", temperature, 0.0)
        top_k = check_non_negative_int("top_k", top_k)
        if seed is not None and check_non_negative_int("seed", seed) >= 2**31:
            raise ValueError(f"seed must be an integer in [0, 2**31); got {seed!r}")
        if length == 0:
            return prime
        prime_ids = self.tokenizer.encode([prime])[0]
        if not prime_ids:
            raise ValueError(f"prime {prime!r} has no token in this model's vocabulary")
        if "sample" not in self._samplers:
            @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([], tf.int32),
                                          tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32),
                                          tf.TensorSpec([2], tf.int32)])
            def run_sampler(prime_ids, length, temperature, top_k, seed):
                return self.sample_ids(prime_ids, length, temperature, top_k, seed)
            self._samplers["sample"] = run_sampler
        seed = np.random.randint(0, 2**31 - 1) if seed is None else seed
        ids = self._samplers["sample"](tf.constant([prime_ids], tf.int32), tf.constant(length, tf.int32),
                                       tf.constant(temperature, tf.float32), tf.constant(top_k, tf.int32),
                                       tf.constant([seed, 0], tf.int32))
        return prime + self.tokenizer.decode(ops.convert_to_numpy(ids)[0].tolist())


@keras.saving.register_keras_serializable(package="translator")
class LanguageModel(TextModel):
    """A stacked LSTM/GRU/RNN language model.

    Call: ``model(token_ids, state=None, training=False, return_state=False)`` with int
    [batch, time] returns logits [batch, time, vocabulary_size] for the token after each
    position; ``return_state=True`` also returns the state after the last position, which
    passed back as ``state=`` continues the text exactly where it stopped (None: zero state).

    Masking: none; every position is a real token (the text is contiguous).
    """

    def __init__(self, vocabulary_size, cell="lstm", embedding_dim=64, units=512, num_layers=2, dropout=0.0,
                 tie_embeddings=False, **kwargs):
        super().__init__(**kwargs)
        self.settings = {"vocabulary_size": vocabulary_size, "cell": cell, "embedding_dim": embedding_dim,
                         "units": units, "num_layers": num_layers, "dropout": dropout,
                         "tie_embeddings": tie_embeddings}
        with dtype_policy_of(self):  # every sublayer computes in the model's policy
            self.decoder = RecurrentDecoder(vocabulary_size, embedding_dim, cell, units, num_layers=num_layers,
                                            dropout=dropout, tie_embeddings=tie_embeddings, name="decoder")
        self.tokenizer = None  # set by `load`
        self._samplers = {}

    @classmethod
    def from_settings(cls, model_config: dict, vocabulary_size: int, dtype: str = "float32"):
        """Build from the ``model:`` section of a config (``decoder_layers`` is the depth)."""
        model = cls(vocabulary_size, cell=model_config["cell"], embedding_dim=model_config["embedding_dim"],
                    units=model_config["units"], num_layers=model_config["decoder_layers"],
                    dropout=model_config["dropout"], tie_embeddings=model_config["tie_embeddings"], dtype=dtype)
        model.build_for_shapes()
        return model

    def initial_state(self, batch_size):
        return self.decoder.initial_state(batch_size=batch_size)

    def call(self, token_ids, state=None, training=False, return_state=False):
        if state is None:
            state = self.initial_state(ops.shape(token_ids)[0])
        return self.decoder(token_ids, state, training=training, return_state=return_state)

    def step(self, previous_token_ids, cache, training=False):
        """One token: int [batch] -> (logits [batch, vocabulary], new cache, None)."""
        return self.decoder.step(previous_token_ids, cache, training=training)

# ----------------------------------------------------------------------------- the sliding window

# The model a recurrent language model replaced ("Why RNNs work"): a multilayer perceptron that
# predicts the next token from the last ``window`` tokens only (Bengio et al. 2003's neural
# probabilistic language model, without its direct connections). As a `TextModel` it trains
# (``model.window: N`` in a language-model config; the truncated-BPTT streams carry the last
# ``window - 1`` tokens as "state", so a window reaches across batch boundaries as the recurrent
# state does), loads and samples as `LanguageModel` does.

@keras.saving.register_keras_serializable(package="translator")
class WindowLanguageModel(TextModel):
    """Embedding of each of the last ``window`` tokens, concatenated -> ``num_layers`` dense
    ReLU layers of ``units`` -> softmax layer over the vocabulary.

    Call: ``model(token_ids, state=None, training=False, return_state=False)`` with int
    [batch, time] returns logits [batch, time, vocabulary_size]: those at position t predict
    token t + 1 from tokens t - window + 1 .. t. ``state`` is ``{"history": int32 [batch,
    window - 1]}``, the tokens before position 0 (None: none, all padding); with
    ``return_state=True`` the state after the last position comes back too, and passed back
    continues the text exactly where it stopped.

    Masking: a window position that reaches before the start of the text (padding, id 0 in the
    history) contributes a zero vector, never a learned padding embedding; real tokens are
    never padding in a contiguous text.
    """

    def __init__(self, vocabulary_size, window=32, embedding_dim=16, units=512, num_layers=2, dropout=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        for name, value in (("vocabulary_size", vocabulary_size), ("window", window),
                            ("embedding_dim", embedding_dim), ("units", units), ("num_layers", num_layers)):
            check_positive_int(name, value)
        check_rate("dropout", dropout)
        self.settings = {"vocabulary_size": vocabulary_size, "window": window, "embedding_dim": embedding_dim,
                         "units": units, "num_layers": num_layers, "dropout": dropout}
        self.window = window
        with dtype_policy_of(self):
            self.embedding = TokenEmbedding(vocabulary_size, embedding_dim, mask_zero=False, name="embedding")
            self.hidden_layers = [keras.layers.Dense(units, activation="relu", name=f"hidden_{index + 1}")
                                  for index in range(num_layers)]
            self.dropout_layer = keras.layers.Dropout(dropout)
            # The softmax layer computes in float32 even under mixed precision.
            self.output_layer = keras.layers.Dense(vocabulary_size, name="output", dtype="float32")
        self.tokenizer = None  # set by `load`
        self._samplers = {}

    @classmethod
    def from_settings(cls, model_config: dict, vocabulary_size: int, dtype: str = "float32"):
        """Build from the ``model:`` section of a config (``window``, ``units``, ``decoder_layers``
        as the number of hidden layers, ``embedding_dim``, ``dropout``)."""
        model = cls(vocabulary_size, window=model_config["window"], embedding_dim=model_config["embedding_dim"],
                    units=model_config["units"], num_layers=model_config["decoder_layers"],
                    dropout=model_config["dropout"], dtype=dtype)
        model.build_for_shapes()
        return model

    def initial_state(self, batch_size):
        return {"history": tf.fill([batch_size, self.window - 1], tf.constant(PAD_ID, tf.int32))}

    def call(self, token_ids, state=None, training=False, return_state=False):
        token_ids = tf.cast(token_ids, tf.int32)
        if state is None:
            state = self.initial_state(tf.shape(token_ids)[0])
        ids = tf.concat([tf.cast(state["history"], tf.int32), token_ids], axis=1)  # [batch, window - 1 + time]
        embedded = self.embedding(ids) * ops.cast(ops.not_equal(ids, PAD_ID), self.compute_dtype)[..., None]
        windows = tf.signal.frame(embedded, self.window, 1, axis=1)  # [batch, time, window, embedding]
        hidden = tf.reshape(windows, tf.concat([tf.shape(windows)[:2], [self.window * self.embedding.embedding_dim]],
                                               0))
        for layer in self.hidden_layers:
            hidden = self.dropout_layer(layer(hidden), training=training)
        logits = self.output_layer(hidden)
        if return_state:
            return logits, {"history": ids[:, tf.shape(ids)[1] - (self.window - 1):]}
        return logits

    def step(self, previous_token_ids, cache, training=False):
        """One token: int [batch] -> (logits [batch, vocabulary], new cache, None), as
        `sample` steps a model."""
        logits, cache = self(previous_token_ids[:, None], cache, training=training, return_state=True)
        return logits[:, 0], cache, None


# ----------------------------------------------------------------------------- training

class TextStreams:
    """A token sequence cut into `streams` contiguous rows, served in chunks of `length` steps.

    Batch k is columns [k * length, (k + 1) * length) of every row (the last chunk may be
    shorter), as inputs, and the same columns one token later as targets.
    """

    def __init__(self, ids, streams: int, length: int):
        ids = np.asarray(ids, dtype=np.int32)
        per_stream = (len(ids) - 1) // streams
        if per_stream < 1:
            raise ValueError(f"{len(ids)} tokens cannot fill {streams} streams; lower training.batch_size")
        self.inputs = ids[:streams * per_stream].reshape(streams, per_stream)
        self.targets = ids[1:streams * per_stream + 1].reshape(streams, per_stream)
        self.length = length
        self.tokens = streams * per_stream

    def __len__(self) -> int:
        return math.ceil(self.inputs.shape[1] / self.length)

    def chunks(self, skip: int = 0):
        for index in range(skip, len(self)):
            columns = slice(index * self.length, (index + 1) * self.length)
            yield self.inputs[:, columns], self.targets[:, columns]


class LanguageModelTask(Task):
    """`translator.training.trainer.Trainer`'s view of a language model (see the module docstring)."""

    def __init__(self, config: dict, tokenizers: dict, log=print):
        import tensorflow as tf

        from translator.data.corpora import read_prepared_split

        self.config, self.log = config, log
        self.tokenizer = tokenizers["text"]
        settings, data = config["training"], config["data"]
        if settings["strategy"] != "default":
            raise ValueError("a language model trains with training.strategy: default (its carried state "
                             "is one batch of streams); remove the strategy setting")
        self.signature = [tf.TensorSpec([None, None], tf.int32)] * 2
        texts = {split: read_prepared_split(data["corpus"], split, data["work_dir"])["text"][0]
                 for split in ("train", "validation")}
        streams, length = settings["batch_size"], settings["sequence_length"]
        self.train = TextStreams(self.tokenizer.encode([texts["train"]])[0], streams, length)
        self.validation = TextStreams(self.tokenizer.encode([texts["validation"]])[0], streams, length)
        self.characters = {split: len(text) for split, text in texts.items()}
        self.carried = self.validation_carried = None

    def batches_per_epoch(self) -> int:
        return len(self.train)

    def dataset(self, epoch: int, skip: int, shards: int = 1, shard_ids=(0,)):
        import tensorflow as tf

        assert shards == 1, "a language model trains on one replica (see __init__)"

        return tf.data.Dataset.from_generator(lambda: self.train.chunks(skip),
                                              output_signature=tuple(self.signature)).prefetch(2)

    def describe(self, manifest: dict) -> str:
        return (f"{self.train.tokens:,} training tokens in {self.train.inputs.shape[0]} streams, "
                f"{self.config['training']['sequence_length']} steps of BPTT per batch")

    def build_model(self, dtype: str):
        import tensorflow as tf

        if self.config["model"]["window"]:  # the sliding-window MLP an RNN replaced
            model = WindowLanguageModel.from_settings(self.config["model"], self.tokenizer.vocabulary_size, dtype)
        else:
            model = LanguageModel.from_settings(self.config["model"], self.tokenizer.vocabulary_size, dtype=dtype)
        state = model.initial_state(self.train.inputs.shape[0])
        self.carried = {key: tf.Variable(tf.zeros_like(value), trainable=False, name=f"carried_{key}")
                        for key, value in state.items()}
        self.validation_carried = {key: tf.Variable(tf.zeros_like(value), trainable=False)
                                   for key, value in state.items()}
        return model

    def checkpointed_variables(self) -> list:
        return list(self.carried.values())

    def start_epoch(self, epoch: int, batches_done: int) -> None:
        if batches_done == 0:  # a resumed epoch keeps the checkpointed state
            for variable in self.carried.values():
                variable.assign(ops.zeros_like(variable))

    def loss(self, model, batch, training: bool):
        import tensorflow as tf

        from translator.models.seq2seq import sequence_loss

        inputs, targets = batch
        carried = self.carried if training else self.validation_carried
        state = {key: tf.identity(variable) for key, variable in carried.items()}
        logits, state = model(inputs, state, training=training, return_state=True)
        for key, variable in carried.items():
            variable.assign(tf.cast(tf.stop_gradient(state[key]), variable.dtype))
        loss_sum, count = sequence_loss(logits, targets, 0.0)  # no id is padding (0) in a text
        return loss_sum, count, loss_sum, count

    def validate(self, model, evaluate_step, epoch: int) -> dict:
        for variable in self.validation_carried.values():
            variable.assign(ops.zeros_like(variable))
        loss_sum = count = 0.0
        for batch in self.validation.chunks():
            batch_loss, batch_count = evaluate_step(*batch)
            loss_sum += float(batch_loss)
            count += float(batch_count)
        loss = loss_sum / count
        self.log(f"epoch {epoch + 1}: validation loss {loss:.4f} nats per token "
                 f"({loss / math.log(2):.3f} bits), perplexity {math.exp(loss):.2f}")
        return {"validation_loss": round(loss, 5), "validation_bits_per_token": round(loss / math.log(2), 5),
                "validation_perplexity": round(math.exp(loss), 3)}


def sample(step, cache: dict, first_ids, length, temperature, top_k, seed):
    """Sampling for language models: `length` tokens drawn one at a time after `first_ids`.

    Args:
        step: ``step(previous_ids [batch], cache) -> (logits, cache, weights)``, e.g. a
            `RecurrentDecoder`'s ``step``.
        cache: the state after everything before ``first_ids``.
        first_ids: int32 [batch], the last token already given (the end of the prime).
        length: how many tokens to draw (int32 scalar).
        temperature: logits are divided by it; 0 takes the most likely token (greedy).
        top_k: > 0 draws only among the k most likely tokens; 0 among all.
        seed: int32 [2], the seed of the stateless draws (the same seed, the same text).

    Returns:
        int32 [batch, length].
    """
    first_ids = tf.convert_to_tensor(first_ids, tf.int32)
    temperature = tf.convert_to_tensor(temperature, tf.float32)
    top_k = tf.convert_to_tensor(top_k, tf.int32)
    output = tf.TensorArray(tf.int32, size=length)

    def advance(index, tokens, cache, output):
        logits, cache, _ = step(tokens, cache)
        logits = tf.cast(logits, tf.float32)
        greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
        vocabulary = tf.shape(logits)[-1]
        k = tf.where(top_k > 0, tf.minimum(top_k, vocabulary), vocabulary)
        kth_largest = tf.math.top_k(logits, k=k).values[:, -1:]
        logits = tf.where(logits < kth_largest, tf.constant(-1e9, tf.float32), logits)
        drawn = tf.random.stateless_categorical(
            logits / tf.maximum(temperature, 1e-6), 1, seed=seed + tf.stack([0, index]), dtype=tf.int32)[:, 0]
        tokens = tf.where(temperature > 0, drawn, greedy)
        return index + 1, tokens, cache, output.write(index, tokens)

    _, _, _, output = tf.while_loop(
        lambda index, *_: index < length, advance, (tf.constant(0), first_ids, cache, output),
        maximum_iterations=length,
    )
    return tf.transpose(output.stack())
