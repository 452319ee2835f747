"""Initializers for layers that create several weights from one argument."""

import keras


def unshared(initializer):
    """A new instance of `initializer`, for one weight.

    A Keras 3 initializer without a seed fixes a random seed when it is
    created, so one instance gives the same values at every call: the
    query, key, value and output projections of an attention layer built
    from one instance would all start equal, and the kernels of the
    multi-scale groups would be scaled copies of one draw. A new instance
    per weight draws its own seed (reproducibly under
    `keras.utils.set_random_seed`); an initializer given an explicit seed
    keeps it, as that is what its owner asked for.

    Args:
        initializer: a Keras initializer, its name or its config.

    Returns:
        A `keras.initializers.Initializer`.
    """
    initializer = keras.initializers.get(initializer)
    return keras.initializers.get(keras.initializers.serialize(initializer))
