"""One registration scheme for backbones, heads and open-set scores (as timm registers models).

    HEADS = Registry("head")

    @HEADS.register("linear")
    class LinearHead(Head): ...

    HEADS.get("linear")   # the class; an unknown name is an UnknownNameError listing the known ones

Entries are registered when their module is imported; each package imports its modules explicitly
in its `__init__`, so nothing is discovered by scanning and there are no import cycles.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class UnknownNameError(ConfigError):
    """A name that no registry entry has; the message lists the names that exist."""


class Registry(Generic[T]):
    def __init__(self, kind: str, plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None):
        """`register(name, obj)`, or `@register(name)` as a decorator."""

        def add(o: T) -> T:
            if name in self._entries and self._entries[name] is not o:
                raise ConfigError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; {self.plural}: {', '.join(self.names())}"
            ) from None

    __getitem__ = get

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def in_order(self) -> list[tuple[str, T]]:
        """The entries in the order they were registered (where order means priority)."""
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def checked(registry: Registry, names: list[str] | tuple[str, ...]) -> list[str]:
    """The names, after checking that every one is registered (one error naming all unknown)."""
    bad = [n for n in names if n not in registry]
    if bad:
        raise UnknownNameError(
            f"unknown {registry.kind}(s) {', '.join(map(repr, bad))}; "
            f"{registry.plural}: {', '.join(registry.names())}"
        )
    return list(names)
