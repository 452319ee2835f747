"""The suite's data: fixed class-balanced CIFAR-10 (JPEG copy), CIFAR-100
(JPEG q75 copy) and NEU subsets from ../shared/data, or the package sample
without them (CIFAR-10 only)."""

import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")


CIFAR10_NPZ = os.path.join(SHARED_DATA, "cifar10.npz")


CIFAR100_NPZ = os.path.join(SHARED_DATA, "cifar100-jpeg.npz")
CIFAR100_LABEL = "CIFAR-100 (JPEG q75 copy)"


NEU_FOLDER = os.path.join(SHARED_DATA, "neu-surface-defects")


def balanced_subset(labels, count, seed):
    """Indices of `count` examples, as equal per class as possible, sorted."""
    labels = np.asarray(labels)
    if count >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    take = [count // len(classes)] * len(classes)
    for i in range(count - sum(take)):
        take[i] += 1
    idx = np.concatenate([p[:t] for p, t in zip(per_class, take)])
    return np.sort(idx)


def cifar_subset(dataset, source, train_images, test_images):
    """A class-balanced (seed 0) subset of a loaded CIFAR `Dataset`."""
    train = balanced_subset(dataset.y_train, train_images, 0)
    test = balanced_subset(dataset.y_test, test_images, 0)
    return {
        "x_train": dataset.x_train[train], "y_train": dataset.y_train[train],
        "x_test": dataset.x_test[test], "y_test": dataset.y_test[test],
        "num_classes": dataset.num_classes, "source": source,
        "facts": {"source": source, "train_images": int(len(train)),
                  "test_images": int(len(test)),
                  "train_pool": int(len(dataset.y_train)),
                  "test_pool": int(len(dataset.y_test)),
                  "subset": "class-balanced, seed 0"},
    }


def load_benchmark_data(budget):
    """CIFAR-10 (JPEG copy), CIFAR-100 (JPEG q75 copy) and NEU subsets.

    Without ../shared/data, CIFAR-10 is the package sample and the others
    are left out; CIFAR-100 is also left out when the budget gives it no
    training images.
    """
    from mdnet_keras.data import load_dataset

    data = {}
    if os.path.exists(CIFAR10_NPZ):
        cifar = load_dataset("cifar10", data=CIFAR10_NPZ)
        source = "CIFAR-10 (JPEG copy), ../shared/data/cifar10.npz"
    else:
        cifar = load_dataset("sample")
        source = "CIFAR-10 (JPEG copy) sample embedded in mdnet_keras"
    data["cifar10"] = cifar_subset(cifar, source, budget["cifar_train_images"],
                                   budget["cifar_test_images"])
    if os.path.exists(CIFAR100_NPZ) and budget.get("cifar100_train_images"):
        cifar100 = load_dataset("cifar100", data=CIFAR100_NPZ)
        data["cifar100"] = cifar_subset(
            cifar100, f"{CIFAR100_LABEL}, ../shared/data/cifar100-jpeg.npz",
            budget["cifar100_train_images"], budget["cifar100_test_images"])
    if os.path.isdir(NEU_FOLDER):
        size = budget["neu_image_size"]
        neu = load_dataset("folder", data=NEU_FOLDER, image_size=size,
                           channels=1)
        train = balanced_subset(neu.y_train, budget["neu_train_images"], 0)
        test = balanced_subset(neu.y_test, budget["neu_test_images"], 0)
        data["neu"] = {
            "x_train": neu.x_train[train], "y_train": neu.y_train[train],
            "x_test": neu.x_test[test], "y_test": neu.y_test[test],
            "num_classes": neu.num_classes,
            "facts": {"source": "NEU surface defects, ../shared/data/"
                      "neu-surface-defects (greyscale, resized with Pillow "
                      f"bilinear to {size}x{size})",
                      "train_images": int(len(train)),
                      "test_images": int(len(test)),
                      "classes": list(neu.class_names)},
        }
    return data
