"""Stage 4: light heads trained on frozen features (scikit-learn estimator contract)."""
from __future__ import annotations

from .base import Head, NotFittedError, softmax
from .linear import LinearHead

HEADS: dict[str, type[Head]] = {"linear": LinearHead}


def register_head(cls: type[Head]) -> type[Head]:
    HEADS[cls.name] = cls
    return cls


def _register_optional() -> None:
    import importlib
    for mod in ("knn", "gaussian", "ncm", "reference"):
        try:
            m = importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{mod}":
                continue
            raise
        for obj in vars(m).values():
            if isinstance(obj, type) and issubclass(obj, Head) and obj is not Head \
                    and obj.__module__ == m.__name__:
                register_head(obj)


def make_head(name: str, **params) -> Head:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; heads: {', '.join(sorted(HEADS))}")
    return HEADS[name](**params)


def head_factory(name: str, seed: int = 0):
    """`make(**params)` building unfitted `name` heads, seeded when the head takes a seed."""
    import inspect
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; heads: {', '.join(sorted(HEADS))}")
    cls = HEADS[name]
    seeded = {"seed": seed} if "seed" in inspect.signature(cls.__init__).parameters else {}

    def make(**params) -> Head:
        return cls(**(seeded | params))
    return make


_register_optional()

__all__ = ["HEADS", "Head", "LinearHead", "NotFittedError", "head_factory", "make_head", "register_head", "softmax"]
