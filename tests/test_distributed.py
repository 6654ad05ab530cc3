"""Multi-worker training (``strategy: multi_worker``): worker processes on 127.0.0.1, each with
its own TF_CONFIG (ports chosen free), training a tiny config on a generated task.

Every wait is bounded (WAIT_SECONDS), and every process a test starts is killed when it ends.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_task, reversal_pairs, write_config
from test_training import MIRRORED, read_log, saved_state

from translator.training.distributed import local_tf_configs

WAIT_SECONDS = 300
TRAINING = {"epochs": 3, "batch_tokens": 512, "checkpoint_every": 5, "bleu_every": 0}

# One worker: trains, then saves the weights it ended with (outside the run directory).
WORKER = """
import sys
import numpy as np
from translator.training.trainer import Trainer
trainer = Trainer(sys.argv[1], sys.argv[2])
trainer.train()
np.savez(sys.argv[3], *[np.asarray(variable) for variable in trainer.model.weights])
"""


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cluster")
    data = make_task(directory, "reverse", {"train": reversal_pairs(2000, 1), "validation": reversal_pairs(100, 2),
                                            "test": reversal_pairs(100, 3)})
    config = write_config(directory, data, training={**TRAINING, "strategy": "multi_worker"}, name="cluster")
    return directory, data, config


class Processes:
    """Processes a test started, and the workers its launchers started: whatever still runs at
    the end of the test is killed (a worker only if its command line still names the run, so
    that a process id used again by another process is left alone)."""

    def __init__(self):
        self.started, self.workers = [], []

    def start(self, command, environment, output: Path) -> subprocess.Popen:
        with open(output, "wb") as handle:
            process = subprocess.Popen(command, env=environment, stdout=handle, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.started.append(process)
        return process

    def adopt(self, pid: int, run: Path):
        self.workers.append((pid, str(run)))

    def kill_all(self):
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()
        for pid, run in self.workers:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:  # gone
                continue
            if run.encode() in command:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def module_processes():
    processes = Processes()
    yield processes
    processes.kill_all()


@pytest.fixture
def processes():
    processes = Processes()
    yield processes
    processes.kill_all()


def environment(scratch: Path, **extra) -> dict:
    """The workers' environment: unbuffered output, and their temporary folder (where the workers
    other than the chief write their checkpoints) in the test's directory, to check it is emptied."""
    scratch.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch), **extra}


def leftovers(scratch: Path) -> list[str]:
    """What the workers left in their temporary folder (TensorFlow's own files, which a killed
    process cannot delete, aside)."""
    return sorted(path.name for path in scratch.iterdir() if path.name.startswith("translator-"))


def last_lines(path: Path, count=25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-count:])


def checkpointed_tensors(run: Path) -> dict:
    """Every tensor of the run's last checkpoint but the bookkeeping: weights, optimizer moments
    and step, dropout seeds."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(run / "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("state/", "save_counter/", "_CHECKPOINTABLE_OBJECT_GRAPH"))}


@pytest.fixture(scope="module")
def two_workers(task, module_processes):
    """The reference: two workers trained uninterrupted, each saving its final weights."""
    directory, _, config = task
    run, scratch = directory / "two-workers", directory / "two-workers-scratch"
    workers = []
    for index, tf_config in enumerate(local_tf_configs(2)):
        command = [sys.executable, "-c", WORKER, str(config), str(run), str(directory / f"weights-{index}.npz")]
        workers.append(module_processes.start(command, environment(scratch, TF_CONFIG=tf_config),
                                              directory / f"worker-{index}.log"))
    for index, worker in enumerate(workers):
        worker.wait(timeout=WAIT_SECONDS)
        assert worker.returncode == 0, last_lines(directory / f"worker-{index}.log")
    weights = [np.load(directory / f"weights-{index}.npz") for index in range(2)]
    return run, scratch, [[file[name] for name in file.files] for file in weights]


def test_two_workers_train_like_one_worker_with_the_same_global_batch(task, two_workers, tmp_path):
    from translator.training.trainer import Trainer

    directory, data, _ = task
    run, scratch, (chief_weights, other_weights) = two_workers
    # Both workers end with the very same weights (they apply the same all-reduced gradients).
    assert len(chief_weights) == len(other_weights) > 0
    for chief, other in zip(chief_weights, other_weights):
        np.testing.assert_array_equal(chief, other)

    # One worker on whole global batches: the same losses after every epoch. The two workers sum
    # the gradients of their halves of each batch, one device sums over the whole batch; float32
    # sums in another order round differently (about 1e-7 relative per step, growing over the
    # steps), so the figures must agree to 1e-4 relative and the weights and optimizer moments to
    # 1e-4 (measured: log.csv equal to its 5 decimals, tensors within 1.9e-6 after 78 steps).
    single = write_config(tmp_path, data, training=TRAINING, name="single")
    Trainer(single, tmp_path / "single", log=lambda *a: None).train()
    one, two = read_log(tmp_path / "single"), read_log(run)
    assert [row["step"] for row in one] == [row["step"] for row in two]
    for row_one, row_two in zip(one, two):
        for key in ("train_loss", "validation_loss"):
            assert float(row_two[key]) == pytest.approx(float(row_one[key]), rel=1e-4), (key, row_one, row_two)
    alone, together = checkpointed_tensors(tmp_path / "single"), checkpointed_tensors(run)
    assert alone.keys() == together.keys()
    for name in alone:
        np.testing.assert_allclose(together[name], alone[name], atol=1e-4, err_msg=name)

    # The chief alone wrote the run directory: the files a one-process run writes, nothing more;
    # the other worker's checkpoints went to its temporary folder, which it emptied.
    def files(path):
        return sorted(str(file.relative_to(path)) for file in path.rglob("*") if "tensorboard" not in file.parts)

    assert files(run) == files(tmp_path / "single")
    assert len(list((run / "tensorboard").rglob("*.v2"))) == 1  # one event file: the chief's
    assert leftovers(scratch) == []


def launcher_command(config: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "translator", "train", str(config), "--run", str(run), "--workers", "2"]


@pytest.mark.parametrize("victim", [0, 1], ids=["chief", "other-worker"])
def test_a_worker_killed_mid_epoch_restarts_to_the_weights_of_an_uninterrupted_run(task, two_workers, victim,
                                                                                   processes, tmp_path):
    _, _, config = task
    reference, _, _ = two_workers
    total_steps = int(read_log(reference)[-1]["step"])
    per_epoch = total_steps // TRAINING["epochs"]
    run, output = tmp_path / "run", tmp_path / "launcher.log"
    launcher = processes.start(launcher_command(config, run), environment(tmp_path / "scratch"), output)
    deadline = time.time() + WAIT_SECONDS
    while time.time() < deadline and "pids" not in output.read_text(errors="replace"):
        time.sleep(0.1)
    started = [line for line in output.read_text(errors="replace").splitlines() if "pids" in line]
    assert started, last_lines(output)
    pids = [int(pid) for pid in started[0].split("pids ")[1].split(" (")[0].split(", ")]
    for pid in pids:
        processes.adopt(pid, run)

    while time.time() < deadline:  # a checkpoint in the middle of an epoch after the first
        saved = saved_state(run)
        if saved and per_epoch < saved[0]["step"] < total_steps - TRAINING["checkpoint_every"] \
                and saved[0]["batches_done"]:
            break
        time.sleep(0.1)
    assert launcher.poll() is None, f"the run ended before it could be interrupted:\n{last_lines(output)}"
    os.kill(pids[victim], signal.SIGKILL)
    launcher.wait(timeout=WAIT_SECONDS)
    log = output.read_text(errors="replace")
    assert not (run / "model.keras").exists(), "the run finished before it could be interrupted"
    assert launcher.returncode == 2, last_lines(output)
    assert f"worker {victim} (pid {pids[victim]}) exited with status -9, so the other workers were stopped" in log
    for pid in pids:  # the launcher stopped the other worker and waited for it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    # The same command again: both workers resume from the chief's last checkpoint.
    resumed = subprocess.run(launcher_command(config, run), env=environment(tmp_path / "scratch"),
                             capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resumed_from = int(resumed.stdout.split("resuming")[1].split("from step ")[1].split(" ")[0].replace(",", ""))
    assert per_epoch < resumed_from < total_steps
    epoch, batch = divmod(resumed_from, per_epoch)
    assert f"(epoch {epoch + 1}, batch {batch} of {per_epoch})" in resumed.stdout

    # The same weights, optimizer state and step as the uninterrupted run, to the last bit: the
    # same global batches in the same order, each worker the same rows of each.
    state, iterations = saved_state(run)
    assert state["finished"] and state["step"] == iterations == total_steps
    uninterrupted, restarted = checkpointed_tensors(reference), checkpointed_tensors(run)
    assert uninterrupted.keys() == restarted.keys()
    for name in uninterrupted:
        np.testing.assert_array_equal(restarted[name], uninterrupted[name], err_msg=name)
    # The killed worker's leftovers (if it was the other worker) were deleted when it restarted.
    assert leftovers(tmp_path / "scratch") == []


# ----------------------------------------------------------------------------- set-up errors

@pytest.mark.parametrize("tf_config, message", [
    ("{cluster", r"TF_CONFIG is not valid JSON .*; set it like \{\"cluster\""),
    ('{"task": {"type": "worker", "index": 0}}', r"TF_CONFIG has no 'cluster.worker' list"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}',
     r"'cluster.ps': MultiWorkerMirroredStrategy trains with 'chief' and 'worker' tasks only"),
    ('{"cluster": {"worker": "a:1,b:2"}, "task": {"type": "worker", "index": 0}}',
     r"'cluster.worker' is 'a:1,b:2'; expected a list of host:port addresses"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}',
     r"'task.type' is 'chief'; expected one of \['worker'\]"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     r"'task.index' is 2; expected this worker's position in 'cluster.worker', 0 to 1"),
])
def test_a_bad_tf_config_is_an_error_naming_the_field(tf_config, message, monkeypatch):
    from translator.training.distributed import ClusterError, check_tf_config

    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ClusterError, match=message):
        check_tf_config()


def test_workers_need_the_multi_worker_strategy_and_a_positive_count(task, tmp_path, capsys):
    from translator.cli import main

    _, data, config = task
    single = write_config(tmp_path, data, training=TRAINING, name="single")
    assert main(["train", str(single), "--run", str(tmp_path / "run"), "--workers", "2"]) == 2
    assert "--workers 2 trains with training.strategy: multi_worker, but" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["train", str(config), "--run", str(tmp_path / "run"), "--workers", "0"])
    assert exit.value.code == 2
    assert "argument --workers: value must be a positive integer; got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_replica_whose_shard_of_a_batch_is_empty_adds_nothing(tmp_path):
    """Batches of one sentence on two replicas: the second replica's shard of every batch has no
    rows, and the run trains as one device does."""
    from translator.training.trainer import Trainer

    data = make_task(tmp_path, "few", {"train": reversal_pairs(40, 7), "validation": reversal_pairs(20, 8),
                                       "test": reversal_pairs(5, 9)})
    training = {"epochs": 1, "max_batch_size": 1, "bleu_every": 0}
    single = write_config(tmp_path, data, training=training, name="single")
    mirrored = write_config(tmp_path, data, training={**training, "strategy": "mirrored"}, name="mirrored")
    Trainer(single, tmp_path / "single", log=lambda *a: None).train()
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(mirrored), str(tmp_path / "mirrored")],
                            capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = read_log(tmp_path / "single")[-1], read_log(tmp_path / "mirrored")[-1]
    assert one["step"] == two["step"] == "40"
    assert float(two["validation_loss"]) == pytest.approx(float(one["validation_loss"]), rel=1e-4)
