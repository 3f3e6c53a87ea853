"""Name -> object registries: the one place where strings from YAML/CLI become typed objects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError, KeyError):
    """A name is not in a registry. The message lists the valid names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from lower-case names to objects, with errors that list the valid names.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("mlp")
        ... def build_mlp(cfg): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` acts as a decorator."""
        key = name.lower()

        def add(item: T) -> T:
            if key in self._items and self._items[key] is not item:
                raise ValueError(f"{self.kind} name '{key}' is already registered "
                                 f"to {self._items[key]!r}; pick another name.")
            self._items[key] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[str(name).lower()]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} '{name}'; valid names: "
                                   f"{', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        return str(name).lower() in self._items

    def __len__(self) -> int:
        return len(self._items)
