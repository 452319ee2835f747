"""What splits MDNet's TFLite graph into XNNPACK partitions: SPLIT_V.

MDNet (paper size, untrained, 10 classes) is converted as shipped and with
`MultiScaleChannelConv._split` patched, in this process only, to split equal
groups by section count (`ops.split(x, 4, axis=-1)`: TFLite SPLIT) instead of
by indices (TFLite SPLIT_V). Partitions come from
`benchmarks.run.xnnpack_partitions`; batch-1 latency from all four models
interleaved in 5 rounds of 20 invokes. Nothing in the package is changed.

    python benchmarks/partition_experiment.py

Measured once on the shared 2-core AMD EPYC machine (load average about 4,
2026-11-26): as shipped, float32 10 partitions (9 SPLIT_V left out), int8 21
(9 SPLIT_V, 6 BATCH_MATMUL, 5 SOFTMAX, 4 RSQRT left out); with the equal
split, float32 1 partition, int8 12 (the attention ops only). Median latency
moved by less than the noise (float32 1 thread 9.29 vs 9.38 ms, int8 1 thread
10.67 vs 10.57 ms).
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from benchmarks.baselines import build_model  # noqa: E402
from benchmarks.run import CIFAR10_NPZ, xnnpack_partitions  # noqa: E402
from mdnet_keras.export import convert_model  # noqa: E402
from mdnet_keras.layers import MultiScaleChannelConv  # noqa: E402

SHIPPED_SPLIT = MultiScaleChannelConv._split


def equal_split(self, inputs):
    """Equal groups split by count (SPLIT); anything else as shipped."""
    if len(self.kernels) == 1:
        return [inputs]
    sizes = self.group_sizes(inputs.shape[-1])
    if len(set(sizes)) == 1:
        return ops.split(inputs, len(sizes), axis=-1)
    return SHIPPED_SPLIT(self, inputs)


def main():
    from ai_edge_litert.interpreter import Interpreter

    images = np.load(CIFAR10_NPZ)["x_train"][::500][:100]
    blobs = {}
    for label, split in (("split_v (as shipped)", SHIPPED_SPLIT),
                         ("equal split", equal_split)):
        MultiScaleChannelConv._split = split
        keras.utils.set_random_seed(0)
        model = build_model("mdnet")
        for mode in ("float32", "int8"):
            content = convert_model(model, mode, rep_images=images,
                                    num_calibration=100)
            parts = xnnpack_partitions(content)
            print(label, mode, len(content), "bytes, partitions",
                  parts["partitions"], "left out", parts["left_out_by_type"],
                  flush=True)
            blobs[(label, mode)] = content
    MultiScaleChannelConv._split = SHIPPED_SPLIT
    interpreters = {}
    for key, content in blobs.items():
        for threads in (1, 2):
            it = Interpreter(model_content=content, num_threads=threads)
            it.allocate_tensors()
            detail = it.get_input_details()[0]
            it.set_tensor(detail["index"],
                          np.zeros(detail["shape"], detail["dtype"]))
            for _ in range(5):
                it.invoke()
            interpreters[key + (threads,)] = it
    times = {key: [] for key in interpreters}
    for _ in range(5):
        for key, it in interpreters.items():
            for _ in range(20):
                started = time.perf_counter()
                it.invoke()
                times[key].append(time.perf_counter() - started)
    for key, samples in times.items():
        print(key, f"median {1000 * np.median(samples):.2f} ms,",
              len(samples), "runs")


if __name__ == "__main__":
    main()
