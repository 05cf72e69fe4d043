"""The recipe registry: named, documented model definitions.

A recipe builds an unfitted scikit-learn compatible estimator from a seed and a
number of jobs. Classic recipes are ``Pipeline`` objects; CNN recipes are
``CNNClassifier`` estimators, each from a named ``Hyper``. The estimators are
imported inside ``build`` (torch takes seconds, scikit-learn's model modules a
noticeable fraction of one), so that listing recipes stays instant. Measured
accuracies and times are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from mnistlab.errors import RecipeError
from mnistlab.models.cnn.hyper import Hyper

__all__ = ["Recipe", "RECIPES", "register", "get_recipe", "list_recipes", "DEFAULT_LINEUP"]


@dataclass(frozen=True)
class Recipe:
    """A named model: ``build(seed, n_jobs)`` makes its unfitted scikit-learn estimator (a ``Pipeline``, or a
    ``CNNClassifier`` for the ``"cnn"`` family); ``cv`` is its default number of cross-validation folds (0: none)."""

    name: str
    description: str
    build: Callable[[int, int], Any]  # (seed, n_jobs) -> unfitted estimator
    family: str = "classic"  # "classic" or "cnn"
    # Default cross-validation folds for `train`/`compare` when --cv is not given;
    # 0 skips CV for recipes too slow to fit K more times (an explicit --cv wins).
    cv: int = 3


RECIPES: dict[str, Recipe] = {}

# What `mnistlab compare` runs with no recipe named (the main job of `make demo`).
DEFAULT_LINEUP: list[str] = []


def register(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (``mnistlab recipes`` lists them); ``.build(seed, n_jobs)`` makes its unfitted
    estimator. A ``RecipeError`` names the known recipes for any other name."""
    if not isinstance(name, str):
        raise RecipeError(
            f"A recipe is named by a string, got {type(name).__name__}; expected one of: {', '.join(RECIPES)}."
        )
    try:
        return RECIPES[name]
    except KeyError:
        known = ", ".join(RECIPES)
        raise RecipeError(f"Unknown recipe {name!r}; expected one of: {known}.") from None


def list_recipes() -> list[Recipe]:
    """Every recipe, classic ones first, in the order ``mnistlab recipes`` shows them."""
    return list(RECIPES.values())


# --- classic recipes ---------------------------------------------------------
# Every classic recipe is a Pipeline of named steps, so `get_params` in model.json
# reads the same for all. Inputs are raw N x 784 uint8 rows.


def _pipeline(*steps):
    from sklearn.pipeline import Pipeline  # on build: listing recipes stays instant

    return Pipeline(list(steps))


def _sgd(loss: str):
    def build(seed: int, n_jobs: int):
        from sklearn.linear_model import SGDClassifier  # on build: listing recipes stays instant

        # Exactly the lesson: raw 0-255 pixels, default settings, random_state=42
        # with the default seed. n_jobs only parallelises the one-vs-rest
        # classifiers, whose seeds are drawn up front, so scores do not change.
        return _pipeline(("sgd", SGDClassifier(loss=loss, random_state=seed, n_jobs=n_jobs)))

    return build


def _logreg(seed: int, n_jobs: int):
    from sklearn.linear_model import LogisticRegression  # on build: listing recipes stays instant

    from mnistlab.models.transforms import PixelScaler

    return _pipeline(
        ("scale", PixelScaler()),
        # C=0.05: stronger regularisation than the default scored better on held-out digits.
        ("logreg", LogisticRegression(C=0.05, max_iter=500, tol=1e-4, random_state=seed)),
    )


def _knn(seed: int, n_jobs: int):
    from sklearn.neighbors import KNeighborsClassifier  # on build: listing recipes stays instant

    # k=4 with distance weights: the best of the lesson's suggested grid search.
    return _pipeline(("knn", KNeighborsClassifier(n_neighbors=4, weights="distance", n_jobs=n_jobs)))


def _deskew_pca(seed: int, n_components: int):
    from sklearn.decomposition import PCA  # on build: listing recipes stays instant

    from mnistlab.models.transforms import Deskew, PixelScaler

    return [("scale", PixelScaler()), ("deskew", Deskew()), ("pca", PCA(n_components=n_components, random_state=seed))]


def _knn_deskew(seed: int, n_jobs: int):
    from sklearn.neighbors import KNeighborsClassifier  # on build: listing recipes stays instant

    # 40 principal components keep the neighbours' geometry and make each
    # distance ~20x cheaper than on 784 raw pixels.
    return _pipeline(
        *_deskew_pca(seed, 40),
        ("knn", KNeighborsClassifier(n_neighbors=4, weights="distance", n_jobs=n_jobs)),
    )


def _svm_rbf(seed: int, n_jobs: int):
    from sklearn.svm import SVC  # on build: listing recipes stays instant

    return _pipeline(
        *_deskew_pca(seed, 50),
        ("svc", SVC(kernel="rbf", C=5.0, gamma="scale", cache_size=1000, random_state=seed)),
    )


def _extra_trees(seed: int, n_jobs: int):
    from sklearn.ensemble import ExtraTreesClassifier  # on build: listing recipes stays instant

    from mnistlab.models.transforms import Deskew, PixelScaler

    return _pipeline(
        ("scale", PixelScaler()),
        ("deskew", Deskew()),
        # Fully grown trees are a little more accurate but weigh megabytes each;
        # 2,000 leaves per tree keep 100 trees at tens of megabytes.
        ("trees", ExtraTreesClassifier(n_estimators=100, max_leaf_nodes=2000, n_jobs=n_jobs, random_state=seed)),
    )


register(
    Recipe("sgd-hinge", "The lesson's linear SVM: SGDClassifier(loss='hinge') on raw 0-255 pixels.", _sgd("hinge"))
)
register(
    Recipe(
        "sgd-log", "The lesson's logistic SGD: SGDClassifier(loss='log_loss') on raw 0-255 pixels.", _sgd("log_loss")
    )
)
register(
    Recipe(
        "logreg",
        "Multinomial logistic regression on pixels scaled to 0-1 (the lesson's linear model done right).",
        _logreg,
    )
)
# cv=0: recipes whose K extra fits (or, for knn, K passes over 784-pixel
# distances) would dominate `mnistlab compare`; `--cv 3` still runs them.
register(
    Recipe("knn", "k-nearest neighbours (k=4, distance-weighted) on raw pixels, as the lesson suggests.", _knn, cv=0)
)
register(Recipe("knn-deskew", "Deskewed digits, 40 principal components, then k-nearest neighbours.", _knn_deskew))
register(Recipe("svm-rbf", "Deskewed digits, 50 principal components, then an RBF-kernel SVM.", _svm_rbf, cv=0))
register(
    Recipe(
        "extra-trees",
        "Deskewed digits into 100 extremely randomised trees of at most 2,000 leaves.",
        _extra_trees,
        cv=0,
    )
)

# The default `mnistlab compare` (the `make demo` job, < 10 minutes on 2 cores).
# The lesson's sgd-hinge/sgd-log are left out: unscaled, one fit on 60,000 takes
# minutes, and 3-fold CV triples that; logreg stands in as the linear model. Run
# them with `mnistlab train sgd-hinge`.
DEFAULT_LINEUP.extend(["logreg", "knn", "knn-deskew", "extra-trees", "svm-rbf"])

# --- CNN recipes ---------------------------------------------------------------
# Settings chosen by measurement on a 2-core CPU (benchmarks/RESULTS.md, "CNNs
# against the PyTorch MNIST example").

# No label smoothing: with only 2 epochs it cost accuracy.
CNN_FAST = Hyper(arch="tiny", epochs=2, batch_size=256, lr=0.2, label_smoothing=0.0)
CNN = Hyper(arch="standard", epochs=4, batch_size=128, lr=0.1, augment="light")
# Full augmentation (with elastic) proved too strong for this net; light
# augmentation with more epochs did better.
CNN_BEST = replace(CNN, epochs=15)


def _cnn(hyp: Hyper):
    def build(seed: int, n_jobs: int):
        from mnistlab.models.cnn.estimator import CNNClassifier  # on build: torch takes seconds to import

        # One torch thread unless asked for more (see CNNClassifier's n_threads):
        # n_jobs=-1, the CLI default, means one.
        return CNNClassifier(**asdict(hyp), random_state=seed, n_threads=1 if n_jobs == -1 else n_jobs)

    return build


def _ensemble(seed: int, n_jobs: int):
    from mnistlab.models.cnn.estimator import CNNClassifier  # on build: torch takes seconds to import

    # Members train side by side, one process and one torch thread each
    # (n_jobs=-1: one per core); the weights do not depend on n_jobs.
    return CNNClassifier(
        **asdict(CNN_BEST), inputs="mixed", n_members=10, n_jobs=n_jobs, n_threads=1, random_state=seed
    )


register(
    Recipe(
        "cnn-fast",
        "Tiny CNN (8-16-32 channels, batch norm), 2 epochs: 99.1-99.3% in about 15 s on one CPU core.",
        _cnn(CNN_FAST),
        family="cnn",
        cv=0,
    )
)
register(
    Recipe(
        "cnn",
        "CNN (32-64-128 channels, batch norm), 4 epochs, light augmentation, one-cycle: ~99.6% in 2.5 min on one core.",
        _cnn(CNN),
        family="cnn",
        cv=0,
    )
)
register(
    Recipe(
        "cnn-best",
        "The 32-64-128 CNN, 15 epochs, shift/rotation/scale augmentation, one-cycle: 99.68% measured (~6 min on 2 threads).",
        _cnn(CNN_BEST),
        family="cnn",
        cv=0,
    )
)
register(
    Recipe(
        "ensemble",
        "10 cnn-best nets, every second one reading deskewed digits, probabilities averaged: 99.75% measured (51 min on 2 cores).",
        # Nets trained alike miss the same digits, so averaging them gains little; a
        # net that reads deskewed digits misses other ones than a raw-input net, so
        # the mixed ensemble averages out more mistakes.
        _ensemble,
        family="cnn",
        cv=0,
    )
)

# cnn-fast trains in seconds, so the default comparison shows a CNN next to the classics.
DEFAULT_LINEUP.append("cnn-fast")
