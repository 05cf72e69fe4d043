"""``Bunch``: the dict that ``load_mnist`` returns, its keys also attributes, as scikit-learn's datasets return."""

from __future__ import annotations

__all__ = ["Bunch"]


class Bunch(dict):
    """A dict whose keys are also attributes (``mnist.data`` is ``mnist["data"]``), as ``sklearn.utils.Bunch``.

    mnistlab's own, so that loading data imports no scikit-learn (a second of ``mnistlab data info`` or ``show``).
    """

    def __init__(self, **fields):
        super().__init__(fields)

    def __getattr__(self, key: str):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __dir__(self):
        return list(self.keys())
