"""`pip install .` outside the checkout: the wheel carries the recipes and the CLI finds them."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installed_outside_checkout_lists_recipes(tmp_path: Path) -> None:
    """Fresh venv, ``pip install --no-deps`` of the repo's wheel; the dependencies come from this venv's
    site-packages through a ``.pth`` line (not its editable medattn, whose ``.pth`` is not read)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    wheels = tmp_path / "wheels"  # built by this venv's setuptools: no download needed
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO),
                    "-w", str(wheels)], check=True, timeout=600, capture_output=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", *map(str, wheels.glob("medattn-*.whl"))],
                   check=True, timeout=600, capture_output=True)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_deps_from_dev_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 300}
    where = subprocess.run([str(py), "-c", "import medattn; print(medattn.__file__)"], **run)
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout and str(REPO) not in where.stdout  # the installed copy, not src/
    listed = subprocess.run([str(venv / "bin" / "medattn"), "recipes"], **run)
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    shipped = {p.stem for p in (REPO / "src" / "medattn" / "recipes").glob("*.yaml")}
    assert names == shipped and "pcam-attention" in names
    shown = subprocess.run([str(venv / "bin" / "medattn"), "recipes", "show", "cxr14-agcnn"], **run)
    assert shown.returncode == 0 and "name: cxr14-agcnn" in shown.stdout
    version = subprocess.run([str(venv / "bin" / "medattn"), "--version"], **run)
    assert version.stdout.strip().startswith("medattn ")
    smoke = subprocess.run([str(venv / "bin" / "medattn"), "train", "pcam-attention", "--smoke", "--out",
                            str(tmp_path / "run")], **{**run, "timeout": 900})
    assert smoke.returncode == 0, smoke.stderr[-2000:]
    assert (tmp_path / "run" / "report.html").is_file()
