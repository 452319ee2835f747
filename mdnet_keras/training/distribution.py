"""Distributed training with the backends' own engines.

`tf.distribute` (`MirroredStrategy`, `MultiWorkerMirroredStrategy` from
`TF_CONFIG`) under TensorFlow, `keras.distribution.DataParallel` under JAX;
and `PeerWatchdog`, which stops a multi-worker run whose peer died with a
`WorkerLostError` instead of letting the others wait for it.
"""

import contextlib
import faulthandler
import json
import os
import re
import sys
import threading

import keras

from mdnet_keras import tf_logs
from mdnet_keras.training import run_folder

# How TensorFlow names a task in its errors.
TASK_PATTERN = re.compile(r"/job:\w+/replica:\d+/task:\d+")


class WorkerLostError(RuntimeError):
    """A worker of a multi-worker run stopped; the others cannot go on."""


def set_up_distribution(strategy):
    """Returns `(make_scope, num_replicas, is_chief)` for `strategy`.

    `make_scope()` returns a fresh context manager each time (a strategy's
    scope can be entered once per object).

    TensorFlow: `tf.distribute.MirroredStrategy` over the GPUs (else over
    every logical CPU device, e.g. the CPU split in two), or
    `MultiWorkerMirroredStrategy` from `TF_CONFIG`. JAX:
    `keras.distribution.DataParallel` over all devices (`multi_worker`
    first calls `keras.distribution.initialize()` from the
    `KERAS_DISTRIBUTION_*` variables, for one process:
    `check_multi_worker_environment` refuses more).
    """
    backend = keras.backend.backend()
    if strategy == "none":
        return contextlib.nullcontext, 1, True
    if strategy == "multi_worker":
        check_multi_worker_environment(backend)
    if backend == "tensorflow":
        import tensorflow as tf

        if strategy == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in
                       (gpus or tf.config.list_logical_devices("CPU"))]
            dist = tf.distribute.MirroredStrategy(devices=devices)
            return dist.scope, dist.num_replicas_in_sync, True
        dist = multi_worker_strategy()
        resolver = dist.cluster_resolver
        task_type, task_id = resolver.task_type, resolver.task_id
        chief = task_type == "chief" or (
            task_type == "worker" and task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())
        return dist.scope, dist.num_replicas_in_sync, chief
    if backend == "jax":
        if strategy == "multi_worker":
            keras.distribution.initialize()
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices))
        import jax

        return contextlib.nullcontext, len(devices), jax.process_index() == 0
    raise ValueError(
        f"--strategy={strategy} needs the TensorFlow or JAX backend; this "
        f"is {backend}. Use --strategy=none."
    )


def check_multi_worker_environment(backend):
    """Raises a clear error when the cluster description is missing."""
    if backend == "tensorflow":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment "
                "variable on every worker, e.g. TF_CONFIG='{\"cluster\": "
                "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": "
                "{\"type\": \"worker\", \"index\": 0}}'. Without it "
                "MultiWorkerMirroredStrategy silently trains one replica. "
                "Use --strategy=mirrored for the devices of one machine."
            )
        try:
            spec = json.loads(raw)
            spec["cluster"], spec["task"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                "TF_CONFIG must be JSON with 'cluster' and 'task' keys. "
                f"Received: {raw!r}"
            ) from e
    elif backend == "jax":
        needed = ("KERAS_DISTRIBUTION_JOB_ADDRESSES",
                  "KERAS_DISTRIBUTION_NUM_PROCESSES",
                  "KERAS_DISTRIBUTION_PROCESS_ID")
        missing = [name for name in needed if not os.environ.get(name)]
        if missing:
            raise ValueError(
                "--strategy=multi_worker under JAX needs "
                f"{', '.join(needed)} on every process (see "
                "keras.distribution.initialize); missing: "
                f"{', '.join(missing)}. Use --strategy=mirrored for the "
                "devices of one machine."
            )
        processes = os.environ["KERAS_DISTRIBUTION_NUM_PROCESSES"]
        if processes.strip() != "1":
            # Keras' multi-process DataParallel takes only a tf.data input
            # it shards itself, or a per-process shard of each batch, which
            # ImageBatches does not make; and predictions would have to be
            # gathered across processes.
            raise ValueError(
                f"KERAS_DISTRIBUTION_NUM_PROCESSES={processes}: this command "
                "trains under JAX in one process only (its input pipeline "
                "feeds one process; jax.distributed is not started). Use "
                "--strategy=mirrored for all devices of one machine (JAX's "
                "DataParallel), or KERAS_BACKEND=tensorflow with "
                "--strategy=multi_worker and TF_CONFIG for several "
                "machines.")


def multi_worker_strategy():
    """`tf.distribute.MultiWorkerMirroredStrategy` that Keras 3's `fit` runs.

    Keras 3's TensorFlow trainer (keras-team/keras#20585) makes two
    `strategy.reduce` calls this strategy's collective all-reduce refuses,
    so `fit` stopped at its first step: the first distributed batch, an
    `(x, y)` tuple, in one call ("Attempt to convert a value (PerReplica...)
    ... to a Tensor"), and each step's scalar logs with `axis=0`. Reducing
    each element of a structure on its own, and a scalar over no axis, is
    what those calls mean.
    """
    import tensorflow as tf

    class KerasMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def reduce_one(v):
                local = self.experimental_local_results(v)[0]
                scalar = getattr(local, "shape", None) is not None and \
                    local.shape.rank == 0
                return super(KerasMultiWorkerStrategy, self).reduce(
                    reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(reduce_one, value)

    return KerasMultiWorkerStrategy()


def worker_name():
    """This process's name in its cluster, the same when it is re-run.

    A non-chief worker keeps its own checkpoints and backup in the run
    folder's `workers/<name>/`, so a re-run resumes each worker from its
    own backup.
    """
    raw = os.environ.get("TF_CONFIG")
    if raw:
        task = json.loads(raw).get("task", {})
        return f"{task.get('type', 'worker')}_{task.get('index', 0)}"
    process = os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID")
    return f"process_{process}" if process else f"pid_{os.getpid()}"


def is_lost_worker_error(error):
    """Whether `error` is TensorFlow's report of a lost peer.

    `MultiWorkerMirroredStrategy` aborts the collectives of every surviving
    worker when a peer stops sending heartbeats (the coordination service)
    or stops answering its health check; the pending step then raises
    `UnavailableError` (or `DeadlineExceededError` after a collective
    timeout) instead of waiting forever.
    """
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return isinstance(error, (tf.errors.UnavailableError,
                              tf.errors.DeadlineExceededError))


def lost_worker_message(error, out, finished_epochs):
    """The message of a `WorkerLostError`: who was lost and what to do.

    Args:
        error: TensorFlow's error (or its text).
        out: the run folder (the chief's).
        finished_epochs: int, epochs the run folder holds.
    """
    text = re.sub(r"\{\{.*?\}\}\s*", "", str(error)).strip()
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    own = f"/job:{task.get('type')}/replica:0/task:{task.get('index')}"
    tasks = sorted(set(TASK_PATTERN.findall(text)) - {own})
    who = ", ".join(tasks) if tasks else "a worker of the cluster"
    return (f"{who} stopped (killed, crashed or unreachable), so this "
            f"worker ({worker_name()}) stopped too: multi-worker training "
            "needs every worker at every step. The run folder "
            f"{out} keeps {finished_epochs} finished epoch(s); re-run the "
            "same command on every worker (the same TF_CONFIG) to resume "
            f"from epoch {finished_epochs + 1}. TensorFlow said: "
            f"{' '.join(cause_lines(text)[:2])[:400]}")


def cause_lines(text):
    """The lines of TensorFlow's error text that say why (a task, an abort);
    its first lines are often only "Graph execution error:"."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [line for line in lines
            if TASK_PATTERN.search(line) or "abort" in line.lower()] or lines


def peer_tasks():
    """The other training tasks of `TF_CONFIG`'s cluster, as TensorFlow
    names them (`/job:worker/replica:0/task:1`)."""
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}")
    own = spec.get("task", {})
    return [f"/job:{job}/replica:0/task:{index}"
            for job, addresses in spec.get("cluster", {}).items()
            if job in ("chief", "worker")
            for index in range(len(addresses))
            if (job, index) != (own.get("type"), own.get("index"))]


class PeerWatchdog(keras.callbacks.Callback):
    """Stops a multi-worker run whose peer died, instead of waiting forever.

    TensorFlow's coordination service is meant to abort the collectives of
    the survivors when a peer stops sending heartbeats, but it does not
    always fire, and then the survivors wait in the step's all-reduce for
    good. This thread asks each peer's collective executor whether it is
    alive (the check `MultiWorkerMirroredStrategy` runs itself when the
    coordination service is off) and, once a peer that answered before
    stops answering, aborts this worker's collectives with an
    `UnavailableError` naming it: the pending step raises and the run stops
    with `WorkerLostError`. A peer not yet started is not lost, so workers
    may start at different times.

    It watches only inside epochs (steps and validation): at an epoch end
    the chief writes its checkpoints while a peer that finished the last
    epoch may already have exited. If the aborted step does not return
    within `grace_seconds`, the process prints the error and exits with
    status 4, as the command does for `WorkerLostError`. If even that
    cannot run (a thread that hangs holding the GIL, e.g. in an input
    iterator's destructor), `faulthandler`'s own thread prints every
    thread's stack and exits with status 1 `forced_exit_seconds` after
    that.

    Args:
        out: the run folder (the chief's), named in the error.
        interval_seconds: float, time between two rounds of checks.
        timeout_seconds: float, how long one check waits for an answer.
        attempts: int, failed checks in a row that make a peer lost.
        grace_seconds: float, how long the aborted step may take to return.
        forced_exit_seconds: float, how long after the grace faulthandler
            ends a process that could not exit itself.
    """

    def __init__(self, out, interval_seconds=5.0, timeout_seconds=10.0,
                 attempts=3, grace_seconds=60.0, forced_exit_seconds=60.0):
        super().__init__()
        self.out = out
        self.forced_exit_seconds = forced_exit_seconds
        self.interval_seconds = interval_seconds
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.grace_seconds = grace_seconds
        self.peers = peer_tasks()
        self.answered = set()
        self.armed = threading.Event()
        self.stopped = threading.Event()
        self.thread = None

    def on_train_begin(self, logs=None):
        # A crash of TensorFlow's runtime as peers fail then shows where.
        # The real standard error's descriptor, not `sys.stderr` (which may
        # have none) nor fd 2 (the log filter's pipe, whose thread cannot
        # forward while the main thread holds the GIL).
        faulthandler.enable(file=tf_logs.stderr_fd())
        self.stopped.clear()
        self.thread = threading.Thread(target=self.watch, daemon=True,
                                       name="mdnet-peer-watchdog")
        self.thread.start()

    def on_epoch_begin(self, epoch, logs=None):
        self.armed.set()

    def on_epoch_end(self, epoch, logs=None):
        self.armed.clear()

    def on_train_end(self, logs=None):
        self.armed.clear()
        self.stopped.set()
        disarm_forced_exit()
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def watch(self):
        while not self.stopped.wait(self.interval_seconds):
            lost = next((peer for peer in self.peers
                         if not self.alive(peer)), None)
            if lost is None or not self.armed.is_set():
                continue
            self.abort(lost)
            return

    def alive(self, peer):
        """Whether `peer` answers; a peer never seen alive counts as alive."""
        from tensorflow.python.eager import context

        for _ in range(self.attempts):
            try:
                context.context().check_collective_ops_peer_health(
                    peer, timeout_in_ms=int(1000 * self.timeout_seconds))
                self.answered.add(peer)
                return True
            except Exception:  # any failure of the check means no answer
                if self.stopped.is_set():
                    return True
        return peer not in self.answered

    def abort(self, peer):
        import tensorflow as tf
        from tensorflow.python.eager import context

        reason = f"{peer} stopped answering this worker's health checks"
        print(f"{reason}: aborting this worker's collectives so that it "
              "stops.", file=sys.stderr, flush=True)
        faulthandler.dump_traceback_later(
            self.grace_seconds + self.forced_exit_seconds, exit=True,
            file=tf_logs.stderr_fd())
        context.context().abort_collective_ops(tf.errors.UNAVAILABLE, reason)
        if not self.stopped.wait(self.grace_seconds):
            message = lost_worker_message(reason, self.out,
                                          run_folder.backup_epoch(self.out))
            tf_logs.exit_now(4, f"error: {message}")


def disarm_forced_exit():
    """Cancels `PeerWatchdog`'s last resort: the main thread is running."""
    faulthandler.cancel_dump_traceback_later()
