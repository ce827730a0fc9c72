"""Training output: one line per epoch off a terminal, rich bar on one; CSV/TensorBoard loggers;
a finished AG-CNN stage keeps only a weights-only best.ckpt."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medattn.engine.config import load_recipe
from medattn.engine.fit import build_trainer
from medattn.engine.progress import EpochLines, build_logger, progress_callbacks
from medattn.errors import ConfigError

LINE = re.compile(r"^(\[\w+\] )?epoch (\d+)/(\d+)  train_loss \d\.\d{4}  val_loss \d\.\d{4}  "
                  r"val_auroc \d\.\d{4}  \d+\.\d s$")


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Linear(4, 1)

    def training_step(self, batch, _):  # noqa: ANN001, ANN201
        x, y = batch
        loss = nn.functional.binary_cross_entropy_with_logits(self.model(x)[:, 0], y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):  # noqa: ANN001, ANN201
        x, y = batch
        self.log("val_loss", nn.functional.binary_cross_entropy_with_logits(self.model(x)[:, 0], y))
        self.log("val_auroc", torch.tensor(0.5) + 0.01 * self.current_epoch)

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _fit(tmp: Path, ckpt_dir: Path, *overrides: str) -> L.Trainer:
    recipe = load_recipe("pcam-attention", ["trainer.max_epochs=3", "trainer.accelerator=cpu",
                                            "trainer.precision=32-true", "trainer.early_stopping.enabled=false",
                                            *overrides])
    trainer, _ = build_trainer(recipe, ckpt_dir, [], root_dir=tmp)
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(16, 4, generator=g), (torch.rand(16, generator=g) > 0.5).float())
    trainer.fit(_Tiny(), DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=8))
    return trainer


def test_not_a_terminal_one_line_per_epoch_and_csv_logger(tmp_path: Path, capsys) -> None:
    _fit(tmp_path, tmp_path / "checkpoints", "trainer.progress=true", "trainer.logger=csv")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 3 and all(LINE.match(ln) for ln in lines), lines
    assert [LINE.match(ln).group(2) for ln in lines] == ["1", "2", "3"]
    assert "val_auroc 0.5200" in lines[2]
    csv = (tmp_path / "logs" / "metrics.csv").read_text().splitlines()
    assert "val_auroc" in csv[0] and len(csv) >= 4
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_progress_off_is_silent_and_terminal_gets_rich_bar(tmp_path: Path, capsys) -> None:
    _fit(tmp_path, tmp_path / "checkpoints", "trainer.progress=false")
    assert "epoch" not in capsys.readouterr().out
    assert not (tmp_path / "logs").exists()  # trainer.logger defaults to none
    from lightning.pytorch.callbacks import RichProgressBar

    cbs, bar = progress_callbacks(True, "val_auroc", tty=True)
    assert bar and isinstance(cbs[0], RichProgressBar)
    cbs, bar = progress_callbacks(True, "val_dice", tty=False)
    assert not bar and isinstance(cbs[0], EpochLines) and cbs[0].monitor == "val_dice"
    assert progress_callbacks(False, "val_auroc", tty=True) == ([], False)


def test_finished_stage_keeps_only_weights_only_best(tmp_path: Path, capsys) -> None:
    stage_dir = tmp_path / "checkpoints" / "stage_global"
    _fit(tmp_path, stage_dir, "trainer.progress=true")
    assert all(ln.startswith("[global] epoch") for ln in capsys.readouterr().out.splitlines() if ln.strip())
    assert sorted(p.name for p in stage_dir.iterdir()) == ["best.ckpt"]
    best = torch.load(stage_dir / "best.ckpt", map_location="cpu", weights_only=True)
    assert "state_dict" in best and "optimizer_states" not in best


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None
                    or importlib.util.find_spec("tensorboardX") is not None, reason="tensorboard installed")
def test_tensorboard_without_package_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        build_logger("tensorboard", tmp_path)
    msg = str(exc.value)
    assert "trainer.logger" in msg and "pip install tensorboard" in msg and "\n" not in msg


def test_logger_value_is_validated() -> None:
    with pytest.raises(ConfigError, match="trainer.logger"):
        load_recipe("pcam-attention", ["trainer.logger=wandb"])


@pytest.mark.slow
def test_cli_smoke_run_piped_prints_epoch_lines(tmp_path: Path) -> None:
    """The real thing: `medattn train … --smoke` with stdout a pipe (as under SLURM)."""
    res = subprocess.run([sys.executable, "-c", "from medattn.cli import run; run()", "train", "pcam-attention",
                          "--smoke", "--out", str(tmp_path / "run"), "--set", "trainer.progress=true"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    epochs = [ln for ln in res.stdout.splitlines() if ln.startswith("epoch ")]
    assert len(epochs) == 2 and all(LINE.match(ln) for ln in epochs), res.stdout
