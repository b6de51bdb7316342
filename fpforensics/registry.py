"""Extension points: a registry maps names to the implementations of one stage, each registering itself.

A stage (backbone, residual, extractor, ManiFPT feature space, evaluation protocol, gallery index)
keeps one :class:`Registry`. An implementation joins it with a decorator in the file that defines
it, as timm's models do::

    from fpforensics.extractor import BACKBONES

    @BACKBONES.register("convnext_tiny")
    def convnext_tiny():
        ...

The CLI takes its choices from the registries (``fpt ... --backbone``), so a new implementation
is one class or function in one file. Built-in implementations live in the modules named by
``modules``; they are imported the first time the registry is read, so importing a registry (and
``fpt --help``) stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from fpforensics.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> implementations of one kind (``kind`` names it in messages, e.g. "backbone")."""

    def __init__(self, kind: str, modules: Sequence[str] = (), builtins: Sequence[str] = ()) -> None:
        self.kind = kind
        self._modules = tuple(modules)
        # The names ``modules`` register, known without importing them: listing the choices
        # (``fpt ... --help``) then costs no torch import. tests/test_registry.py checks they agree.
        self.builtins = tuple(builtins)
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: add the class or function under ``name`` (default: its ``__name__``, lower case)."""

        def add(obj: T) -> T:
            key = (name or getattr(obj, "__name__", "")).strip().lower()
            if not key:
                raise ValueError(f"a {self.kind} needs a name")
            if key in self._entries and self._entries[key] is not obj:
                raise ValueError(f"{self.kind} '{key}' is already registered ({self._entries[key]!r})")
            self._entries[key] = obj
            return obj

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests, or a plugin that replaces a built-in)."""
        self._entries.pop(name.lower(), None)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def names(self) -> list[str]:
        """Registered names, built-ins first, in registration order (without importing the built-ins when declared)."""
        if not self._loaded and self.builtins:
            return [*self.builtins, *(n for n in self._entries if n not in self.builtins)]
        self._load()
        return list(self._entries)

    def get(self, name: str) -> T:
        """The implementation registered as ``name``; an unknown name is a one-line :class:`InputError`."""
        self._load()
        key = str(name).strip().lower()
        if key not in self._entries:
            raise InputError(f"unknown {self.kind} '{name}': use one of {', '.join(self._entries)}")
        return self._entries[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries) or 'not loaded'})"
