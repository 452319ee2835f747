"""Keeps TensorFlow's and LiteRT's log lines out of the command-line output.

TensorFlow 2.21 logs through absl's C++ logger, which prints to stderr before
anything initialises it, so `TF_CPP_MIN_LOG_LEVEL` no longer hides its start-up
lines (oneDNN, cpu_feature_guard) nor the converter's; they print while
`import mdnet_keras` imports Keras, before a command runs. The commands
therefore filter file descriptor 2 itself: every stderr line passes through
a thread that drops the lines in the log formats below and forwards all else
(errors, warnings of this package, tracebacks) unchanged. A bare `--verbose`
on the command line turns the filter off.

A process that must end with `os._exit` (a multi-worker run whose TensorFlow
runtime can hang at a normal exit) ends through `exit_now`, which lets the
thread forward what it holds first; writers that cannot wait for that
thread (faulthandler, which writes while no Python thread may run) write to
`stderr_fd()`, the real standard error.

Example:

```python
from mdnet_keras import tf_logs

tf_logs.hide()  # from here on, stderr loses TensorFlow's I/W log lines
```
"""

import atexit
import os
import re
import sys
import threading

# absl's line format, C++ and Python alike: severity, date, time, thread,
# file:line]. Only INFO and WARNING are dropped: ERROR and FATAL lines stay.
_ABSL_LINE = re.compile(rb"^[IW]\d{4} [\d:.]+\s+\d+ [^\]\s]+:\d+\] ")
# Lines TensorFlow and LiteRT print without that prefix.
_OTHER_LINES = (
    b"WARNING: All log messages before absl::InitializeLog()",
    b"To enable the following instructions:",  # cpu_feature_guard, 2nd line
    b"INFO: Created TensorFlow Lite XNNPACK delegate",
    b"INFO:tensorflow:",
    b"WARNING:tensorflow:",
    b"fully_quantize: ",  # the int8 calibrator's summary line
)

_state = {}


def is_log_line(line):
    """True for a TensorFlow / LiteRT log line (bytes) that `hide` drops."""
    return bool(_ABSL_LINE.match(line)) or line.startswith(_OTHER_LINES)


def wants_logs(argv):
    """True when the command line holds a bare `--verbose` (the switch the
    launcher takes for every command; `train --verbose=N`, Keras' fit
    verbosity, is another flag and leaves the logs hidden)."""
    return "--verbose" in argv[1:]


def is_command_line(argv):
    """True when this process is `python -m mdnet_keras` or `mdnet-keras`.

    While `python -m` imports the package of the module it runs, `argv[0]`
    is "-m"."""
    return bool(argv) and (argv[0] == "-m"
                           or os.path.basename(argv[0]) == "mdnet-keras")


def hide():
    """Starts filtering stderr (fd 2) for the rest of the process; idempotent."""
    if _state:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        pending = b""
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            kept = b"".join(line + b"\n" for line in lines
                            if not is_log_line(line))
            if kept:
                os.write(original, kept)
        if pending and not is_log_line(pending):
            os.write(original, pending)
        os.close(read_end)

    thread = threading.Thread(target=forward, name="tf_logs", daemon=True)
    thread.start()
    _state.update(original=original, thread=thread)
    atexit.register(restore)


def restore():
    """Stops the filter: stderr writes to the original fd 2 again, after the
    thread has forwarded everything written before."""
    if not _state:
        return
    sys.stderr.flush()
    os.dup2(_state["original"], 2)  # closes the pipe's last write end here
    _state["thread"].join(timeout=5)
    # The saved descriptor stays open: faulthandler may have been given it
    # (`stderr_fd`), and a closed number could be reused by another file.
    _state.clear()


def stderr_fd():
    """The descriptor of the process's real standard error: the one `hide`
    saved while the filter runs, else 2."""
    return _state.get("original", 2)


def exit_now(status, message=None):
    """Ends the process with `os._exit(status)` without losing its output.

    Python's streams are flushed and the filter forwards what it holds (a
    bare `os._exit` would drop the lines still in its pipe), then `message`,
    if any, goes straight to the real standard error.

    Args:
        status: int, the exit status.
        message: optional str, a last line for standard error.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing to keep
            pass
    restore()
    if message is not None:
        os.write(2, message.encode(errors="backslashreplace") + b"\n")
    os._exit(status)


def hide_for_command_line(argv=None):
    """`hide()` when this process is the command line and no `--verbose`."""
    argv = sys.argv if argv is None else argv
    if is_command_line(argv) and not wants_logs(argv):
        hide()
