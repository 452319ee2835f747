"""The suite's results file (cached entries, saved after each), its clock,
and the machine and versions it records."""

import datetime
import json
import math
import os
import sys
import platform
import subprocess
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Results:
    """The suite's JSON, saved atomically after every finished entry."""

    def __init__(self, path, data):
        self.path = path
        self.data = data

    @classmethod
    def open(cls, path, suite, budget, models, command, fresh=False):
        data = None
        if os.path.exists(path) and not fresh:
            with open(path) as f:
                data = json.load(f)
            if budget_key(data.get("budget")) != budget_key(jsonable(budget)):
                print(f"{path} holds another budget; starting over.")
                data = None
        if data is None:
            data = {
                "suite": suite,
                "budget": jsonable(budget),
                "started": now(),
                "models": {},
                "skipped": [],
            }
        data["budget"] = jsonable(budget)
        data["command"] = command
        data["models_requested"] = list(models)
        data.setdefault("runs", []).append(
            {"started": now(), "machine": machine_info(), "command": command}
        )
        data["versions"] = versions()
        data["skipped"] = []
        results = cls(path, data)
        results.save()
        return results

    def get(self, *keys):
        node = self.data
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def put(self, value, *keys):
        node = self.data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = jsonable(value)
        self.save()

    def save(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=False)
        os.replace(tmp, self.path)


def budget_key(budget):
    """The budget figures a resumed run must share: not which models or
    seeds it runs (each run is kept under its model and seed), nor its
    deadline."""
    return {k: v for k, v in (budget or {}).items()
            if k not in ("models", "seeds", "deadline_minutes")}


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")


class Clock:
    """Wall time since the start, the deadline, and progress lines."""

    def __init__(self, deadline_minutes):
        self.start = time.time()
        self.deadline = deadline_minutes * 60

    def elapsed(self):
        return time.time() - self.start

    def past_deadline(self):
        return self.elapsed() > self.deadline

    def log(self, message):
        minutes, seconds = divmod(int(self.elapsed()), 60)
        print(f"[{minutes:3d}:{seconds:02d}] {message}", flush=True)


def cached(results, clock, keys, compute, optional=True):
    """Returns the cached entry at `keys`, else computes and stores it.

    Optional entries that would start after the deadline are skipped and
    listed in `results.data["skipped"]`.
    """
    value = results.get(*keys)
    if value is not None:
        clock.log(f"cached: {'/'.join(map(str, keys))}")
        return value
    if optional and clock.past_deadline():
        results.data["skipped"].append(
            {"entry": "/".join(map(str, keys)),
             "reason": "would start after the wall-clock deadline"})
        results.save()
        clock.log(f"skipped (deadline): {'/'.join(map(str, keys))}")
        return None
    clock.log(f"start: {'/'.join(map(str, keys))}")
    started = time.time()
    value = compute()
    if isinstance(value, dict):
        value.setdefault("wall_seconds", round(time.time() - started, 1))
    results.put(value, *keys)
    clock.log(f"done: {'/'.join(map(str, keys))} "
              f"({time.time() - started:.0f} s)")
    return results.get(*keys)


def machine_info():
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    gpus = nvidia_gpus()
    if gpus:
        info["gpus"] = gpus
    return info


def nvidia_gpus():
    """The names `nvidia-smi -L` lists (none where it is not installed)."""
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                                text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[1].split("(")[0].strip()
            for line in listed.splitlines() if line.startswith("GPU ")]


def versions():
    import keras
    import tensorflow as tf

    import mdnet_keras

    out = {
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "mdnet_keras": mdnet_keras.__version__,
    }
    for module, name in (("ai_edge_litert", "ai-edge-litert"),
                         ("tflite_micro", "tflite-micro")):
        try:
            from importlib import metadata

            out[module] = metadata.version(name)
        except Exception:
            out[module] = None
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
            text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "mdnet_keras", "benchmarks"],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout
        out["git_uncommitted"] = sorted(
            line[3:] for line in dirty.splitlines()
            if not line[3:].startswith("benchmarks/results"))
    except Exception:
        pass
    return out


def command_line(script, argv=None):
    """How `script` (a benchmark's `__file__`) was run: the command that
    repeats it, from the repository root."""
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python", f"benchmarks/{os.path.basename(script)}", *args])


def describe_machine(info):
    """One line of a `machine_info` dict: CPU, cores, load at the start."""
    gpus = "".join(f", {name}" for name in info.get("gpus", []))
    return (f"{info.get('cpu_model', info['machine'])}, {info['cpu_count']} "
            f"cores{gpus}, load average at the start "
            f"{info.get('load_average')}")


def publish(results, script, argv, out_dir, name, markdown):
    """Adds the command and the machine to `results`, then writes the JSON
    and `markdown(results)` (`write_report`); returns `results`."""
    results["command"] = command_line(script, argv)
    results["machine"] = machine_info()
    write_report(out_dir, name, results, markdown(results))
    return results


def write_report(out_dir, name, results, text):
    """Writes `<out_dir>/<name>.json` (the results) and `<name>.md` (`text`).

    Prints the Markdown too: a benchmark's last words are its table.
    """
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w",
              encoding="utf-8") as f:
        json.dump(jsonable(results), f, indent=1)
    with open(os.path.join(out_dir, f"{name}.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
