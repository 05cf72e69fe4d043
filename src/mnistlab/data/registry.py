"""The datasets mnistlab knows: their files, published checksums and mirrors."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "DatasetSpec",
    "DATASETS",
    "DIGIT_NAMES",
    "ROLES",
    "FILE_PATTERNS",
    "TRANSPOSED_PREFIX",
    "MAX_DOWNLOAD_BYTES",
    "registered_class_names",
]

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_DEFAULT_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# The most bytes a download of one file may bring. The largest file the registry
# names is a training-images file: 47,040,016 bytes uncompressed (60,000 28x28
# images plus a 16-byte header), under 10 MB as published in gzip. A mirror may
# serve either, so 64 MiB leaves room for both and stops an endless or wrong
# response long before it fills a disk.
MAX_DOWNLOAD_BYTES = 64 * 2**20


DIGIT_NAMES = tuple(str(i) for i in range(10))  # the classes of MNIST and of any folder of IDX files


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    url: str
    sha256: dict[str, str]  # role -> sha256 of the decompressed IDX bytes
    mirrors: tuple[str, ...]  # base URLs, tried in order
    target_names: tuple[str, ...] = DIGIT_NAMES
    files: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_NAMES))
    max_file_bytes: int = MAX_DOWNLOAD_BYTES  # a download of one file stops past this many bytes


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        description="MNIST handwritten digits (LeCun, Cortes, Burges): 60,000 training and 10,000 test images, 28x28 grey, white ink on black.",
        url="http://yann.lecun.com/exdb/mnist/",
        sha256={
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        # torchvision's mirror first, then TensorFlow's, then the original site.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        description="Fashion-MNIST (Zalando Research): 60,000 training and 10,000 test images of clothing, 28x28 grey, in MNIST's format.",
        url="https://github.com/zalandoresearch/fashion-mnist",
        sha256={
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        ),
        target_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}

# Other spellings of the four files found in the wild (raw, dotted, "test" for "t10k"), and EMNIST's two sets of the
# ten digits as NIST publishes them, "digits" and "mnist" (its other sets are letters, or digits and letters).
FILE_PATTERNS = {
    "train_images": (
        "train-images-idx3-ubyte",
        "train-images.idx3-ubyte",
        "emnist-digits-train-images-idx3-ubyte",
        "emnist-mnist-train-images-idx3-ubyte",
    ),
    "train_labels": (
        "train-labels-idx1-ubyte",
        "train-labels.idx1-ubyte",
        "emnist-digits-train-labels-idx1-ubyte",
        "emnist-mnist-train-labels-idx1-ubyte",
    ),
    "test_images": (
        "t10k-images-idx3-ubyte",
        "t10k-images.idx3-ubyte",
        "test-images-idx3-ubyte",
        "emnist-digits-test-images-idx3-ubyte",
        "emnist-mnist-test-images-idx3-ubyte",
    ),
    "test_labels": (
        "t10k-labels-idx1-ubyte",
        "t10k-labels.idx1-ubyte",
        "test-labels-idx1-ubyte",
        "emnist-digits-test-labels-idx1-ubyte",
        "emnist-mnist-test-labels-idx1-ubyte",
    ),
}
# EMNIST stores each image transposed (rows as columns): its images are turned back as they are read.
TRANSPOSED_PREFIX = "emnist-"


def registered_class_names(dataset: str | None, data_dir: str | None = None) -> tuple[str, ...] | None:
    """The class names of the registered dataset a run or model card names (Fashion-MNIST's clothes); None for any
    other: scikit-learn's digits, arrays, and a folder of IDX files (``data_dir``), whatever its name."""
    spec = DATASETS.get(dataset) if dataset is not None and data_dir is None else None
    return spec.target_names if spec is not None else None
