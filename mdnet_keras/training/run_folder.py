"""The run folder: its state, the resume check, and the history it keeps.

See `mdnet_keras.training.run` for what a run folder holds.
"""

import csv
import dataclasses
import json
import logging
import os
import shutil
import socket
import time

import numpy as np

from mdnet_keras.training import evaluation

logger = logging.getLogger(__name__)


MONITOR = "val_top1"


# Held by the process training in the folder (multi-worker runs, whose
# processes share the folder, take none).
LOCK_FILE = "run.lock"
# Keys that may differ between the run on disk and a resuming call (steps
# per compiled call change when, not what, the same steps train: a run
# started on a CPU may resume on a GPU).
RESUME_FREE_KEYS = ("overwrite", "verbose", "out", "workers",
                    "time_budget_minutes", "steps_per_execution")
# Options added after runs were written: a config.json without one ran as
# this value (so such a run resumes when the option is given that value).
ADDED_OPTIONS = {"bn_recalibration_batches": 0}


class RunFolderError(ValueError):
    """The output folder cannot be used for this run (the message says why)."""


def default_out_dir(config, root="runs"):
    """`runs/<dataset>-<model>`, or the first `-2`, `-3`... not finished."""
    base = os.path.join(root, f"{config.dataset}-{config.model}")
    candidate, number = base, 1
    while run_state(candidate) == "finished" and not config.overwrite:
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def run_state(out):
    """`None` (no run), `"running"` (unfinished), `"finished"`, `"diverged"`."""
    path = os.path.join(out, "status.json")
    if not os.path.exists(path):
        if os.path.exists(os.path.join(out, "config.json")):
            return "running"
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("state", "running")
    except (OSError, ValueError):
        return "running"


def write_status(out, state, **extra):
    evaluation.write_json(os.path.join(out, "status.json"),
                          dict(state=state, time=time.time(), **extra))


def prepare_run_folder(config):
    """Checks `config.out` and says whether the run resumes.

    Returns:
        bool, True when an unfinished run of the same configuration is there.

    Raises:
        RunFolderError: a finished run without `overwrite`, another run's
            configuration, or a non-empty folder that is not a run folder.
    """
    out = config.out
    if not os.path.exists(out):
        try:
            # exist_ok: the workers of a multi-worker run start together and
            # may all find the folder missing; one of them creates it first.
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"Cannot create --out={out}: {e.strerror}. "
                                 "Choose a folder you can write to.") from None
        return False
    if not os.path.isdir(out):
        raise RunFolderError(f"--out={out} exists and is not a folder.")
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out={out} is not writable. Choose a folder "
                             "you can write to.")
    if config.strategy != "multi_worker":
        check_unlocked(out)
    entries = [e for e in os.listdir(out) if e != LOCK_FILE]
    if not entries:
        return False
    config_path = os.path.join(out, "config.json")
    if not os.path.exists(config_path):
        raise RunFolderError(
            f"--out={out} is not empty and holds no training run "
            "(no config.json); nothing there is deleted. Choose a new or "
            "empty folder."
        )
    state = run_state(out)
    if config.overwrite and config.strategy == "multi_worker":
        # Every worker runs this: one would delete what another just wrote.
        raise RunFolderError(
            f"--overwrite with --strategy=multi_worker: every worker would "
            f"delete the run folder the others write. Delete {out} once before "
            "starting the workers, and run them without --overwrite.")
    if config.overwrite:
        logger.warning("--overwrite: deleting the run in %s", out)
        shutil.rmtree(out)
        os.makedirs(out)
        return False
    if state == "finished":
        raise RunFolderError(
            f"--out={out} already holds a finished run (see "
            f"{os.path.join(out, 'metrics.json')}). Pass --overwrite to "
            "replace it, or choose another --out."
        )
    with open(config_path, encoding="utf-8") as f:
        previous = json.load(f).get("config", {})
    previous = {**ADDED_OPTIONS, **previous}
    current = json.loads(json.dumps(dataclasses.asdict(config)))
    differing = sorted(
        key for key in set(previous) | set(current)
        if key not in RESUME_FREE_KEYS and previous.get(key) != current.get(key)
    )
    if differing:
        details = ", ".join(
            f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in differing
        )
        raise RunFolderError(
            f"--out={out} holds an unfinished run with another configuration "
            f"({details}). Re-run with the same flags to resume it, pass "
            "--overwrite to replace it, or choose another --out."
        )
    return True


def trim_history(path, start_epoch):
    """Keeps the rows of epochs `< start_epoch`; returns them as dicts."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = list(reader)
    kept = []
    for row in rows:
        try:
            if int(float(row["epoch"])) < start_epoch:
                kept.append(row)
        except (KeyError, TypeError, ValueError):
            continue
    if len(kept) != len(rows) or not start_epoch:
        tmp = f"{path}.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if kept and fields:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)
        os.replace(tmp, path)
        if not kept:
            os.remove(path)
    return kept


def best_so_far(out, rows):
    values = []
    for row in rows:
        try:
            values.append(float(row[MONITOR]))
        except (KeyError, TypeError, ValueError):
            pass
    path = os.path.join(out, "best.json")
    if os.path.exists(path) and os.path.exists(os.path.join(out, "best.keras")):
        try:
            with open(path, encoding="utf-8") as f:
                values.append(float(json.load(f)[MONITOR]))
        except (OSError, ValueError, KeyError):
            pass
    values = [v for v in values if np.isfinite(v)]
    return max(values) if values else None


def last_history_epoch(out):
    path = os.path.join(out, "history.csv")
    if not os.path.exists(path):
        return 0
    epochs = evaluation.read_history(path).get("epoch", [])
    return int(max(epochs)) + 1 if epochs else 0


def backup_epoch(out):
    """The epoch a re-run resumes from: the latest `backup_*/` of `out`."""
    epochs = [0]
    for name in os.listdir(out) if os.path.isdir(out) else ():
        path = os.path.join(out, name, "training_metadata.json")
        if name.startswith("backup_") and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    epochs.append(int(json.load(f)["epoch"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return max(epochs)


def lock_holder(out):
    """The `run.lock` record of `out` (pid, host, time), or None."""
    try:
        with open(os.path.join(out, LOCK_FILE), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def holder_alive(holder):
    """Whether the lock's process still runs (assumed so on another host)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


def check_unlocked(out):
    """Raises `RunFolderError` while another live run holds `out`'s lock.

    A lock left by a killed run (its process gone) is removed.
    """
    holder = lock_holder(out)
    if holder is None:
        return
    if holder and not holder_alive(holder):
        os.remove(os.path.join(out, LOCK_FILE))
        print(f"Removed the lock of a run that no longer runs (pid "
              f"{holder.get('pid')}).")
        return
    started = (time.ctime(holder["time"]) if isinstance(holder.get("time"),
                                                         (int, float))
               else "?")
    raise RunFolderError(
        f"--out={out} is in use by another training (pid "
        f"{holder.get('pid', '?')} on {holder.get('host', '?')}, started "
        f"{started}). Wait for it, choose another --out, or delete "
        f"{os.path.join(out, LOCK_FILE)} if that run is gone.")


def acquire_lock(out):
    """Creates `out/run.lock` for this process, atomically.

    Raises:
        RunFolderError: another live run holds it.
    """
    path = os.path.join(out, LOCK_FILE)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            check_unlocked(out)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "time": time.time()}, f)
        return
    check_unlocked(out)


def release_lock(out):
    """Removes `out/run.lock` if this process holds it."""
    holder = lock_holder(out)
    if holder and holder.get("pid") == os.getpid() and \
            holder.get("host") == socket.gethostname():
        os.remove(os.path.join(out, LOCK_FILE))
