"""Tests of book/cache.py: train once, load after; keys change with what determines the weights."""

import torch
from torch import nn

from book import cache


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def counting_trainer(calls: list[int]):
    def train(model: nn.Module) -> dict[str, list[float]]:
        calls.append(1)
        with torch.no_grad():
            model.weight.add_(1.0)
        return {"loss": [3.0, 2.0, 1.0]}

    return train


def test_second_call_loads_the_stored_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    calls: list[int] = []
    first = cache.load_or_train(
        "tiny", make_model(), counting_trainer(calls), hparams={"lr": 0.1}, profile="smoke"
    )
    second = cache.load_or_train(
        "tiny", make_model(), counting_trainer(calls), hparams={"lr": 0.1}, profile="smoke"
    )
    assert len(calls) == 1
    assert not first.from_cache and second.from_cache
    assert torch.equal(first.model.weight, second.model.weight)
    assert second.history == {"loss": [3.0, 2.0, 1.0]}
    assert not list(tmp_path.glob("*.tmp")), "a temporary file was left behind"


def test_key_changes_with_hparams_profile_and_name(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    calls: list[int] = []
    for name, profile, lr in [
        ("tiny", "smoke", 0.1),
        ("tiny", "smoke", 0.2),
        ("tiny", "cpu", 0.1),
        ("big", "smoke", 0.1),
    ]:
        cache.load_or_train(name, make_model(), counting_trainer(calls), hparams={"lr": lr}, profile=profile)
    assert len(calls) == 4
    assert len(list(tmp_path.glob("*.pt"))) == 4


def test_key_changes_with_code():
    assert cache.cache_key("m", "cpu", {}, "code-a") != cache.cache_key("m", "cpu", {}, "code-b")
    assert cache.code_hash([nn.Linear]) != cache.code_hash([nn.Conv2d])
    assert cache.code_hash([nn.Linear]) == cache.code_hash([nn.Linear, nn.Linear])


def test_corrupted_file_is_reported_and_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    calls: list[int] = []
    run = cache.load_or_train("tiny", make_model(), counting_trainer(calls), hparams={}, profile="smoke")
    run.path.write_bytes(run.path.read_bytes()[:20])  # truncate
    import pytest

    with pytest.warns(UserWarning, match="unreadable"):
        again = cache.load_or_train(
            "tiny", make_model(), counting_trainer(calls), hparams={}, profile="smoke"
        )
    assert len(calls) == 2 and not again.from_cache
    assert cache.load_or_train(
        "tiny", make_model(), counting_trainer(calls), hparams={}, profile="smoke"
    ).from_cache


def test_files_load_with_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    run = cache.load_or_train("tiny", make_model(), counting_trainer([]), hparams={}, profile="smoke")
    stored = torch.load(run.path, weights_only=True)
    assert set(stored) >= {"state_dict", "history"}


def test_a_notebook_copy_of_an_exported_class_shares_its_key(tmp_path, monkeypatch):
    """The defining chapter runs the exported cell in __main__; later chapters import it from book/."""
    import importlib.util
    import sys
    import types

    source = "class Exported:\n    def value(self):\n        return 41 + 1\n"
    (tmp_path / "exported_demo.py").write_text("# GENERATED\n" + source)
    monkeypatch.setattr(cache, "PACKAGE_DIR", tmp_path)
    spec = importlib.util.spec_from_file_location("book.exported_demo", tmp_path / "exported_demo.py")
    imported = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "book.exported_demo", imported)
    spec.loader.exec_module(imported)
    cell = tmp_path / "ipython" / "cell_1.py"  # where IPython keeps a cell's source
    cell.parent.mkdir()
    cell.write_text(source)
    notebook = types.ModuleType("__main__")
    exec(compile(source, str(cell), "exec"), notebook.__dict__)
    monkeypatch.setitem(sys.modules, "__main__", notebook)
    assert cache._module_source_name(notebook.Exported) == "book.exported_demo"
    assert cache.code_hash([notebook.Exported]) == cache.code_hash([imported.Exported])
    assert cache.code_hash([notebook.Exported]) != cache.code_hash([nn.Linear])
