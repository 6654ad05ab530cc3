"""Multi-worker training: each worker's role, where the other workers write, a local launcher.

``strategy: multi_worker`` trains through ``tf.distribute.MultiWorkerMirroredStrategy``, which
reads the cluster from the ``TF_CONFIG`` environment variable, as Keras, TensorFlow and
Kubeflow's TFJob launch workers. Every worker runs the same ``translator train CONFIG --run
RUN`` command with its own ``TF_CONFIG``:

    {"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}

The chief (the ``chief`` task if the cluster names one, otherwise worker 0) writes the run
directory; the other workers write their checkpoints into a scratch directory of their own
(TensorFlow's multi-worker guide: every worker takes part in a save) and delete it. Every worker
reads the chief's checkpoints when a run resumes, so the run directory must be on storage all
workers see (a shared file system).

``translator train CONFIG --workers N`` starts N such workers on 127.0.0.1 (ports chosen free),
for trying multi-worker training on one machine and for tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class ClusterError(RuntimeError):
    """The cluster cannot be set up or a worker failed (the message says why and what to do)."""


TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


@dataclass(frozen=True)
class WorkerRole:
    """Which worker this process is: ``index`` of ``count`` workers; ``chief`` writes the run."""

    index: int = 0
    count: int = 1
    chief: bool = True

    @classmethod
    def of(cls, strategy) -> WorkerRole:
        resolver = getattr(strategy, "cluster_resolver", None)
        if resolver is None or not resolver.cluster_spec().as_dict():  # one process, no cluster
            return cls()
        from tensorflow.python.distribute import multi_worker_util

        cluster = resolver.cluster_spec()
        jobs = cluster.as_dict()
        count = sum(cluster.num_tasks(job) for job in ("chief", "worker") if job in jobs)
        chief = multi_worker_util.is_chief(cluster, resolver.task_type, resolver.task_id)
        index = resolver.task_id + (1 if resolver.task_type == "worker" and "chief" in jobs else 0)
        return cls(index, count, chief)


def check_tf_config() -> None:
    """Check ``TF_CONFIG`` before TensorFlow reads it: TensorFlow's own errors name neither the
    variable nor the fix. An unset variable is one worker on its own."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClusterError(f"TF_CONFIG is not valid JSON ({error}); set it like {TF_CONFIG_EXAMPLE}") from None
    cluster = value.get("cluster") if isinstance(value, dict) else None
    task = value.get("task") if isinstance(value, dict) else None
    if not isinstance(cluster, dict) or not cluster.get("worker") and not cluster.get("chief"):
        raise ClusterError(f"TF_CONFIG has no 'cluster.worker' list of host:port addresses; set it like "
                           f"{TF_CONFIG_EXAMPLE}")
    for job, addresses in cluster.items():
        if job not in ("chief", "worker"):
            raise ClusterError(f"TF_CONFIG 'cluster.{job}': MultiWorkerMirroredStrategy trains with 'chief' "
                               f"and 'worker' tasks only; remove '{job}'")
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ClusterError(f"TF_CONFIG 'cluster.{job}' is {addresses!r}; expected a list of host:port "
                               f"addresses, e.g. [\"host0:12345\", \"host1:12345\"]")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ClusterError(f"TF_CONFIG 'task.type' is {task.get('type') if isinstance(task, dict) else None!r}; "
                           f"expected one of {sorted(cluster)} (this worker's job in 'cluster')")
    index = task.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise ClusterError(f"TF_CONFIG 'task.index' is {index!r}; expected this worker's position in "
                           f"'cluster.{task['type']}', 0 to {len(cluster[task['type']]) - 1}")


def scratch_directory(run: Path, role: WorkerRole) -> Path:
    """Where a worker other than the chief writes its checkpoints: a directory of the local
    temporary folder named after the run and the worker, so a restarted worker finds (and
    deletes) what a killed one left."""
    name = "".join(c if c.isalnum() else "-" for c in str(Path(run).resolve()).strip("/"))[-80:]
    return Path(tempfile.gettempdir()) / f"translator-{name}-worker-{role.index}"


def remove_scratch(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def replica_shards(context) -> tuple[int, tuple[int, ...]]:
    """(shards, this input pipeline's shards) for ``Strategy.distribute_datasets_from_function``:
    every global batch is cut into one shard per replica, and a worker reads the shards of its
    own replicas only, one after another (the order the strategy hands them to its replicas)."""
    local = context.num_replicas_in_sync // context.num_input_pipelines
    first = context.input_pipeline_id * local
    return context.num_replicas_in_sync, tuple(range(first, first + local))


def mean_over_workers(strategy, values: list[float]) -> list[float]:
    """The mean over all workers of each worker's ``values``, the same on every worker."""
    import tensorflow as tf

    @tf.function
    def mean(tensor):  # every replica of a worker gives that worker's values
        per_replica = strategy.run(tf.identity, args=(tensor,))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    return mean(tf.constant(values, tf.float64)).numpy().tolist()


def agree(strategy, figures: dict) -> dict:
    """The validation figures, the same on every worker: their mean over the workers. Every
    worker validates the same weights, but two machines' arithmetic may differ in the last bits,
    and early stopping and the plateau schedule must decide alike on all of them."""
    if WorkerRole.of(strategy).count == 1:
        return figures
    return dict(zip(figures, mean_over_workers(strategy, [float(value) for value in figures.values()])))


def check_same_start(strategy, run: Path, step: int) -> None:
    """Stop every worker if they did not all restore the chief's checkpoint (the step they start
    from): a worker that cannot read the chief's run directory would start over on its own."""
    role = WorkerRole.of(strategy)
    if role.count == 1:
        return
    chief_step = round(mean_over_workers(strategy, [step if role.chief else 0])[0] * role.count)
    differing = round(mean_over_workers(strategy, [float(step != chief_step)])[0] * role.count)
    if differing:
        raise ClusterError(f"{differing} worker(s) found no checkpoint of step {chief_step:,} (the chief's) in "
                           f"{run}/checkpoints{f', this one step {step:,}' if step != chief_step else ''}: every "
                           f"worker resumes from the chief's checkpoints, so the run directory must be on storage "
                           f"all workers share (a network file system), at the same path on each")


# ----------------------------------------------------------------------------- local launcher

def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            handle.bind(("127.0.0.1", 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def local_tf_configs(count: int) -> list[str]:
    """One ``TF_CONFIG`` per worker of a cluster of ``count`` workers on 127.0.0.1."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            for index in range(count)]


def launch_local_workers(command: list[str], count: int, log=print, grace_seconds: float = 10.0) -> int:
    """Run ``command`` (a ``translator train`` command line) as ``count`` worker processes on
    127.0.0.1 and wait for all of them. Worker 0 is the chief and writes to this terminal; the
    others write to log files in the temporary folder, whose end is shown if one fails. If a
    worker fails, the others are stopped (they would wait for it forever) and ClusterError says
    which one; the same command resumes from the last checkpoint. A first Ctrl-C (or SIGTERM) is
    passed on to every worker, which saves its state and stops after the current batch; a second
    one kills them. Returns 0, or 130 when interrupted."""
    if count < 1:
        raise ClusterError(f"--workers is {count}; expected a positive number of worker processes")
    configs = local_tf_configs(count)
    logs = [None] + [tempfile.NamedTemporaryFile("w+b", prefix=f"translator-worker-{i}-", suffix=".log",
                                                 delete=False) for i in range(1, count)]
    workers, interrupts = [], []

    def pass_on(number, frame):
        interrupts.append(number)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT) if len(interrupts) == 1 else worker.kill()

    previous = {number: signal.signal(number, pass_on) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index, tf_config in enumerate(configs):
            # Each worker in a session of its own: a Ctrl-C in the terminal reaches the launcher
            # only, which passes it on once (a second one, to a worker, means "stop at once").
            workers.append(subprocess.Popen(command, env={**os.environ, "TF_CONFIG": tf_config},
                                            stdout=logs[index], stderr=logs[index], start_new_session=True,
                                            preexec_fn=_die_with_parent))
        addresses = json.loads(configs[0])["cluster"]["worker"]
        log(f"started {count} worker(s) on {', '.join(addresses)}: pids "
            f"{', '.join(str(worker.pid) for worker in workers)} (worker 0 is the chief)")
        sys.stdout.flush()
        failed = []  # in the order their failures were seen; the first is the cause, the rest followed it
        while True:  # until all have exited; a failure ends the wait unless a stop was asked for
            codes = [worker.poll() for worker in workers]
            # Seen in the same poll, a worker killed by a signal comes first: the others fail after it.
            failed += sorted((index for index, code in enumerate(codes) if code not in (None, 0) and index not in failed),
                             key=lambda index: codes[index] >= 0)
            if None not in codes or failed and not interrupts:
                break
            time.sleep(0.2)
        if interrupts:
            return 130
        if not failed:
            return 0
        index = failed[0]
        detail = ""
        if logs[index] is not None:
            logs[index].seek(0)
            lines = logs[index].read().decode("utf-8", errors="replace").splitlines()
            detail = "; its last lines:\n" + "\n".join(f"  {line}" for line in lines[-15:])
        raise ClusterError(f"worker {index} (pid {workers[index].pid}) exited with status {codes[index]}, so the "
                           f"other workers were stopped; run the same command to resume from the last "
                           f"checkpoint{detail}")
    finally:
        _stop(workers, grace_seconds)
        for number, handler in previous.items():
            signal.signal(number, handler)
        for handle in logs:
            if handle is not None:
                handle.close()
                os.unlink(handle.name)


def _die_with_parent() -> None:
    """In a worker before it starts (Linux): the kernel kills it if the launcher dies, even by
    SIGKILL, so that no worker trains on unwatched."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass


def _stop(workers, grace_seconds: float) -> None:
    """Ask running workers to stop (SIGTERM), then kill those still running after the grace time
    (a worker waiting on a dead one never gets to its signal handler)."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    deadline = time.time() + grace_seconds
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def launch_training(config_path, run=None, seed=None, workers: int = 2, overrides=(), log=print) -> int:
    """``translator train CONFIG --workers N``: the same training command as N local workers."""
    from translator.config import load_config

    strategy = load_config(config_path, overrides)["training"]["strategy"]
    if strategy != "multi_worker":
        raise ClusterError(f"--workers {workers} trains with training.strategy: multi_worker, but {config_path} "
                           f"has strategy: {strategy}; set it under training: in the config (or add "
                           f"--set training.strategy=multi_worker)")
    command = [sys.executable, "-m", "translator", "train", str(config_path)]
    command += ["--run", str(run)] if run else []
    command += ["--seed", str(seed)] if seed is not None else []
    for override in overrides:
        command += ["--set", override]
    return launch_local_workers(command, workers, log)
