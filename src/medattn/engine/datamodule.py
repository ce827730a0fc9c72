"""Datasets and loaders from a recipe's ``data`` section.

The format adapters of :mod:`medattn.data.formats` do the reading; this module picks the split
(official when the format has one, otherwise by patient/group so no patient crosses splits),
chooses the transforms; :mod:`medattn.engine.loaders` builds the DataLoaders (order and
augmentation a pure function of the seed, so a resumed run sees exactly the batches an
uninterrupted one would).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from medattn.engine.config import Recipe
from medattn.engine.loaders import EpochShuffleSampler, make_eval_loader, make_train_loader
from medattn.errors import ConfigError, DataError

__all__ = ["RunData", "build_data", "scan_table", "RepeatedDataset", "table_of_all", "EpochShuffleSampler", "make_train_loader",
           "make_eval_loader", "SegEvalTransform", "transforms_for", "preparation_of", "write_bad_files", "BAD_FILES_NAME"]

BAD_FILES_NAME = "bad_files.txt"
"""Run-directory file listing the files ``on_bad_file: skip`` left out (CSV: ``file,reason``)."""

SPLITS = ("train", "valid", "test")


@dataclass
class RunData:
    """The three splits of a run plus what evaluation and bundles need."""

    train: Dataset
    valid: Dataset
    test: Dataset
    class_names: list[str]
    table: Any
    """``split.csv`` rows: file, split, group, label."""
    fmt: str
    root: Path
    extra: dict[str, Any] = field(default_factory=dict)
    bad_policy: Any = None
    """:class:`~medattn.data.images.BadFilePolicy` holding the files the up-front check left out."""

    def bad_files(self) -> dict[str, str]:
        """Files left out so far: the up-front check's, plus any the datasets skipped while
        reading in this process (``file -> reason``)."""
        out: dict[str, str] = dict(getattr(self.bad_policy, "bad", {}) or {})
        for ds in (self.train, self.valid, self.test):
            for f, why in (getattr(ds, "bad_files", None) or {}).items():
                out.setdefault(f, why)
        return out


def write_bad_files(data: RunData, run_dir: str | Path) -> Path | None:
    """Write ``bad_files.txt`` (``file,reason``) into ``run_dir`` when files were skipped."""
    from medattn.data.images import BadFilePolicy

    bad = data.bad_files()
    if not bad:
        return None
    return BadFilePolicy("skip", bad=bad).write(Path(run_dir) / BAD_FILES_NAME)


class SegEvalTransform:
    """Evaluation transform of image/mask pairs: the full image prepared by the bundle's
    :class:`~medattn.data.transforms.Preparation` (stain, float, normalise; no resize), zero-padded
    on the bottom/right to a multiple of ``multiple`` (U-Nets need it); padded mask pixels are
    ``-1`` (ignored by evaluation, background for the loss)."""

    def __init__(self, prep: Any, multiple: int = 32, max_size: int | None = None) -> None:
        self.prep = prep
        self.multiple = multiple
        self.max_size = max_size

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.max_size is not None:  # centre crop very large images (smoke mode, quick runs)
            h, w = img.shape[-2:]
            t, left = max(0, (h - self.max_size) // 2), max(0, (w - self.max_size) // 2)
            img = img[..., t:t + self.max_size, left:left + self.max_size]
            mask = mask[..., t:t + self.max_size, left:left + self.max_size]
        x = self.prep(img, resize=False)
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph))
            mask = torch.nn.functional.pad(mask.long(), (0, pw, 0, ph), value=-1)
        return x, mask.long()


def preparation_of(recipe: Recipe) -> Any:
    """The :class:`~medattn.data.transforms.Preparation` of a recipe: the evaluation transform of
    training and, stored in the bundle, the preparation of every door."""
    from medattn.data.transforms import Preparation

    d = recipe.data
    return Preparation(size=None if recipe.task.type == "segmentation" else d.image_size, mean=d.mean, std=d.std,
                       channels=1 if d.in_chans == 1 else 3,
                       stain=d.stain_fitted if d.stain_normalize != "none" else None,  # fitted by build_data
                       preset=d.augment, denoise=d.denoise, clahe=d.clahe)


def transforms_for(recipe: Recipe, train: bool) -> Any:
    """The train/eval transform of a recipe (paired image/mask for segmentation)."""
    from torchvision.transforms import v2

    from medattn.data.transforms import PairedTransform, RandomRot90, build_transforms

    d = recipe.data
    stain = d.stain_fitted if d.stain_normalize != "none" else None  # fitted by build_data
    if not train:
        prep = preparation_of(recipe)
        if recipe.task.type != "segmentation":
            return prep.transform()
        return SegEvalTransform(prep, max_size=d.options.get("eval_max_size"))
    if recipe.task.type != "segmentation":
        return build_transforms(d.augment, train=True, size=d.image_size, mean=d.mean, std=d.std,
                                stain_jitter=d.stain_jitter, stain_range=(d.stain_sigma, d.stain_bias),
                                denoise=d.denoise, clahe=d.clahe, stain=stain)
    ops: list[Any] = [v2.RandomCrop(d.image_size, pad_if_needed=True)]
    if stain:  # on the crop (cheaper than the full image), before augmentation
        from medattn.data.stain import StainNormalize

        ops.append(StainNormalize(stain))
    if d.augment != "none":
        ops += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90(),
                v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.03)]
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if d.augment == "histo" and d.stain_jitter:
        from medattn.data.transforms import HEDJitter

        ops.append(HEDJitter(d.stain_sigma, d.stain_bias))
    ops.append(v2.Normalize(list(d.mean), list(d.std)))
    return PairedTransform(v2.Compose(ops))


def _subset(df: Any, n: int | None, seed: int) -> Any:
    if n is None:
        return df
    parts = [g.sample(min(n, len(g)), random_state=seed) if len(g) > n else g for _, g in df.groupby("split")]
    import pandas as pd

    out = pd.concat(parts).sort_index() if parts else df
    out.attrs = dict(df.attrs)
    return out


class RepeatedDataset(Dataset):
    """``base`` listed ``repeats`` times per epoch (each draw re-runs the random augmentation, so a
    segmentation image yields ``repeats`` different random crops); other attributes of ``base``
    (``labels()``, ``item_ids()``, ``bad_files``) are the base dataset's."""

    def __init__(self, base: Dataset, repeats: int) -> None:
        self.base = base
        self.repeats = int(repeats)

    def __len__(self) -> int:
        return len(self.base) * self.repeats  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        return self.base[i % len(self.base)]  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name in ("base", "repeats"):
            raise AttributeError(name)
        return getattr(self.base, name)


def table_of_all(table: Any, split: str = "test") -> Any:
    """A split table that puts every scanned item in ``split`` (external evaluation: nothing of the
    new data is used for choosing anything, so every item is scored)."""
    import pandas as pd

    from medattn.data.splits import _groups

    out = pd.DataFrame({"file": table["file"].astype(str).to_numpy(), "split": split, "group": _groups(table),
                        "label": table["label"].to_numpy() if "label" in table.columns else ""})
    out.attrs = dict(table.attrs)
    return out


def scan_table(recipe: Recipe, root: str | Path) -> Any:
    """Every item under ``root`` as the recipe's format reads it (``file, label, group, …``)."""
    from medattn.data.formats.registry import scan

    d = recipe.data
    scan_kw = {k: v for k, v in d.options.items() if k not in ("eval_max_size", "binary", "mode")}
    if d.format in ("folders", "csv") and d.class_names:
        scan_kw.setdefault("classes", d.class_names)
    return scan(Path(root).expanduser(), d.format, **scan_kw)


def build_data(recipe: Recipe, root: str | Path | None, split_table: Any | None = None, *,
               required: tuple[str, ...] | None = None, every_item: bool = False) -> RunData:
    """Scan ``root``, split it (or reuse ``split_table``, e.g. a run's ``split.csv``), open datasets.

    Args:
        recipe: the run's recipe (format, options, transforms, split fractions).
        root: data folder (``None``: ``data.root``).
        split_table: fixed ``file, split, group, label`` rows instead of a new split.
        required: splits that must have items (default: train and valid, plus test unless
            ``data.split.test_fraction`` is 0).
        every_item: put every scanned item in ``test`` (external evaluation).

    With ``data.stain_normalize`` set, the stain numbers are fitted here on the training split (or
    ``data.stain_reference``) and stored in ``recipe.data.stain_fitted`` (so ``recipe.yaml`` and the
    bundle carry them); numbers that match the training split are reused, never refitted on new data.

    Raises:
        ConfigError: no data path; DataError: the adapters' own errors (missing files, …).
    """
    from medattn.data.formats.registry import open_dataset

    d = recipe.data
    r = root if root is not None else d.root
    if r is None:
        raise ConfigError("field 'data.root': no data path; pass --data PATH (or --smoke for synthetic data)")
    r = Path(r).expanduser()
    if not r.exists():
        raise DataError(f"field 'data.root': data path '{r}' does not exist; pass --data PATH")
    fmt = d.format
    table = scan_table(recipe, r)
    if every_item and split_table is None:
        split_table = table_of_all(table)
    if split_table is None:
        from medattn.data.splits import make_split

        sp = d.split
        ratios = (1.0 - sp.val_fraction - sp.test_fraction, sp.val_fraction, sp.test_fraction)
        if ratios[0] <= 0:
            raise ConfigError("fields 'data.split.val_fraction' + 'data.split.test_fraction' must be < 1")
        split_table = _subset(make_split(table, ratios=ratios, seed=sp.seed, respect_official=sp.use_official),
                              d.max_items, sp.seed)
    st = split_table
    policy = None
    if d.check_files and fmt != "pcam":  # decode every file once: bad files surface before training
        from medattn.data.validate import apply_bad_file_policy

        st, policy = apply_bad_file_policy(r, st, d.on_bad_file, workers=max(2, d.num_workers))
    if required is None:
        required = ("test",) if every_item else ("train", "valid") + (("test",) if d.split.test_fraction > 0 else ())
    for s in required:
        if not (st["split"] == s).any():
            raise DataError(f"data under '{r}' has no '{s}' items after splitting; add data or change data.split")
    names = list(d.class_names or table.attrs.get("classes") or [])
    if fmt == "pcam" and not names:
        names = ["normal", "tumour"]
    if recipe.task.type == "segmentation":
        names = names or (["background", "interior", "boundary"] if recipe.task.seg_target == "three_class"
                          else ["background", "foreground"])
    ds_kw: dict[str, Any] = {}
    if fmt == "folders" and d.class_names:
        ds_kw["classes"] = d.class_names
    if fmt == "folders" and d.options.get("class_pattern"):
        ds_kw["class_pattern"] = d.options["class_pattern"]
    if fmt in ("seg_pairs", "monuseg") and "binary" in d.options:
        ds_kw["binary"] = bool(d.options["binary"])
    if fmt in ("cxr14", "folders", "csv") and "mode" in d.options:
        ds_kw["mode"] = d.options["mode"]
    if d.stain_normalize != "none":  # fitted once on the training split; kept in recipe.yaml and the bundle
        from medattn.data.stain import stain_params_for

        d.stain_fitted = stain_params_for(d, r, st, seed=d.split.seed)
    out = {}
    for s in SPLITS:
        tf = transforms_for(recipe, train=s == "train")
        out[s] = open_dataset(r, fmt, split=s, split_table=st, transform=tf, on_bad_file=d.on_bad_file, **ds_kw)
    if d.train_repeats > 1:
        out["train"] = RepeatedDataset(out["train"], d.train_repeats)
    return RunData(out["train"], out["valid"], out["test"], names, st, fmt, r, extra=dict(table.attrs),
                   bad_policy=policy)
