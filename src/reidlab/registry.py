"""Name-to-builder registries for the parts a YAML file picks by name."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., object])


def nearest(name: str, choices: list[str]) -> str | None:
    """Return the choice closest to ``name`` (for 'did you mean' messages), if any is close."""
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=0.4)
    return matches[0] if matches else None


class Registry(Generic[T]):
    """A mapping from short stable names to builder functions.

    Registering a name twice raises; looking up an unknown name raises a ``KeyError`` that
    names the nearest registered name.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(fn: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            hint = nearest(name, list(self._items))
            extra = f"; did you mean {hint!r}?" if hint else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}{extra} (known: {', '.join(sorted(self._items))})"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


BACKBONES: Registry[Callable[..., Any]] = Registry("backbone")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset")
LOSSES: Registry[Callable[..., Any]] = Registry("loss")
MODES: Registry[Callable[..., Any]] = Registry("mode")
