"""Builds the small CIFAR-10 sample embedded in `mdnet_keras/data/sample/`.

Draws a fixed number of train and test images per class, with a fixed seed,
from a CIFAR-10 `.npz` (`x_train, y_train, x_test, y_test, label_names`) and
writes them as one compressed `.npz`. Running it twice with the same input and
arguments gives byte-identical arrays.

Usage:
    python tools/make_sample.py ../shared/data/cifar10.npz \
        mdnet_keras/data/sample/cifar10_sample.npz
"""

import argparse

import numpy as np

SEED = 20240601
TRAIN_PER_CLASS = 100
TEST_PER_CLASS = 20


def draw_per_class(labels, per_class, rng):
    """Draws `per_class` indices of each class without replacement.

    Args:
        labels: int array, shape (N,), the class of each example.
        per_class: int, how many indices to draw for each class.
        rng: `np.random.Generator`, the source of randomness.

    Returns:
        int64 array of the drawn indices, shuffled across classes.
    """
    picks = [
        rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
        for c in np.unique(labels)
    ]
    return rng.permutation(np.concatenate(picks)).astype(np.int64)


def make_sample(src, dst, seed=SEED, train_per_class=TRAIN_PER_CLASS,
                test_per_class=TEST_PER_CLASS):
    """Writes the sample `.npz` drawn from the CIFAR-10 `.npz` at `src`.

    Args:
        src: str, path of the full CIFAR-10 `.npz`.
        dst: str, path of the sample `.npz` to write.
        seed: int, seed of the draw.
        train_per_class: int, training images per class.
        test_per_class: int, test images per class.

    Returns:
        dict with the arrays written.
    """
    rng = np.random.default_rng(seed)
    with np.load(src) as data:
        y_train = data["y_train"].reshape(-1).astype(np.int64)
        y_test = data["y_test"].reshape(-1).astype(np.int64)
        i_train = draw_per_class(y_train, train_per_class, rng)
        i_test = draw_per_class(y_test, test_per_class, rng)
        arrays = {
            "x_train": data["x_train"][i_train],
            "y_train": y_train[i_train],
            "x_test": data["x_test"][i_test],
            "y_test": y_test[i_test],
            "label_names": data["label_names"].astype(str),
        }
    np.savez_compressed(dst, **arrays)
    return arrays


def main():
    """Parses the command line and writes the sample."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="full CIFAR-10 .npz")
    parser.add_argument("dst", help="sample .npz to write")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--train_per_class", type=int, default=TRAIN_PER_CLASS)
    parser.add_argument("--test_per_class", type=int, default=TEST_PER_CLASS)
    args = parser.parse_args()
    arrays = make_sample(args.src, args.dst, args.seed, args.train_per_class,
                         args.test_per_class)
    print({k: (v.shape, v.dtype.str) for k, v in arrays.items()})


if __name__ == "__main__":
    main()
