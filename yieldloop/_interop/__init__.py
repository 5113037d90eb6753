"""Interoperability with other async libraries (layer 5): asyncio bridges
and the anyio backend.

anyio finds its backends by importing ``anyio._backends._<name>``; it has
no public registry. :func:`install_anyio_backend` (called when ``yieldloop``
is imported) adds an import hook that answers that one name with a module
whose ``backend_class`` is :mod:`yieldloop._interop._anyio`'s, so
``anyio.run(main, backend="yieldloop")`` works, and so does anyio code
called from a yieldloop task (sniffio names ``"yieldloop"`` while a run is
active; anyio needs sniffio installed to ask). Nothing of anyio is imported until
anyio asks for the backend.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from collections.abc import Sequence

__all__ = ["ANYIO_BACKEND_MODULE", "install_anyio_backend"]

#: The module name anyio imports for ``backend="yieldloop"``.
ANYIO_BACKEND_MODULE = "anyio._backends._yieldloop"


class _AnyioBackendLoader:
    """Makes ``anyio._backends._yieldloop`` a small module holding the one
    name anyio reads from a backend module, ``backend_class``. (A loader by
    its methods alone: importing :mod:`importlib.abc` would cost every
    ``import yieldloop`` a dozen modules.)"""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default: a new, empty module

    def exec_module(self, module: types.ModuleType) -> None:
        backend = importlib.import_module("yieldloop._interop._anyio")
        module.backend_class = backend.backend_class  # type: ignore[attr-defined]
        module.__doc__ = "anyio's name for yieldloop's backend (yieldloop._interop._anyio)."


class _AnyioBackendFinder:
    """Finds ``anyio._backends._yieldloop`` and nothing else."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ANYIO_BACKEND_MODULE:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AnyioBackendLoader())  # type: ignore[arg-type]


def install_anyio_backend() -> None:
    """Make ``backend="yieldloop"`` available to anyio (idempotent)."""
    if not any(isinstance(f, _AnyioBackendFinder) for f in sys.meta_path):
        sys.meta_path.append(_AnyioBackendFinder())
