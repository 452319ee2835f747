"""`mdnet_keras.training.inputs`: what a run trains on and selects on (the
batches and `fit`'s inputs are also checked through whole runs in
test_run.py, test_folders.py and test_tf_input.py)."""

import numpy as np

from mdnet_keras.data import load_dataset
from mdnet_keras.training import inputs


def test_selection_never_sees_the_test_split(small_npz):
    dataset = load_dataset("npz", data=small_npz)
    x_fit, y_fit, x_val, y_val, source = inputs.selection_split(dataset, 0.1, 0)
    assert "training images" in source
    assert len(x_val) == 60 and len(x_fit) == 540
    assert np.bincount(y_val).tolist() == [6] * 10
    test_images = {image.tobytes() for image in dataset.x_test}
    train_images = {image.tobytes() for image in dataset.x_train}
    assert not any(image.tobytes() in test_images for image in x_val)
    assert all(image.tobytes() in train_images for image in x_val)
    assert not ({i.tobytes() for i in x_val} & {i.tobytes() for i in x_fit})
    *_, source = inputs.selection_split(dataset, 0, 0)
    assert source == "test split"
