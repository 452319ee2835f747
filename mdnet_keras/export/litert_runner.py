"""Running a batch-1 `.tflite` image classifier with the LiteRT interpreter."""

import numpy as np

from mdnet_keras.export.keras_model import check_images


def quantize_input(images, detail):
    """Maps float pixels to the input tensor's dtype using its scale/zero point."""
    dtype = np.dtype(detail["dtype"])
    x = np.asarray(images, dtype=np.float32)
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zp = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(x / scale + zp)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(raw, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return raw.astype(np.float32)
    scale, zp = detail["quantization"]
    return (raw.astype(np.float32) - zp) * scale


class LiteRTRunner:
    """Runs a batch-1 `.tflite` image classifier with `ai_edge_litert`."""

    def __init__(self, tflite_bytes, num_threads=None, kernels="default"):
        """kernels: "default" (XNNPACK delegate where it applies),
        "builtin" (TFLite's optimized kernels, no delegate) or "reference"
        (TFLite's reference kernels, the closest to TFLite Micro's)."""
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_litert.interpreter import OpResolverType

        resolver = {
            "default": OpResolverType.AUTO,
            "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "reference": OpResolverType.BUILTIN_REF,
        }[kernels]
        self.interpreter = Interpreter(
            model_content=bytes(tflite_bytes), num_threads=num_threads,
            experimental_op_resolver_type=resolver,
        )
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.image_shape = tuple(int(d) for d in self.input["shape"][1:])

    def run_raw(self, images, verbose=False):
        """Returns the raw output tensors (N, classes) in their own dtype.

        `verbose` shows a progress bar over the images."""
        images = check_images(images, self.image_shape)
        x = quantize_input(images, self.input)
        bar = None
        if verbose:
            import keras

            bar = keras.utils.Progbar(x.shape[0], unit_name="image")
        out = []
        for i in range(x.shape[0]):
            self.interpreter.set_tensor(self.input["index"], x[i : i + 1])
            self.interpreter.invoke()
            out.append(self.interpreter.get_tensor(self.output["index"])[0].copy())
            if bar is not None:
                bar.update(i + 1)
        return np.stack(out)

    def predict(self, images, verbose=False):
        """Float outputs (dequantized), shape (N, classes)."""
        return dequantize_output(self.run_raw(images, verbose), self.output)
