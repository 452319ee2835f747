"""The checks every layer of the package gets, in one place.

`run_layer_test` is the project's counterpart of Keras' own `run_layer_test`
(keras/src/testing/test_case.py) for what our layers promise: they build,
`compute_output_shape` and a symbolic call agree with a real call,
`get_config` round-trips, a model holding the layer survives a `.keras`
save and load with the same outputs, and the layer runs under the
`mixed_float16` policy close to its float32 result.
"""

import os
import tempfile

import keras
import numpy as np


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _copy_weights(source, target):
    target.set_weights(source.get_weights())


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape=None,
    input_data=None,
    mixed_precision_tolerance=5e-2,
    seed=0,
):
    """Runs the shared layer checks; returns the built float32 layer.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict, its constructor arguments.
        input_shape: tuple with a concrete batch size.
        expected_output_shape: optional tuple, checked against the real call.
        input_data: optional array of `input_shape`; random normal values
            when not given.
        mixed_precision_tolerance: float, the largest absolute difference
            allowed between the `mixed_float16` and the float32 outputs,
            relative to the float32 output's largest magnitude.
        seed: int, for the input data.

    Returns:
        The float32 layer, built and called once.
    """
    if input_data is None:
        input_data = np.random.default_rng(seed).normal(size=input_shape)
    input_data = np.asarray(input_data, "float32")
    layer = layer_cls(**init_kwargs)
    output = _numpy(layer(input_data))
    if expected_output_shape is not None:
        assert output.shape == tuple(expected_output_shape), (
            f"{layer_cls.__name__} output {output.shape}, expected "
            f"{expected_output_shape}")

    # compute_output_shape and a symbolic call against the real call.
    if type(layer).compute_output_shape is not keras.layers.Layer.compute_output_shape:
        assert tuple(layer.compute_output_shape(input_shape)) == output.shape
        unknown_batch = (None,) + tuple(input_shape[1:])
        assert tuple(layer.compute_output_shape(unknown_batch)) == (
            (None,) + output.shape[1:])
    symbolic = layer_cls(**init_kwargs)(
        keras.Input(batch_shape=tuple(input_shape)))
    assert tuple(symbolic.shape) == output.shape

    # get_config round trip, and the clone computes the same function.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    clone.build(tuple(input_shape))
    _copy_weights(layer, clone)
    np.testing.assert_allclose(_numpy(clone(input_data)), output,
                               rtol=1e-5, atol=1e-5)

    # .keras round trip of a model holding the layer.
    inputs = keras.Input(shape=tuple(input_shape[1:]))
    model = keras.Model(inputs, layer_cls(**init_kwargs)(inputs))
    _copy_weights(layer, model.layers[-1])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1]) is layer_cls
    np.testing.assert_allclose(_numpy(loaded(input_data)), output,
                               rtol=1e-5, atol=1e-5)

    # Mixed precision: float16 compute, float32 weights, close results.
    mixed = layer_cls(**dict(init_kwargs, dtype="mixed_float16"))
    mixed.build(tuple(input_shape))
    _copy_weights(layer, mixed)
    mixed_output = mixed(input_data)
    assert keras.backend.standardize_dtype(mixed_output.dtype) == "float16"
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32"
               for w in mixed.weights)
    mixed_output = _numpy(mixed_output).astype("float32")
    assert np.isfinite(mixed_output).all()
    scale = max(float(np.abs(output).max()), 1.0)
    assert np.abs(mixed_output - output).max() <= (
        mixed_precision_tolerance * scale)
    return layer
