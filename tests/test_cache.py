"""Tests of book/cache.py: train once, load after; keys change with what determines the weights."""

import dataclasses
import importlib.util
import json
import sys
import types

import pytest
import torch
from torch import nn

from book import cache
from book.training import TrainingRecipe

CPU = torch.device("cpu")
RECIPE = TrainingRecipe(epochs=1, batch_size=2, optimizer="adamw")
DATA = {"dataset": "toy", "points": 10}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))


def make_model(out_features: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, out_features)


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    width: int = 4


class Configured(nn.Module):
    """A network described by a ``config`` dataclass, as the book's U-Nets and MLPs are."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = nn.Linear(2, config.width)


def counting_trainer(calls: list[int]):
    def train(model: nn.Module) -> dict[str, list[float]]:
        calls.append(1)
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return {"loss": [3.0, 2.0, 1.0]}

    return train


def stored(name="tiny", model=None, *, recipe=RECIPE, data=None, device=CPU, code=(), calls=None):
    """load_or_train with a counting trainer and the test's defaults."""
    return cache.load_or_train(name, model if model is not None else make_model(),
                               counting_trainer(calls if calls is not None else []), recipe=recipe,
                               data=DATA if data is None else data, device=device, code=code)


class _Stop(Exception):
    pass


def key_on(device: torch.device, monkeypatch) -> str:
    """The key load_or_train computes for the default model on ``device`` (training is cut short, so that a
    device without data, such as "meta", can stand for another kind of device)."""
    keys = []
    real = cache.cache_key

    def recording_key(name, payload):
        keys.append(real(name, payload))
        return keys[-1]

    monkeypatch.setattr(cache, "cache_key", recording_key)

    def stop(model):
        raise _Stop

    with pytest.raises(_Stop):
        cache.load_or_train("tiny", make_model(), stop, recipe=RECIPE, data=DATA, device=device)
    monkeypatch.setattr(cache, "cache_key", real)
    return keys[-1]


def test_second_call_loads_the_stored_weights(tmp_path):
    calls: list[int] = []
    first = stored(calls=calls)
    second = stored(calls=calls)
    assert len(calls) == 1
    assert not first.from_cache and second.from_cache
    assert torch.equal(first.model.weight, second.model.weight)
    assert not torch.equal(second.model.weight, make_model().weight)  # the trained weights, not fresh ones
    assert second.history == {"loss": [3.0, 2.0, 1.0]}
    assert first.path == second.path and first.path.parent == tmp_path
    assert not list(tmp_path.glob("*.tmp")), "a temporary file was left behind"


def recipe_variants() -> dict[str, TrainingRecipe]:
    """RECIPE with one field changed, for every field (a new field fails the coverage check below)."""
    changes = {"epochs": 2, "batch_size": 3, "lr": 2e-3, "lr_schedule": "constant", "warmup_steps": 1,
               "optimizer": "adam", "weight_decay": 0.01, "label_dropout": 0.1, "seed": 1,
               "time_distribution": "logit-normal"}
    assert set(changes) == {f.name for f in dataclasses.fields(TrainingRecipe)}
    return {name: dataclasses.replace(RECIPE, **{name: value}) for name, value in changes.items()}


def test_key_changes_with_every_recipe_field(tmp_path):
    calls: list[int] = []
    paths = {"base": stored(calls=calls).path}
    for name, recipe in recipe_variants().items():
        paths[name] = stored(recipe=recipe, calls=calls).path
    assert len(set(paths.values())) == len(paths), paths
    assert len(calls) == len(paths) and len(list(tmp_path.glob("*.pt"))) == len(paths)
    assert all(path.name.startswith("tiny-") and path.suffix == ".pt" for path in paths.values())


def test_key_changes_with_the_data_the_name_and_the_code():
    calls: list[int] = []
    paths = [stored(calls=calls).path,
             stored(data={**DATA, "points": 11}, calls=calls).path,
             stored(data={**DATA, "seed": 0}, calls=calls).path,
             stored("other", calls=calls).path,
             stored(code=[nn.Conv2d], calls=calls).path]
    assert len(set(paths)) == len(paths) == len(calls)
    # the order of the data's keys does not matter
    assert stored(data=dict(reversed(list(DATA.items()))), calls=calls).from_cache


def test_key_changes_with_the_architecture_not_the_initial_weights():
    calls: list[int] = []
    assert stored(model=make_model(2), calls=calls).path != stored(model=make_model(4), calls=calls).path
    narrow = stored(model=Configured(TinyConfig(4)), calls=calls)
    torch.manual_seed(1)  # other initial weights, same architecture: the same trained model
    again = stored(model=Configured(TinyConfig(4)), calls=calls)
    assert again.from_cache and again.path == narrow.path
    assert torch.equal(again.model.layer.weight, narrow.model.layer.weight)
    assert stored(model=Configured(TinyConfig(5)), calls=calls).path != narrow.path
    assert len(calls) == 4


def test_describe_model_uses_the_config_dataclass_else_the_repr():
    assert cache.describe_model(Configured(TinyConfig(7))) == repr(TinyConfig(7))
    assert cache.describe_model(make_model(2)) == repr(make_model(2))
    assert cache.describe_model(make_model(2)) != cache.describe_model(make_model(4))


def test_key_changes_with_the_kind_of_device(monkeypatch):
    on_cpu = key_on(CPU, monkeypatch)
    assert key_on(torch.device("cpu"), monkeypatch) == on_cpu
    assert key_on(torch.device("meta"), monkeypatch) != on_cpu


def test_cache_key_hashes_the_name_and_the_payload():
    payload = {"recipe": dataclasses.asdict(RECIPE), "device": "cpu"}
    key = cache.cache_key("m", payload)
    assert len(key) == 16 and int(key, 16) >= 0
    assert cache.cache_key("m", dict(reversed(list(payload.items())))) == key
    assert cache.cache_key("n", payload) != key
    assert cache.cache_key("m", {**payload, "device": "cuda"}) != key
    assert cache.cache_key("m", {**payload, "code": "code-a"}) != cache.cache_key("m", {**payload,
                                                                                           "code": "code-b"})


def test_code_hash_follows_the_defining_modules():
    assert cache.code_hash([nn.Linear]) != cache.code_hash([nn.Conv2d])
    assert cache.code_hash([nn.Linear]) == cache.code_hash([nn.Linear, nn.Linear])


def test_fingerprint_tells_tensors_of_one_shape_apart():
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(6, 1, 4, 4, generator=generator), torch.arange(6)
    assert cache.fingerprint(images, labels) == cache.fingerprint(images.clone(), labels.clone())
    changed = images.clone()
    changed[3, 0, 2, 1] += 1e-6  # one value, slightly
    assert cache.fingerprint(changed, labels) != cache.fingerprint(images, labels)
    assert cache.fingerprint(images, labels.flip(0)) != cache.fingerprint(images, labels)
    assert cache.fingerprint(images.double(), labels) != cache.fingerprint(images, labels)  # same values
    assert cache.fingerprint(images.reshape(6, 16), labels) != cache.fingerprint(images, labels)
    assert cache.fingerprint(images.transpose(2, 3)) == cache.fingerprint(images.transpose(2, 3).contiguous())
    assert len(cache.fingerprint(images)) == 16


def test_corrupted_file_is_reported_and_retrained():
    calls: list[int] = []
    run = stored(calls=calls)
    run.path.write_bytes(run.path.read_bytes()[:20])  # truncate
    with pytest.warns(UserWarning, match="unreadable"):
        again = stored(calls=calls)
    assert len(calls) == 2 and not again.from_cache
    assert stored(calls=calls).from_cache


def test_files_load_with_weights_only_and_record_their_key():
    run = stored(recipe=dataclasses.replace(RECIPE, seed=7))
    saved = torch.load(run.path, weights_only=True)
    assert set(saved) == {"state_dict", "history", "key"}
    assert torch.equal(saved["state_dict"]["weight"], run.model.weight.detach())
    key = json.loads(saved["key"])
    assert key["recipe"] == dataclasses.asdict(dataclasses.replace(RECIPE, seed=7))
    assert key["data"] == DATA and key["device"] == "cpu"


@pytest.fixture
def fresh_name_index():
    """``_exported_names`` is cached per process: clear it around a test that moves PACKAGE_DIR."""
    cache._exported_names.cache_clear()
    yield
    cache._exported_names.cache_clear()


def test_a_notebook_copy_of_an_exported_class_shares_its_key(tmp_path, monkeypatch, fresh_name_index):
    """The defining chapter runs the exported cell in __main__; later chapters import it from book/."""
    source = "class Exported:\n    def value(self):\n        return 41 + 1\n"
    (tmp_path / "exported_demo.py").write_text(cache.GENERATED + " from a chapter.\n" + source)
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


def test_the_name_index_lists_the_package_s_top_level_definitions(fresh_name_index):
    names = cache._exported_names()
    assert names["TrainingRecipe"] == "book.training" and names["fit"] == "book.training"
    assert names["UNet"] == "book.unet" and names["reverse_process"] == "book.diffusion_samplers"
    assert names["to_pixels"] == "book.numerics" and "to_pixels" not in vars(sys.modules["book.cache"])


def test_start_from_loads_the_starting_weights_and_enters_the_key():
    start = stored("start", calls=[])
    calls: list[int] = []
    fresh = stored("tuned", model=make_model(), calls=calls)  # random initial weights, one training
    torch.manual_seed(1)
    other_init = nn.Linear(3, 2)  # a different initialisation: start_from must replace it
    tuned = cache.load_or_train("tuned", other_init, counting_trainer(calls), recipe=RECIPE, data=DATA,
                                device=CPU, start_from=start)
    assert not tuned.from_cache and tuned.path != fresh.path and calls == [1, 1]
    # counting_trainer adds 1 to the first parameter: the result is the start's weights plus 1
    assert torch.equal(tuned.model.weight, start.model.weight + 1)
    assert torch.equal(tuned.model.bias, start.model.bias)
    again = cache.load_or_train("tuned", make_model(), counting_trainer(calls), recipe=RECIPE, data=DATA,
                                device=CPU, start_from=start)
    assert again.from_cache and again.path == tuned.path and calls == [1, 1]


def test_start_from_refuses_a_run_without_a_file_or_of_another_shape():
    with pytest.raises(ValueError, match="returned by load_or_train"):
        cache.load_or_train("tuned", make_model(), counting_trainer([]), recipe=RECIPE, data=DATA, device=CPU,
                            start_from=cache.CachedRun(model=make_model()))
    start = stored("start")
    with pytest.raises(ValueError, match="do not fit"):
        cache.load_or_train("wider", make_model(out_features=5), counting_trainer([]), recipe=RECIPE,
                            data=DATA, device=CPU, start_from=start)
