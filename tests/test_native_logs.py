"""The `translator` command keeps TensorFlow's C++ log lines off stderr (native_logs.py), and
only those: real errors, tracebacks and our own messages come through, partial lines at once."""

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from translator import native_logs
from translator.native_logs import is_noise, verbose_requested

REPOSITORY = Path(__file__).resolve().parent.parent

# What `import tensorflow` and a first op on booleans wrote on a CPU machine (TensorFlow 2.21).
PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = ("I0000 00:00:1796614632.869383    2381 port.cc:153] oneDNN custom operations are on. You may see "
          "slightly different numerical results due to floating-point round-off errors from different "
          "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.")
CUDART = ("I0000 00:00:1796614632.871016    2381 cudart_stub.cc:31] Could not find cuda drivers on your "
          "machine, GPU will not be used.")
CPU_GUARD = ("I0000 00:00:1796614632.930717    2381 cpu_feature_guard.cc:227] This TensorFlow binary is "
             "optimized to use available CPU instructions in performance-critical operations.")
CPU_GUARD_MORE = ("To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX512_FP16 "
                  "AVX_VNNI AMX_TILE AMX_INT8 AMX_BF16 FMA, in other operations, rebuild TensorFlow with the "
                  "appropriate compiler flags.")
CUINIT = ("E0000 00:00:1796614636.159581    2381 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
          "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
DT_BOOL = ("E0000 00:00:1796614636.603787    2381 util.cc:131] oneDNN supports DT_BOOL only on platforms "
           "with AVX-512. Falling back to the default Eigen-based implementation if present.")
# The same message in the format of TensorFlow before 2.19 or so.
OLD_DT_BOOL = ("2025-10-23 20:10:14.061667: E tensorflow/core/util/util.cc:131] oneDNN supports DT_BOOL "
               "only on platforms with AVX-512. Falling back to the default Eigen-based implementation if present.")
OLD_WARNING = "2025-10-23 20:10:14.061667: W tensorflow/core/framework/op_kernel.cc:1841] something"
NOISE = [PREAMBLE, ONEDNN, CUDART, CPU_GUARD, CPU_GUARD_MORE, DT_BOOL, OLD_DT_BOOL, OLD_WARNING]


HARMLESS_ERRORS = native_logs.HARMLESS_ERRORS


def _on_a_machine(monkeypatch, gpu: bool) -> None:
    """As if the machine had an NVIDIA GPU, or had none."""
    monkeypatch.setattr(native_logs, "HARMLESS_ERRORS", tuple(
        (file, start, (lambda: not gpu) if harmless is native_logs._no_nvidia_gpu else harmless)
        for file, start, harmless in HARMLESS_ERRORS))


def test_the_filter_drops_tensorflows_startup_lines_and_keeps_real_errors(monkeypatch):
    _on_a_machine(monkeypatch, gpu=False)
    for line in NOISE + [CUINIT]:
        assert is_noise(line) and is_noise(line + "\n"), line
    kept = [
        "Traceback (most recent call last):",
        '  File "/work/main/translator/cli.py", line 583, in main',
        "KeyError: 'source'",
        "E0000 00:00:1796614636.603787    2381 other.cc:1] real problem",
        "F0000 00:00:1796614636.603787    2381 port.cc:153] Check failed: a fatal one",
        "E0000 00:00:1796614636.603787    2381 util.cc:140] some other message of util.cc",
        "translator translate: using the export in runs/demo/export",
        "\rtranslated 1 lines (0.4 lines/s)",
        "WARNING: something else entirely",
        "To enable the following instructions: this is not TensorFlow's",
        "",
    ]
    for line in kept:
        assert not is_noise(line), line


def test_a_failing_cuinit_is_kept_where_there_is_a_gpu(monkeypatch):
    _on_a_machine(monkeypatch, gpu=True)
    assert not is_noise(CUINIT)
    _on_a_machine(monkeypatch, gpu=False)
    assert is_noise(CUINIT)
    monkeypatch.setattr(native_logs.glob, "glob", lambda pattern: ["/dev/nvidia0"])
    assert not native_logs._no_nvidia_gpu()


def test_verbose_is_a_global_flag_or_the_environment(monkeypatch):
    from translator.cli import build_parser

    monkeypatch.delenv("TRANSLATOR_VERBOSE", raising=False)
    assert verbose_requested(["--verbose", "translate", "--run", "r"])
    assert verbose_requested(["--debug", "--verb", "data", "x"])  # argparse takes the abbreviation too
    assert not verbose_requested(["translate", "--run", "--verbose"])  # an option's value, not ours
    assert not verbose_requested(["--ver"]) and not verbose_requested([])  # --ver: --version or --verbose
    monkeypatch.setenv("TRANSLATOR_VERBOSE", "0")
    assert not verbose_requested(["data", "x"])
    monkeypatch.setenv("TRANSLATOR_VERBOSE", "1")
    assert verbose_requested(["data", "x"])
    assert build_parser().parse_args(["--verbose", "data", "x"]).verbose
    assert "--verbose" in build_parser().format_help()


def test_main_called_from_python_leaves_stderr_alone(monkeypatch, capsys):
    from translator import cli

    before = os.fstat(2)
    monkeypatch.setattr(cli, "command_data", lambda args: 0)
    assert cli.main(["data", "multi30k-de-en"]) == 0
    after = os.fstat(2)
    assert native_logs._active is None and (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)


# A child that installs the filter, then writes in steps that the test waits for.
STEPS = """
import os, sys
from translator import native_logs
native_logs.quiet([])
os.write(2, b"translated 1 lines")  # a partial line: through at once
sys.stdin.readline()
os.write(2, b" and 2\\n" + NOISE + b"\\n" + HELD)  # HELD looks like a log line: through in a moment
sys.stdin.readline()
os.write(2, b"\\n" + NOISE + b"\\n" + b"the last words")  # no newline at the end
native_logs.restore()
os._exit(7)  # as `console` ends a translation
""".replace("NOISE", repr(ONEDNN.encode())).replace("HELD", repr(b"E0000 00:00:1.2    5 other.cc:1] half"))


def _read_until(stream, expected: bytes, seen: bytes, seconds=20.0) -> bytes:
    deadline = time.monotonic() + seconds
    while expected not in seen:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"waited {seconds} s for {expected!r}; got {seen!r}"
        chunk = os.read(stream.fileno(), 65536)
        assert chunk, f"stderr ended before {expected!r}; got {seen!r}"
        seen += chunk
    return seen


def test_partial_lines_come_through_at_once_and_nothing_is_lost_at_os_exit():
    environment = {**os.environ, "TRANSLATOR_VERBOSE": ""}
    child = subprocess.Popen([sys.executable, "-c", STEPS], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=environment, cwd=REPOSITORY)
    try:
        seen = _read_until(child.stderr, b"translated 1 lines", b"")
        child.stdin.write(b"\n")
        child.stdin.flush()
        seen = _read_until(child.stderr, b"half", seen)
        child.stdin.write(b"\n")
        child.stdin.close()
        seen += child.stderr.read()
        assert child.wait(timeout=20) == 7
    finally:
        child.kill()
    assert seen == b"translated 1 lines and 2\nE0000 00:00:1.2    5 other.cc:1] half\nthe last words"


# `translator data x` with a data command that runs a TensorFlow op on booleans (oneDNN's
# DT_BOOL line), writes a note of its own and fails: with --debug, the traceback reaches the
# interpreter, which prints it before the filter is flushed at exit.
CONSOLE = """
import sys
from translator import cli

def probe(args):
    import tensorflow as tf
    tf.transpose(tf.constant([[True, False]]))
    print("probe: a note of our own", file=sys.stderr)
    raise KeyError("a real problem")

cli.command_data = probe
sys.argv = ["translator", *sys.argv[1:], "data", "anything"]
cli.console()
"""


def _console(*flags, **environment):
    base = {key: value for key, value in os.environ.items()
            if key not in ("TF_CPP_MIN_LOG_LEVEL", "TRANSLATOR_VERBOSE", "TRANSLATOR_DEBUG")}
    done = subprocess.run([sys.executable, "-c", CONSOLE, "--debug", *flags], capture_output=True,
                          env={**base, **environment}, cwd=REPOSITORY, timeout=300)
    assert done.returncode == 1, done.stderr.decode()[-3000:]
    return done.stderr.decode("utf-8", "replace")


def _assert_real_errors_shown(err: str) -> None:
    assert "probe: a note of our own" in err, err
    assert "Traceback (most recent call last)" in err and "KeyError: 'a real problem'" in err, err


def test_the_command_shows_no_tensorflow_log_lines_but_real_errors():
    err = _console()
    _assert_real_errors_shown(err)
    assert not [line for line in err.splitlines() if is_noise(line)], err
    for marker in ("absl::InitializeLog", "port.cc", "cudart_stub.cc", "cpu_feature_guard", "DT_BOOL",
                   "To enable the following instructions"):
        assert marker not in err, err


@pytest.mark.parametrize("how", ["--verbose", "TRANSLATOR_VERBOSE=1"])
def test_verbose_brings_the_log_lines_back(how):
    err = _console(how) if how.startswith("--") else _console(TRANSLATOR_VERBOSE="1")
    _assert_real_errors_shown(err)
    assert [line for line in err.splitlines() if is_noise(line)], err  # TensorFlow's lines are back


# A child process that outlives the command holds the pipe open: the command's exit must not wait.
OUTLIVED = """
import subprocess, sys
from translator import native_logs
native_logs.quiet([])
sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.DEVNULL)
print(sleeper.pid)
print("parent done", file=sys.stderr)
raise SystemExit(3)
"""


def test_a_child_that_outlives_the_command_does_not_hold_up_its_exit():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", OUTLIVED], capture_output=True, timeout=60, cwd=REPOSITORY,
                          env={**os.environ, "TRANSLATOR_VERBOSE": ""})
    seconds = time.monotonic() - started
    os.kill(int(done.stdout), 9)
    assert done.returncode == 3 and done.stderr == b"parent done\n" and seconds < 10, (seconds, done.stderr)
