"""A quiet start for the `translator` command: TensorFlow's C++ log lines kept off stderr.

Importing TensorFlow 2.21 on a CPU machine writes lines like these to stderr, before any of
our code has run:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796614632.869383    2381 port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:1796614632.871016    2381 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I0000 00:00:1796614632.930717    2381 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...
    To enable the following instructions: AVX2 AVX512F ... FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
    E0000 00:00:1796614636.159581    2381 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...
    E0000 00:00:1796614636.603787    2381 util.cc:131] oneDNN supports DT_BOOL only on platforms with AVX-512. ...

A newcomer reads them as errors; none is. TF_CPP_MIN_LOG_LEVEL=2 or 3 does not remove them
all (measured): the port.cc and cudart_stub.cc lines are absl log lines written before
absl::InitializeLog() is called, and those bypass TensorFlow's level filter. So `quiet`
filters the process's file descriptor 2 itself: fd 2 becomes a pipe, and a thread copies what
arrives to the real stderr, line by line, leaving out only the lines `is_noise` names. Python
tracebacks, our own messages and every other E or F line (a real error) pass unchanged, and
at once: a partial line (a progress counter written with "\\r", the last words before exit)
is not held back for its newline.

`translator --verbose ...` or TRANSLATOR_VERBOSE=1 leaves stderr alone. Only the console entry
point (`translator.cli.console`) calls `quiet`; `translator.cli.main(...)` from Python or
pytest never touches fd 2. Child processes inherit fd 2, the pipe: their lines are filtered as
well while this process lives.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import select
import sys
import threading
import time

# absl/glog format: severity, MMDD, hh:mm:ss.micros, thread id, file:line] message. Before
# absl::InitializeLog the date is 0000 and the time 00:00: plus the seconds since 1970.
ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ ([^:\s\]]+):\d+\] (.*)")
# TensorFlow's own format before it moved to absl (the tensorflow>=2.16 we allow may print it):
# "2025-10-23 20:10:14.061667: E tensorflow/core/util/util.cc:131] message"
OLD_TF_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) ([^:\s\]]+):\d+\] (.*)")

ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"

# The second line of cpu_feature_guard.cc's INFO message (a line of its own, without the prefix).
CPU_FEATURES_PREFIX = "To enable the following instructions: "
CPU_FEATURES_SUFFIX = "rebuild TensorFlow with the appropriate compiler flags."


def _no_nvidia_gpu() -> bool:
    """No NVIDIA device file: /dev/nvidia0... on Linux and in containers, /dev/dxg under WSL."""
    return not glob.glob("/dev/nvidia[0-9]*") and not os.path.exists("/dev/dxg")


# E lines known to be harmless, as (source file, start of the message, when it is harmless).
# Every other E line is kept.
HARMLESS_ERRORS = (
    # The `tensorflow` wheel probes CUDA at import; on a machine without an NVIDIA GPU that fails,
    # and TensorFlow runs on the CPU as it should. Where a GPU is present, a failing cuInit is a
    # real problem (a driver that does not match, say), and the line is kept.
    ("cuda_platform.cc", "failed call to cuInit", _no_nvidia_gpu),
    # oneDNN hands an op on booleans (the transpose of a padding mask) back to TensorFlow's own
    # Eigen kernel, with the same results; printed once per process, at E level though nothing
    # is wrong.
    ("util.cc", "oneDNN supports DT_BOOL only", lambda: True),
)

VERBOSE_ENVIRONMENT = "TRANSLATOR_VERBOSE"
HOLD_SECONDS = 0.05  # how long the start of a line that may be a log line waits for its end
JOIN_SECONDS = 1.0  # the longest exit waits for the reader (a child may go on writing to the pipe)


def is_noise(line: str) -> bool:
    """Whether `line` (with or without its newline) is one of TensorFlow's C++ log lines that
    the command leaves out: severity I or W, the absl preamble, the CPU-features continuation,
    or an E line of HARMLESS_ERRORS."""
    line = line.rstrip("\r\n")
    if line == ABSL_PREAMBLE:
        return True
    if line.startswith(CPU_FEATURES_PREFIX) and line.endswith(CPU_FEATURES_SUFFIX):
        return True
    match = ABSL_LINE.match(line) or OLD_TF_LINE.match(line)
    if match is None:
        return False
    severity, source, message = match.groups()
    if severity in "IW":
        return True
    if severity == "E":
        source = source.rsplit("/", 1)[-1]
        return any(source == file and message.startswith(start) and harmless()
                   for file, start, harmless in HARMLESS_ERRORS)
    return False  # F: TensorFlow is about to abort, and says why


# The start of a line that may still turn into a noise line: held back (HOLD_SECONDS at most)
# for the rest of it. Anything else passes at once. A C++ log line comes in one write, so this
# rarely waits; and holding a line back only delays it.
_LOG_LINE_START = re.compile(r"[IWEF]$|[IWEF]?\d")


def _may_become_noise(start: str) -> bool:
    return bool(ABSL_PREAMBLE.startswith(start) or CPU_FEATURES_PREFIX.startswith(start)
                or start.startswith(CPU_FEATURES_PREFIX) or _LOG_LINE_START.match(start))


def verbose_requested(argv=None) -> bool:
    """``translator --verbose ...`` (before the command, as argparse wants it; an abbreviation
    argparse accepts counts too) or TRANSLATOR_VERBOSE set to anything but "" and "0"."""
    if os.environ.get(VERBOSE_ENVIRONMENT, "") not in ("", "0"):
        return True
    for argument in sys.argv[1:] if argv is None else argv:
        if not argument.startswith("-") or argument == "--":
            break  # the command: what follows is its own
        if len(argument) >= len("--verb") and "--verbose".startswith(argument):
            return True
    return False


class _Filter:
    """fd 2 as a pipe, and the thread that copies it to the real stderr without the noise."""

    def __init__(self):
        self.pid = os.getpid()
        sys.stderr.flush()
        self.stderr = os.dup(2)  # the real stderr; not inherited by child processes
        self.read_end, write_end = os.pipe()
        os.dup2(write_end, 2)  # fd 2 is now the pipe's only write end (children inherit it)
        os.close(write_end)
        self.wake_read, self.wake_write = os.pipe()  # `close` writes to it: stop when drained
        self.thread = threading.Thread(target=self._copy, name="native-log-filter", daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.stderr, data):]
            except OSError:  # the real stderr is gone (a closed terminal): nothing to do
                return

    def _copy(self) -> None:
        pending = b""  # the start of a line that may be noise, not written yet
        deadline = 0.0  # when `pending` is written anyway
        passing = False  # the start of the current line was written: the rest of it follows
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if pending else None
            ready, _, _ = select.select([self.read_end, self.wake_read], [], [], timeout)
            if not ready:  # `pending` waited long enough
                self._write(pending)
                pending, passing = b"", True
                continue
            if self.read_end not in ready:  # asked to stop, and nothing is left to copy
                self._write(pending)
                return
            data = os.read(self.read_end, 65536)
            if not data:  # every write end is closed
                self._write(pending)
                return
            *lines, rest = (pending + data).split(b"\n")
            out = []
            for line in lines:
                if passing or not is_noise(line.decode("utf-8", "replace")):
                    out.append(line + b"\n")
                passing = False
            if rest and (passing or not _may_become_noise(rest.decode("utf-8", "replace"))):
                out.append(rest)
                rest, passing = b"", True
            if rest and (lines or not pending):  # a new line begins to wait
                deadline = time.monotonic() + HOLD_SECONDS
            pending = rest
            self._write(b"".join(out))

    def close(self) -> None:
        """Give fd 2 back to the real stderr and let the thread write what is left."""
        if os.getpid() != self.pid:  # a forked child: the pipe is the parent's business
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.stderr, 2)  # from here on this process writes to the real stderr
        os.write(self.wake_write, b"x")
        # A child process that still holds the pipe (and writes to it) cannot keep us waiting.
        self.thread.join(JOIN_SECONDS)


_active: _Filter | None = None


def quiet(argv=None) -> bool:
    """Filter TensorFlow's C++ log lines out of this process's stderr (fd 2), unless
    `verbose_requested`. Call before TensorFlow is imported; `restore` (also run at exit)
    undoes it. Returns whether the filter is on."""
    global _active
    if _active is not None:
        return True
    if verbose_requested(argv):
        return False
    # TensorFlow then leaves out its I and W lines after absl::InitializeLog itself; the filter
    # drops the rest. A value the user set stays. (Child processes inherit both.)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _active = _Filter()
    atexit.register(restore)
    return True


def restore() -> None:
    """Write out what the filter holds and give fd 2 back to the real stderr. Call before
    os._exit, which skips atexit; safe to call more than once."""
    global _active
    if _active is not None:
        active, _active = _active, None
        active.close()
