"""The runner's own runtime (tools/runtime.py): wheels downloaded here, installed where Jupyter is missing."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tools import execute, runtime


def tiny_wheel(folder: Path) -> Path:
    """A pure-Python wheel of one module, ``tiny_runtime_probe``."""
    wheel = folder / "tiny_runtime_probe-1.0-py3-none-any.whl"
    info = "tiny_runtime_probe-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("tiny_runtime_probe/__init__.py", "ANSWER = 42\n")
        archive.writestr(f"{info}/METADATA",
                         "Metadata-Version: 2.1\nName: tiny-runtime-probe\nVersion: 1.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                          "Tag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_wheels_install_into_a_folder_that_python_then_imports_from(tmp_path):
    target = tmp_path / "target"
    runtime.install([tiny_wheel(tmp_path)], target)
    code = "import tiny_runtime_probe as p; print(p.ANSWER, p.__file__)"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONPATH": str(target)})
    assert probe.stdout.split() == ["42", str(target / "tiny_runtime_probe" / "__init__.py")], probe.stderr


def test_the_download_is_binary_only_for_cpython_312_on_x86_64_linux(tmp_path):
    command = runtime.download_command(tmp_path / "wheels", tmp_path / "constraints.txt")
    assert "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[command.index("--implementation") + 1] == "cp"
    assert "manylinux_2_28_x86_64" in command and "manylinux2014_x86_64" in command
    assert command[-3:] == ["ipykernel", "nbclient", "jupytext"]
    assert command[command.index("--constraint") + 1] == str(tmp_path / "constraints.txt")


def test_without_jupyter_or_wheels_the_runner_says_what_to_bring(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(execute, "missing_runtime", lambda: ["nbclient"])
    monkeypatch.delenv(execute.RUNTIME_ENV, raising=False)
    assert execute.main(["--out", str(tmp_path / "run"), "--wheels", str(tmp_path / "none")]) == 1
    error = capsys.readouterr().err
    assert "cannot import nbclient" in error and "make runtime" in error and "_build/runtime/wheels" in error
