"""XNNPACK (LiteRT's CPU delegate): which ops of a `.tflite` it takes.

XNNPACK runs a depthwise kernel of at most `XNNPACK_DEPTHWISE_TAPS` taps on
its fast single-pass code; larger ones fall to a slower multi-pass path (MDNet
int8 with its kernels pieced and whole, side by side:
`benchmarks/results/int8_breakdown/`).
"""

# The most taps (kh * kw) of a depthwise kernel that XNNPACK runs on its fast
# single-pass code (its unipass microkernels go up to 5x5).
XNNPACK_DEPTHWISE_TAPS = 25


def xnnpack_partitions(tflite_bytes, num_threads=1):
    """XNNPACK partitions and the ops left out of them.

    The interpreter (ai-edge-litert, default resolver, which applies the
    XNNPACK delegate) lists the model's original nodes and then one node
    named `DELEGATE` per partition that XNNPACK took. A partition's node
    lists its outside inputs and its outputs; walking back from its outputs
    to those inputs finds the original ops it replaced. The ops no
    partition holds run on TFLite's own kernels.
    """
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=bytes(tflite_bytes), num_threads=num_threads)
    it.allocate_tensors()
    nodes = it._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    original = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {}
    for n in original:
        for t in n["outputs"]:
            producer[int(t)] = n["index"]
    by_index = {n["index"]: n for n in original}
    delegated = set()
    for d in delegates:
        boundary = set(int(t) for t in d["inputs"])
        stack = [producer[int(t)] for t in d["outputs"] if int(t) in producer]
        while stack:
            i = stack.pop()
            if i in delegated:
                continue
            delegated.add(i)
            for t in by_index[i]["inputs"]:
                t = int(t)
                if t < 0 or t in boundary or t not in producer:
                    continue
                stack.append(producer[t])
    left_out = [n for n in original if n["index"] not in delegated]
    counts = {}
    for n in left_out:
        counts[n["op_name"]] = counts.get(n["op_name"], 0) + 1
    return {
        "ops": len(original),
        "partitions": len(delegates),
        "delegated_ops": len(delegated),
        "left_out_ops": len(left_out),
        "left_out_by_type": counts,
        "left_out": [f"{n['index']}:{n['op_name']}" for n in left_out][:60],
    }
