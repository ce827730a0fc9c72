"""Recipe schema (pydantic v2): one YAML file describes a whole training run.

Every section forbids unknown keys, so a typo is an error that names the field instead of a
silently ignored setting. ``--set a.b=c`` overrides are applied to the raw mapping before
validation, so they are checked exactly like the file.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medattn.errors import ConfigError

__all__ = [
    "Recipe", "DataConfig", "SplitConfig", "ModelConfig", "TaskConfig", "OptimizerConfig",
    "SchedulerConfig", "LossConfig", "TrainerConfig", "EvaluationConfig", "SearchConfig",
    "SearchParam", "load_recipe", "recipe_from_dict", "apply_overrides", "parse_overrides", "override_recipe",
    "recipe_to_yaml", "find_recipe", "list_recipes", "RECIPE_DIR", "DATA_FORMATS", "TASK_TYPES",
]


def _recipe_dir() -> Path:
    """Folder of the shipped recipes (package data ``medattn/recipes``, also after ``pip install``)."""
    from importlib.resources import files

    return Path(str(files("medattn.recipes")))


RECIPE_DIR = _recipe_dir()
DATA_FORMATS = ("pcam", "folders", "csv", "cxr14", "idc", "seg_pairs", "monuseg")
TASK_TYPES = ("binary", "multiclass", "multilabel", "segmentation", "agcnn")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class SplitConfig(_Strict):
    """How items are split when the format has no official split (always by ``group``)."""

    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    """Share of groups held out for checkpoint selection, thresholds, calibration and the
    segmentation post-processing; must be > 0 (nothing is chosen on test)."""
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    """Share of groups held out for the run's test metrics. ``0`` trains a final model on train +
    valid (metrics are then reported on validation; score it on new data with
    ``medattn evaluate BUNDLE --data NEW``)."""
    seed: int = 0
    use_official: bool = True
    """Use the format's own split files (PCam files, CXR14 ``test_list.txt``) when they exist."""

    @field_validator("val_fraction", mode="before")
    @classmethod
    def _need_validation(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool) and v <= 0:
            raise ValueError("must be > 0: checkpoint selection, thresholds and calibration are chosen on "
                             "a validation split (use test_fraction: 0 for a final model on all data)")
        return v


class DataConfig(_Strict):
    """Where the data is and how it is read and augmented."""

    format: Literal["pcam", "folders", "csv", "cxr14", "idc", "seg_pairs", "monuseg"]
    root: str | None = None
    """Data folder; ``--data PATH`` overrides it. Required unless ``--smoke`` generates data."""
    image_size: int = Field(96, ge=16, le=2048)
    in_chans: int = Field(3, ge=1, le=4)
    augment: Literal["histo", "cytology", "cxr", "none"] = "histo"
    stain_jitter: bool = False
    """``histo`` training only: also perturb the H, E and DAB stain concentrations (HED jitter)."""
    stain_sigma: float = Field(0.05, ge=0.0, le=1.0)
    """HED jitter: each stain concentration is scaled by ``1 + U(-stain_sigma, stain_sigma)``."""
    stain_bias: float = Field(0.02, ge=0.0, le=1.0)
    """HED jitter: and shifted by ``U(-stain_bias, stain_bias)`` (optical-density units)."""
    stain_normalize: Literal["none", "macenko", "reinhard"] = "none"
    """Stain normalisation (torch-staintools) of RGB H&E images before augmentation, identical in
    training, evaluation and every bundle consumer (:mod:`medattn.data.stain`)."""
    stain_reference: str | None = None
    """Image the stain normalisation is fitted on; ``None`` = the median of the per-image
    parameters of up to 64 training images (a seeded sample)."""
    stain_fitted: dict[str, Any] | None = None
    """The fitted numbers, filled in when training starts (kept in ``recipe.yaml`` and the bundle);
    refitted when the training split or the method changes. Leave empty."""
    denoise: bool = False
    """``cytology`` preset only: non-local-means denoising of every image, in training *and* at
    inference (stored in the bundle's ``preparation``, so every door applies it)."""
    clahe: bool = False
    """``cytology`` preset only: contrast-limited adaptive histogram equalisation (CLAHE) of every
    image after denoising, in training and at inference alike."""
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    """Training order. ``shuffle``: every training item once per epoch, in a permutation drawn from
    ``(seed, epoch)``. ``balanced`` (binary/multiclass): an epoch draws as many items, with
    replacement, each class equally likely (weights 1 / class count), from ``(seed, epoch)`` —
    usually with ``loss.class_weights: null`` so the imbalance is not corrected twice."""
    train_repeats: int = Field(1, ge=1, le=10_000)
    """Each training item is drawn this many times per epoch, each time with fresh augmentation
    (segmentation: random crops per image per epoch, so an epoch of 9 large images is 9 × N crops)."""
    mpp: float | None = Field(None, gt=0.0, le=100.0)
    """Microns per pixel of the network input (after resizing to ``image_size``): PCam 96 px patches
    ≈ 0.97; IDC 50 px patches (≈ 4 µm/px) resized to 384 px ≈ 0.52. Recorded in the bundle so
    ``medattn slide`` reads slides at the training scale; ``None`` = unknown (``--model-mpp``)."""
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    class_names: list[str] | None = None
    """Class names in output order; ``None`` takes them from the data (sorted folders, CSV columns)."""
    num_workers: int = Field(0, ge=0, le=64)
    split: SplitConfig = SplitConfig()
    options: dict[str, Any] = {}
    """Extra keyword arguments of the format's scanner (file names, column names, …)."""
    max_items: int | None = Field(None, ge=1)
    """Use at most this many items per split (quick experiments); ``None`` = all."""
    on_bad_file: Literal["error", "skip"] = "skip"
    """Unreadable, truncated, zero-byte or missing images: ``skip`` leaves them out (logged once
    each, listed in ``bad_files.txt``); ``error`` stops with a one-line message naming the file.
    The default is every verb's ``--on-bad-file`` default (``medattn.commands.options``)."""
    check_files: bool = True
    """Decode every file of the split once before training (``medattn validate``), so a bad file is
    found up front instead of halfway through an epoch. Turn off only for huge, trusted data: the
    per-item ``on_bad_file`` policy still applies while reading."""

    @model_validator(mode="after")
    def _stain_needs_rgb(self) -> DataConfig:
        if self.stain_normalize != "none" and self.in_chans != 3:
            raise ValueError(f"stain_normalize '{self.stain_normalize}' needs RGB input (in_chans 3, got "
                             f"{self.in_chans}); set data.stain_normalize: none")
        return self


class ModelConfig(_Strict):
    """A registry model (``medattn.models.create_model(name, num_classes=…, **args)``)."""

    name: str
    args: dict[str, Any] = {}
    pretrained: str | None = None


class TaskConfig(_Strict):
    """What is learnt. ``agcnn`` trains the three AG-CNN stages."""

    type: Literal["binary", "multiclass", "multilabel", "segmentation", "agcnn"]
    stage: Literal["global", "local", "fusion", "all"] = "all"
    """AG-CNN only: one stage, or all three in sequence (best validation weights kept per stage)."""
    seg_target: Literal["binary", "three_class", "hover"] = "binary"
    """Segmentation: foreground mask, background/interior/boundary (3-class head), or ``hover``
    (HoVer-Net style: nuclear-pixel map + horizontal/vertical distances to each nucleus's centre;
    needs instance label masks)."""
    gif_every: int = Field(1, ge=0)
    """Segmentation: predict a fixed validation image every N epochs into ``progress.gif`` (0 = off)."""
    ordinal: bool = False
    """Multiclass only: the classes are ordered grades; evaluation adds quadratic-weighted kappa,
    linear kappa, grade MAE and within-one accuracy (:mod:`medattn.metrics.ordinal`)."""


class OptimizerConfig(_Strict):
    name: Literal["adam", "adamw", "nadam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)


class SchedulerConfig(_Strict):
    name: Literal["none", "plateau", "step", "cosine", "onecycle"] = "plateau"
    factor: float = Field(0.3, gt=0.0, lt=1.0)
    """plateau: LR multiplier; step: gamma."""
    patience: int = Field(3, ge=0)
    step_size: int = Field(10, ge=1)
    min_lr: float = Field(0.0, ge=0.0)
    warmup_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    """onecycle: fraction of steps spent warming up."""


class LossConfig(_Strict):
    class_weights: Literal["balanced"] | list[float] | None = None
    """Multiclass/multilabel weights: ``balanced`` (inverse frequency on train) or a list."""
    pos_weight: float | Literal["balanced"] | None = None
    """Binary: weight of the positive class (``balanced`` = negatives/positives on train)."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    dice_weight: float = Field(1.0, ge=0.0)
    """Segmentation: loss = CE/BCE + dice_weight × Dice loss."""
    focal_gamma: float = Field(0.0, ge=0.0, le=10.0)
    """Binary/multiclass: focal loss, each item's cross-entropy scaled by ``(1 − p_true)^γ`` so that
    items the model already gets right weigh less (0 = plain cross-entropy; 2 is the usual value).
    Combines with ``class_weights``/``pos_weight`` and ``label_smoothing``."""
    mix: Literal["none", "mixup", "cutmix", "mixup_or_cutmix"] = "none"
    """Binary/multiclass training batches: MixUp (two images blended, labels in the same proportion),
    CutMix (a box of another image pasted in, labels by area) or one of the two at random per batch
    (torchvision ``transforms.v2``). Validation and test images are never mixed."""
    mix_alpha: float = Field(1.0, gt=0.0)
    """MixUp/CutMix: the mixing proportion is drawn from Beta(α, α)."""
    mix_prob: float = Field(1.0, ge=0.0, le=1.0)
    """MixUp/CutMix: share of training batches that are mixed."""
    hv_weight: float = Field(1.0, ge=0.0)
    """``seg_target: hover``: weight of the MSE of the horizontal/vertical distance maps."""
    hv_grad_weight: float = Field(2.0, ge=0.0)
    """``seg_target: hover``: weight of the MSE of their Sobel derivatives on nuclear pixels
    (sharp changes between touching nuclei; HoVer-Net's weight 2)."""


class EarlyStoppingConfig(_Strict):
    enabled: bool = True
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class TrainerConfig(_Strict):
    """Passed to ``lightning.Trainer`` (devices, nodes and strategy go straight through)."""

    max_epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    monitor: str | None = None
    """Validation metric that picks the best checkpoint; default per task (``val_auroc``, ``val_dice``)."""
    mode: Literal["max", "min"] = "max"
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    seed: int = 0
    deterministic: bool = False
    precision: Literal["32", "32-true", "16-mixed", "bf16-mixed", "auto", "fast"] = "auto"
    """``auto`` = 16-mixed on CUDA, 32 on CPU; ``fast`` = 16-mixed on CUDA, bf16-mixed on a CPU that
    computes bfloat16 in hardware (AVX512-BF16/AMX; about 2× the fp32 step there), else 32 (bf16
    is emulated, and slower, on other CPUs). The precision used is recorded in ``run.json``."""
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | str = 1
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float | None = None
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    progress: bool = True
    """Report training progress: a rich bar on a terminal, one line per epoch (epoch, losses,
    monitored metric, seconds) when stdout is not a terminal (SLURM logs, pipes)."""
    logger: Literal["none", "csv", "tensorboard"] = "none"
    """Lightning logger under ``RUN/logs/``: ``csv`` (``metrics.csv``) or ``tensorboard`` (needs the
    ``tensorboard`` package); ``training_history.csv`` is written either way."""
    channels_last: bool = False
    """Train the convolutions in the channels-last (NHWC) memory layout, which oneDNN and cuDNN run
    faster (1.33× the ``nuclei-cpu`` U-Net step on the 2-core reference CPU, 2.0× with bf16;
    docs/benchmarks.md). Numerically the same network; checkpoints and the bundle are written in
    the standard layout."""
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)
    """Keep an exponential moving average of the weights (decay per step, e.g. 0.999, warmed up as
    ``min(decay, (1+n)/(10+n))`` after n steps; Lightning's ``WeightAveraging``): validation,
    checkpoints and the bundle use the averaged weights."""
    record_seen: bool = False
    """Write ``seen/rank<R>.json`` with the item indices each rank trained on (sharding check)."""
    checkpoint_every_n_steps: int | None = Field(None, ge=1)
    """Also write ``checkpoints/last.ckpt`` every this many optimiser steps (mid-epoch), so a killed
    long epoch resumes at the batch after the checkpoint instead of at the epoch's start."""


    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # --set trainer.precision=32


class EvaluationConfig(_Strict):
    n_boot: int = Field(1000, ge=0)
    threshold: Literal["youden", "fixed"] = "youden"
    """Binary/multilabel decision threshold: Youden's J on the validation split, or a fixed 0.5."""
    ci_alpha: float = Field(0.05, gt=0.0, lt=0.5)
    calibration_bins: int = Field(10, ge=2, le=100)
    """Equal-width bins of the reliability diagram and of the ECE in ``metrics.json``."""
    temperature_scaling: bool = False
    """Fit a temperature on the validation split and report the calibrated ECE next to the raw one
    (decisions are unchanged: the scaling is monotone and thresholds stay the validation ones)."""
    n_cams: int = Field(6, ge=0, le=64)
    """Classification: Grad-CAM overlays of this many test images in ``cams/`` (0 = none)."""
    tile_size: int | None = Field(None, ge=16)
    """Segmentation: predict each test image by overlapping tiles of this size (default: the
    training crop ``data.image_size``); pixels average the tiles that cover them."""
    tile_overlap: int = Field(64, ge=0)
    """Segmentation: pixels shared by neighbouring tiles."""
    tta: bool = False
    """Test-time augmentation for orientation-free images (histology, cytology; not X-rays):
    classification averages the 8 rotated/mirrored views, segmentation the 4 flipped tiles. The
    bundle records it and its predictions do the same."""
    positive_classes: list[str] | None = None
    """Multiclass: also score these classes together against the rest (e.g. Herlev's abnormal
    cells): sensitivity, specificity and balanced accuracy at a threshold on their summed
    probability chosen on validation (stored in the bundle), and AUROC."""
    positive_name: str = Field("positive", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    """Name of that 2-class view in metrics (``abnormal`` → ``abnormal_sensitivity`` …)."""
    screening_sensitivity: float | None = Field(None, gt=0.0, lt=1.0)
    """Multiclass with ``positive_classes``: also a named ``screening`` operating point of that view,
    the highest threshold on the summed probability whose validation sensitivity reaches this target
    (e.g. 0.95), stored in the bundle and reported beside Youden's (``abnormal_screening_…``)."""
    conformal: Literal["aps", "mondrian"] = "aps"
    """Multiclass conformal prediction sets: ``aps`` (coverage on average over classes; RAPS too) or
    ``mondrian`` (per-class quantiles: coverage within each true class, narrow sets where the model
    is sure). Binary and multi-label sets are always per class."""
    postprocess: dict[str, Any] | None = None
    """Segmentation: instance post-processing, e.g. ``{method: three_class, seed_threshold: 0.7}``
    (see ``medattn.metrics.postprocess.instances_from_output``). Empty: the setting with the best
    mean AJI on the validation split is chosen from a fixed grid and stored in the bundle."""

    @field_validator("postprocess")
    @classmethod
    def _check_postprocess(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        from medattn.metrics.postprocess import check_setting

        check_setting(v)  # DataError naming the method or the unknown keys
        return v


class SearchParam(_Strict):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None


class SearchConfig(_Strict):
    """Optuna search space (dotted recipe paths); the objective is the validation monitor only."""

    max_epochs: int = Field(5, ge=1)
    space: dict[str, SearchParam] = {}
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: bool = True


class CardConfig(_Strict):
    """Model-card text carried by the bundle (``medattn info``, dashboard); see ``medattn.trust.card``."""

    intended_use: str = ""
    """What the model is for (default: the recipe's ``description``)."""
    users: str = "researchers"
    data_source: str = ""
    """Where the training data came from (dataset, sites, scanners, licence)."""
    limitations: list[str] = []
    """Known limits; medattn adds the ones it can tell (synthetic data, input size, few groups)."""

    @field_validator("intended_use", "users", "data_source")
    @classmethod
    def _one_paragraph(cls, v: str) -> str:
        return " ".join(v.split())

    @field_validator("limitations")
    @classmethod
    def _no_empty_limits(cls, v: list[str]) -> list[str]:
        out = [" ".join(x.split()) for x in v]
        if not all(out):
            raise ValueError("each limitation is a non-empty sentence")
        return out


class Recipe(_Strict):
    """A complete, validated training recipe."""

    name: str
    description: str = ""
    task: TaskConfig
    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    loss: LossConfig = LossConfig()
    trainer: TrainerConfig = TrainerConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    search: SearchConfig = SearchConfig()
    card: CardConfig = CardConfig()
    """Model card: intended use, users, data source, limitations."""
    smoke: dict[str, Any] = {}
    """Extra ``a.b: value`` overrides applied by ``--smoke`` on top of the generic shrinking."""
    overrides: list[str] = []
    """Filled in when a run starts: every ``--set KEY=VALUE`` applied to this recipe, as
    ``key=value (recipe: old value)``; kept in ``recipe.yaml``, the bundle and its model card
    (``medattn info``). Leave empty."""

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ "):
            raise ValueError("must be a non-empty name without slashes or spaces")
        return v

    @model_validator(mode="after")
    def _hover_needs_instances(self) -> Recipe:
        if self.task.seg_target == "hover" and self.data.options.get("binary"):
            raise ValueError("task.seg_target 'hover' needs instance label masks (distances to each "
                             "nucleus's centre); remove data.options.binary")
        return self

    @model_validator(mode="after")
    def _class_levers_classify(self) -> Recipe:
        if self.task.type not in ("binary", "multiclass"):
            for field, used in (("loss.mix", self.loss.mix != "none"), ("loss.focal_gamma", self.loss.focal_gamma > 0),
                                ("data.sampler", self.data.sampler == "balanced")):
                if used:
                    raise ValueError(f"{field} is for binary and multiclass tasks (this recipe is "
                                     f"{self.task.type}); remove it")
        return self

    def default_monitor(self) -> str:
        """The validation metric that selects checkpoints."""
        if self.trainer.monitor:
            return self.trainer.monitor
        return "val_dice" if self.task.type == "segmentation" else "val_auroc"


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or "'" in p))]
    return ".".join(parts) or "<root>"


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate a mapping; the first problem becomes a one-line :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _fmt_loc(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        named = re.match(r"([a-z_]+(?:\.[a-z_]+)+) (.*)", msg, re.S) if field == "<root>" else None
        if named:  # a check across sections names the field it refuses first
            field, msg = named.group(1), named.group(2)
        if err["type"] == "extra_forbidden":
            section = field.split(".")[0] if "." in field else ""
            where = f"medattn recipes schema {section}".rstrip()
            msg = f"unknown key (check the spelling; valid keys: `{where}`)"
        given = err.get("input")
        shown = "" if err["type"] in ("extra_forbidden", "missing") or isinstance(given, dict) else f" (got {given!r})"
        more = f"; {len(exc.errors()) - 1} more problem(s)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{source}: field '{field}': {msg}{shown}{more}") from None
    check_model_matches_task(recipe, source)
    return recipe


def check_model_matches_task(recipe: Recipe, source: str = "recipe") -> None:
    """Refuse e.g. a segmentation U-Net in a classification recipe."""
    from medattn.errors import ModelError
    from medattn.models import model_task

    try:
        kind = model_task(recipe.model.name)
    except ModelError as exc:
        raise ConfigError(f"{source}: field 'model.name': {exc}") from None
    want = {"segmentation": "segmentation", "agcnn": "agcnn"}.get(recipe.task.type, "classification")
    if kind != want:
        raise ConfigError(
            f"{source}: field 'model.name': '{recipe.model.name}' is a {kind} model but task.type is "
            f"'{recipe.task.type}'; choose a {want} model"
        )


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["optimizer.lr=1e-3", "trainer.devices=2"]`` → ``{dotted: value}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set '{item}': expected KEY=VALUE, e.g. optimizer.lr=1e-3")
        try:
            out[key] = yaml.safe_load(val) if val.strip() else None
        except yaml.YAMLError:
            out[key] = val
        if isinstance(out[key], str) and _looks_float(out[key]):
            out[key] = float(out[key])
    return out


def _looks_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``raw`` with dotted keys set (missing sections are created)."""
    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {dotted}: '{'.'.join(parts[: i + 1])}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _lookup(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return "unset"
        doc = doc[part]
    return doc


def _shown(v: Any) -> str:
    import json

    return v if isinstance(v, str) else json.dumps(v)


def override_recipe(raw: dict[str, Any], overrides: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate ``raw`` with the ``--set`` ``overrides`` applied, recording each of them with the
    recipe's own value in :attr:`Recipe.overrides` (appended to any already recorded)."""
    out = apply_overrides(raw, overrides)
    ov = {k: v for k, v in overrides.items() if k != "overrides"}
    if ov:
        try:
            base: Any = recipe_from_dict(raw, source).model_dump(mode="json")  # defaults filled in
        except ConfigError:
            base = raw
        out["overrides"] = [*(raw.get("overrides") or []),
                            *(f"{k}={_shown(v)} (recipe: {_shown(_lookup(base, k))})" for k, v in ov.items())]
    return recipe_from_dict(out, source)


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file path, or the name of a recipe shipped with medattn (``medattn recipes``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (RECIPE_DIR / f"{name_or_path}.yaml", RECIPE_DIR / str(name_or_path)):
        if cand.is_file():
            return cand
    shipped = sorted(q.stem for q in RECIPE_DIR.glob("*.yaml")) if RECIPE_DIR.is_dir() else []
    raise ConfigError(f"recipe '{name_or_path}' not found; pass a YAML file or one of: {', '.join(shipped)}")


def list_recipes() -> list[Path]:
    """The shipped recipe files, sorted by name."""
    return sorted(RECIPE_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe (a shipped name or a YAML path)."""
    path = find_recipe(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"recipe '{path}'{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    return override_recipe(raw or {}, overrides or {}, source=f"recipe '{path.name}'")


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML (every default written out)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
