"""The trained-model cache: train once, reuse across rebuilds, tests and later chapters.

A model is stored under a key made of everything that determines its weights: its name, the profile, its
hyper-parameters and a hash of the source code of the modules that define it. Changing any of them trains
anew; changing nothing loads the stored weights. Files are written atomically (temporary file, then
rename) and loaded with ``torch.load(..., weights_only=True)``, which never runs pickled code.

Usage::

    run = load_or_train("flow-rings", model, train=lambda m: fit(m, ...), hparams=asdict(config))
    run.model, run.history["loss"], run.from_cache
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from book.profiles import current_profile

CACHE_ENV = "BOOK_CACHE"
REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "book"

History = dict[str, list[float]]


def cache_dir() -> Path:
    """``$BOOK_CACHE`` if set, else ``.cache/models`` in the repository."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache" / "models")


def code_hash(objects: Sequence[object]) -> str:
    """SHA-256 of the source of the modules that define ``objects`` (classes, functions or modules).

    Hashing whole modules, not single definitions, also catches a change in a helper the model calls.
    """
    digest = hashlib.sha256()
    for source_name in sorted({_module_source_name(obj) for obj in objects}):
        digest.update(source_name.encode())
        digest.update(_module_source(source_name).encode())
    return digest.hexdigest()


def _module_source_name(obj: object) -> str:
    module = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
    if module is None:
        raise ValueError(f"cannot find the module that defines {obj!r}; pass a module instead")
    if module.__name__ == "__main__":
        # The chapter that defines (and exports) a class runs its own copy in the notebook's __main__;
        # hash the generated module that holds the same source, so that chapter and the later chapters,
        # which import it from book/, share one key and one trained model.
        return _exported_module_for(obj) or "__main__"
    return module.__name__


def _exported_module_for(obj: object) -> str | None:
    """The ``book`` module whose text contains ``obj``'s source (for a class: one of its methods')."""
    candidates = [obj]
    if inspect.isclass(obj):
        candidates += [value for value in vars(obj).values() if inspect.isfunction(value)]
    for candidate in candidates:
        try:
            source = inspect.getsource(candidate)
        except (OSError, TypeError):
            continue
        for path in sorted(PACKAGE_DIR.glob("*.py")):
            if source in path.read_text():
                return f"book.{path.stem}"
        return None
    return None


def _module_source(module_name: str) -> str:
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        # A notebook's __main__ has no file: its definitions are hashed one by one.
        parts = []
        for name, value in sorted(vars(module).items()):
            if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == module_name:
                try:
                    parts.append(inspect.getsource(value))
                except (OSError, TypeError):
                    parts.append(name)
        return "\n".join(parts)


def cache_key(name: str, profile: str, hparams: Mapping[str, object], code: str) -> str:
    """The key of a trained model: a hash of its name, profile, hyper-parameters and code hash."""
    payload = json.dumps(
        {"name": name, "profile": profile, "hparams": hparams, "code": code}, sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class CachedRun:
    """A trained model, its training history and where it came from."""

    model: nn.Module
    history: History = field(default_factory=dict)
    from_cache: bool = False
    path: Path | None = None


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_train(
    name: str,
    model: nn.Module,
    train: Callable[[nn.Module], History | None],
    *,
    hparams: Mapping[str, object],
    code: Sequence[object] = (),
    profile: str | None = None,
) -> CachedRun:
    """Load ``model``'s weights from the cache, or train it with ``train(model)`` and store the result.

    Args:
        name: a name for the model, unique in the book (``"flow-rings"``).
        model: the freshly built network; its weights are replaced (loaded) or trained in place.
        train: trains ``model`` in place and returns its history (``{"loss": [...]}``) or ``None``.
        hparams: every hyper-parameter that changes the result (JSON-serializable values).
        code: objects whose defining modules' source enters the key, in addition to ``type(model)``.
        profile: the profile name; defaults to the current profile.
    """
    profile = profile or current_profile().name
    key = cache_key(name, profile, hparams, code_hash([type(model), *code]))
    path = cache_dir() / f"{name}-{profile}-{key}.pt"
    if path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(stored["state_dict"])
            return CachedRun(model=model, history=stored["history"], from_cache=True, path=path)
        except Exception as error:  # a truncated or foreign file: say so, then retrain over it
            warnings.warn(f"cached model {path} is unreadable ({error}); training it again", stacklevel=2)
    history = train(model) or {}
    state = {name_: tensor.detach().cpu() for name_, tensor in model.state_dict().items()}
    save_atomic({"state_dict": state, "history": history, "hparams": json.dumps(hparams, default=str)}, path)
    return CachedRun(model=model, history=history, from_cache=False, path=path)
