"""The pieces of training that are not the loop: the `tf.distribute` strategy, the compiled
training step, the learning-rate schedule and the weights' moving average
(`translator.training.trainer` runs them)."""

from __future__ import annotations

import contextlib
import math


def make_strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":  # every local GPU; without one, every logical CPU device
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":  # workers and their roles come from the TF_CONFIG variable
        from translator.training.distributed import check_tf_config

        check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def learning_rate(config: dict, step: int, total_steps: int, factor: float) -> float:
    """The learning rate at ``step`` (1-based): linear warm-up, then the configured schedule."""
    settings = config["training"]
    base, warmup = settings["learning_rate"], settings["warmup_steps"]
    if warmup and step <= warmup:
        return base * step / warmup
    schedule = settings["schedule"]
    if schedule == "inverse_sqrt":
        rate = base * math.sqrt(max(warmup, 1) / step)
    elif schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        rate = settings["min_learning_rate"] + 0.5 * (base - settings["min_learning_rate"]) * (1 + math.cos(math.pi * progress))
    else:  # constant, or plateau (whose factor shrinks when validation loss stalls)
        rate = base
    return max(rate * factor, settings["min_learning_rate"] if schedule == "plateau" else 0.0)


def make_training_step(config: dict, model, optimizer, strategy, element_spec, task, stop_signal=None):
    """The compiled training step: the task's loss, gradients all-reduced over replicas, the
    global norm clipped, one optimizer update. Returns ``train_step(*batch) -> (loss sum, count,
    stop)``: ``stop`` is positive when any replica's ``stop_signal`` variable (a stop request,
    e.g. Ctrl-C, in that process) is, so that all workers stop after the same step."""
    import tensorflow as tf

    settings = config["training"]
    clip = settings["clip_norm"]
    variables = model.trainable_variables
    replicas = strategy.num_replicas_in_sync

    def replica_train(*batch):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            objective_sum, objective_count, plain_sum, count = task.loss(model, batch, training=True)
            stop = tf.zeros([]) if stop_signal is None else tf.identity(stop_signal)  # a read, on this replica
            global_count, stop = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                                    [tf.cast(objective_count, tf.float32), stop])
            loss = objective_sum / tf.maximum(global_count, 1e-9)
        gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]  # dense embeddings
        # Sum the gradients of all replicas and clip the global gradient (as on one device);
        # the optimizer sums replicas once more, hence the division.
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        if clip:
            gradients, _ = tf.clip_by_global_norm(gradients, clip)
        optimizer.apply([g / replicas for g in gradients], variables)
        # What the loss reports is the plain cross-entropy, comparable across settings.
        return plain_sum, count, stop

    jit = settings["jit_compile"]

    @tf.function(input_signature=list(element_spec))
    def train_step(*batch):
        results = strategy.run(tf.function(replica_train, jit_compile=jit) if jit else replica_train, args=batch)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    return train_step


@contextlib.contextmanager
def moving_average_weights(model, optimizer):
    """With ``training.ema_decay``: the model holds the weights' moving average inside the
    block (for validation and the saved models) and its trained weights again after it.
    Without, nothing changes."""
    if not optimizer.use_ema:
        yield
        return
    variables = model.trainable_variables
    trained = [variable.numpy() for variable in variables]
    # Keras keeps the averages, in the order of the variables the optimizer was built with.
    for variable, average in zip(variables, optimizer._model_variables_moving_average):
        variable.assign(average)
    try:
        yield
    finally:
        for variable, value in zip(variables, trained):
            variable.assign(value)
