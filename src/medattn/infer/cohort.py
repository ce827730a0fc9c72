"""Cohorts of slides: ``medattn slide`` over many slides, on one machine, in shards for any
scheduler, or on a Dask cluster.

An output folder ``D`` holds:

* ``D/<slide>/``: one finished slide (the outputs of :func:`medattn.infer.slide.run_slide`). A
  slide runs in ``D/.partial/<slide>/`` and is renamed to ``D/<slide>/`` when complete, so its
  folder appears whole or not at all; an interrupted slide resumes from its partial ``tiles.csv``
  on the next run, and finished slides are skipped.
* ``D/cohort.json``: the bundle's weights and the settings that change results; a rerun into
  ``D`` with others is refused (its finished slides would be mixed with new ones).
* ``D/cohort.csv``: one row per slide (:data:`COLUMNS`), sorted by slide, and
  ``D/failed_slides.csv`` (slide, path, error) when any failed.
* ``D/shards/cohort-K-of-N.csv`` (and ``failed-K-of-N.csv``): the rows of ``--shard K/N``;
  :func:`merge_shards` (``medattn slide-merge D``) builds ``D/cohort.csv`` from them.

A shard holds the slides whose id hashes to it (SHA-256 of the id, mod N): stable when the
manifest is reordered or grows. The Dask engine (:func:`dask_rows`) runs one task per slide,
with its CPU/GPU request as worker resources, on workers that read the slides and the bundle and
write ``D`` on storage they share with the caller.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medattn.errors import ConfigError, DataError
from medattn.infer.records import format_cell
from medattn.io import atomic_write_json, atomic_write_text, ensure_dir

__all__ = [
    "SLIDE_SUFFIXES", "COLUMNS", "SEG_COLUMNS", "ENGINES", "SlideItem", "CohortOptions", "slide_items",
    "parse_shard", "shard_of", "run_one", "run_cohort", "merge_shards", "read_table",
]

SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
PARTIAL = ".partial"
SHARDS = "shards"
COLUMNS = ("slide", "status", "tiles", "tissue_mm2", "tumour_fraction", "topk_mean", "max", "ood_share", "seconds",
           "warnings", "error", "path")
"""Columns of ``cohort.csv`` for a patch classifier: ``tiles`` predicted, ``tissue_mm2``,
``tumour_fraction`` (share of the predicted tiles at or over the bundle threshold),
``topk_mean`` (mean of the ``top_k`` highest tile scores), ``max``, ``ood_share`` (share of tiles
over the bundle's out-of-distribution threshold), ``seconds`` (the slide's last
run), ``warnings`` (a JSON list), ``error`` (failed slides)."""
SEG_COLUMNS = ("slide", "status", "blocks", "nuclei", "seconds", "warnings", "error", "path")
"""Columns of ``cohort.csv`` for a nuclei segmenter."""
ENGINES = ("local", "dask")
_SETTINGS = ("mpp", "model_mpp", "min_tissue", "tissue_method", "top_k", "region", "block", "cam")
_SHARD_FILE = re.compile(r"cohort-(\d+)-of-(\d+)\.csv$")


@dataclass(frozen=True)
class SlideItem:
    """One slide of a cohort: its id (the name of its output folder) and its file."""

    slide: str
    path: str


@dataclass
class CohortOptions:
    """Options of :func:`run_cohort` (the CLI flags of ``medattn slide``)."""

    out: Path
    slide: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of :class:`~medattn.infer.slide.SlideOptions` (all but out, resume, progress)."""
    shard: tuple[int, int] | None = None
    """``(K, N)``: only the K-th of N stable shards (1-based)."""
    engine: str = "local"
    address: str | None = None
    """Dask scheduler: ``tcp://host:8786``, a scheduler file, ``auto`` (the Dask config's
    ``scheduler-address`` / ``DASK_SCHEDULER_ADDRESS``, else a local cluster) or ``None`` (a local
    cluster on this machine)."""
    cpus_per_slide: int = 1
    gpus_per_slide: float = 0.0
    device: str | None = None
    progress: Callable[[SlideItem], Callable[[int, int], None] | None] | None = None
    """Local engine: a tile-progress callback for each slide."""
    on_row: Callable[[dict[str, Any]], None] | None = None
    """Called with each slide's row as it finishes."""
    load: Callable[..., Any] | None = None
    """Dask engine: how a worker loads the bundle, ``load(path, device=...)`` —
    :func:`medattn.bundle.load_bundle`, passed in by the caller (inference sits below bundles)."""


def slide_items(inputs: list[str], exclude: str | Path | None = None) -> list[SlideItem]:
    """The slides named by files, folders (recursively, by suffix), globs and CSV manifests
    (column ``path``, relative to the CSV), each with a unique id: its file stem, with its
    folders when stems repeat. Files under ``exclude`` (the output folder: its ``heatmap.tif``
    files are no slides) are left out."""
    from medattn.infer.inputs import output_names, resolve_inputs

    paths = resolve_inputs(inputs, SLIDE_SUFFIXES, "whole-slide images")
    if exclude is not None:
        ex = Path(exclude).resolve()
        paths = [p for p in paths if not p.resolve().is_relative_to(ex)]
        if not paths:
            raise DataError(f"every slide given lies inside the output folder '{exclude}'; choose another --out")
    names = [n if not n.startswith(".") else f"_{n[1:]}" for n in output_names(paths)]
    return [SlideItem(n, str(p)) for n, p in zip(names, paths, strict=True)]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` → ``(K, N)`` with ``1 <= K <= N``."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard '{text}' is not K/N with 1 <= K <= N (e.g. 1/4; Slurm: "
                          "$((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT)")
    return int(m.group(1)), int(m.group(2))


def shard_of(slide: str, n: int) -> int:
    """The shard (1..n) of a slide id: SHA-256 of the id mod ``n``, whatever the manifest's order."""
    return int.from_bytes(hashlib.sha256(slide.encode("utf-8")).digest()[:8], "big") % n + 1


def _row(item: SlideItem, status: str, **values: Any) -> dict[str, Any]:
    return {"slide": item.slide, "status": status, **values, "path": item.path}


def summary_row(summary: dict[str, Any], item: SlideItem, status: str) -> dict[str, Any]:
    """A slide's ``cohort.csv`` row from its ``summary.json``."""
    warnings = list(summary.get("warnings") or [])
    common = {"seconds": round(float((summary.get("timings") or {}).get("total_s", 0.0)), 2),
              "warnings": json.dumps(warnings, ensure_ascii=False) if warnings else "", "error": ""}
    if summary.get("task") == "segmentation":
        return _row(item, status, blocks=summary["blocks"], nuclei=summary["nuclei"], **common)
    topk = next((v for k, v in summary.items() if re.fullmatch(r"top\d+_mean_probability", k)), None)
    return _row(item, status, tiles=summary["tiles_predicted"], tissue_mm2=summary["tissue_area_mm2"],
                tumour_fraction=summary["positive_fraction"], topk_mean=topk, max=summary["max_probability"],
                ood_share=summary.get("tile_ood_share"),
                **common)


def run_one(predictor: Any, item: SlideItem, out: str | Path, slide_kw: dict[str, Any],
            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run one slide of a cohort into ``out/<slide>/`` atomically and return its row.

    A finished folder is skipped (its row comes from its ``summary.json``); a partial one in
    ``out/.partial/<slide>/`` is resumed. Any error of the slide (unreadable, truncated, no
    scale, …) becomes a ``failed`` row with the error in one line; an interrupt propagates and
    leaves the partial folder for the next run.
    """
    from medattn.infer.slide import SlideOptions, run_slide
    from medattn.infer.slide_io import error_line

    out = Path(out)
    final, work = out / item.slide, out / PARTIAL / item.slide
    if (final / "summary.json").is_file():
        return summary_row(json.loads((final / "summary.json").read_text(encoding="utf-8")), item, "skipped")
    t0 = time.perf_counter()
    if final.exists():
        return _row(item, "failed", seconds=0.0, warnings="", error=f"'{final}' exists but is not a finished "
                    "slide folder (no summary.json); move it away")
    try:
        resume = work.is_dir() and any(work.iterdir())
        summary = run_slide(predictor, item.path, SlideOptions(out=work, resume=resume, progress=progress, **slide_kw))
        os.replace(work, final)
    except Exception as exc:  # noqa: BLE001 - any failure of one slide is recorded and the cohort goes on
        if (final / "summary.json").is_file():  # another process finished it meanwhile
            shutil.rmtree(work, ignore_errors=True)
            return summary_row(json.loads((final / "summary.json").read_text(encoding="utf-8")), item, "skipped")
        return _row(item, "failed", seconds=round(time.perf_counter() - t0, 2), warnings="", error=error_line(exc))
    return summary_row(summary, item, "ok")


def _check_settings(out: Path, predictor: Any, slide_kw: dict[str, Any]) -> None:
    """Write ``cohort.json`` or refuse a rerun whose bundle or settings differ from it."""
    from medattn.infer.slide import SlideOptions

    so = SlideOptions(out=out, **slide_kw)  # the defaults of options not given
    cur = {"weights_sha256": predictor.meta.get("weights_sha256") or str(getattr(predictor, "source", "")),
           "task": predictor.task, "settings": json.loads(json.dumps({k: getattr(so, k) for k in _SETTINGS}))}
    path = out / "cohort.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        diffs = []
        if old.get("weights_sha256") != cur["weights_sha256"]:
            diffs.append("another bundle")
        for k, v in cur["settings"].items():
            if (old.get("settings") or {}).get(k) != v:
                diffs.append(f"{k} {(old.get('settings') or {}).get(k)} → {v}")
        if diffs:
            raise ConfigError(f"'{out}' holds a cohort run with other settings ({'; '.join(diffs)}); its finished "
                              "slides would be mixed with new ones: choose another --out or delete it")
        return
    atomic_write_json(path, {**cur, "bundle": str(getattr(predictor, "source", ""))})


def _validate(opts: CohortOptions) -> None:
    """Options refused before anything is created."""
    from medattn.infer.tissue import TISSUE_METHODS

    kw = opts.slide
    if opts.engine not in ENGINES:
        raise ConfigError(f"--engine '{opts.engine}' is unknown; use one of {', '.join(ENGINES)}")
    if not 0 <= float(kw.get("min_tissue", 0.5)) <= 1:
        raise ConfigError(f"--min-tissue must be in [0, 1], got {kw.get('min_tissue')}")
    if kw.get("tissue_method", "saturation") not in TISSUE_METHODS:
        raise ConfigError(f"--tissue-method '{kw.get('tissue_method')}' is unknown; use one of "
                          f"{', '.join(TISSUE_METHODS)}")
    if opts.cpus_per_slide < 1 or opts.gpus_per_slide < 0:
        raise ConfigError("--cpus-per-slide must be >= 1 and --gpus-per-slide >= 0")
    if opts.engine == "dask" and opts.load is None:
        raise ConfigError("the dask engine needs CohortOptions.load, how workers load the bundle "
                          "(medattn.bundle.load_bundle)")
    for name in ("mpp", "model_mpp"):
        if kw.get(name) is not None and not float(kw[name]) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0 µm per pixel, got {kw[name]}")


def table_text(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """CSV text of ``rows`` sorted by slide (floats to 6 significant digits)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in sorted(rows, key=lambda r: str(r["slide"])):
        w.writerow([format_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def _write_tables(rows: list[dict[str, Any]], table: Path, failed_table: Path, columns: tuple[str, ...]) -> None:
    atomic_write_text(table, table_text(rows, columns))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        atomic_write_text(failed_table, table_text(failed, ("slide", "path", "error")))
    else:
        failed_table.unlink(missing_ok=True)


def read_table(path: str | Path) -> list[dict[str, str]]:
    """Rows of a ``cohort.csv`` as strings."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def run_cohort(predictor: Any, items: list[SlideItem], opts: CohortOptions) -> dict[str, Any]:
    """Run the slides of ``items`` (or of one shard of them) and write the cohort table.

    Args:
        predictor: the loaded bundle; the local engine runs it, Dask workers load its ``source``
            with ``opts.load``.
        items: the whole manifest (:func:`slide_items`); ``opts.shard`` selects from it.
        opts: output folder, per-slide options, shard and engine.

    Returns:
        ``rows`` (this run's, one per selected slide), ``table`` and ``failed_table`` paths,
        ``selected`` and ``total`` slide counts.
    """
    _validate(opts)
    ids = [it.slide for it in items]
    if len(set(ids)) < len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"slide ids repeat in the manifest ({', '.join(dup[:5])}); each slide needs its own id")
    selected = items if opts.shard is None else [it for it in items if shard_of(it.slide, opts.shard[1]) == opts.shard[0]]
    out = ensure_dir(opts.out)
    _check_settings(out, predictor, opts.slide)
    rows: list[dict[str, Any]] = []
    if opts.engine == "dask":
        stream: Iterator[dict[str, Any]] = dask_rows(predictor.source, selected, opts)
    else:
        stream = (run_one(predictor, it, out, opts.slide, opts.progress(it) if opts.progress else None)
                  for it in selected)
    for row in stream:
        rows.append(row)
        if opts.on_row:
            opts.on_row(row)
    if (out / PARTIAL).is_dir() and not any((out / PARTIAL).iterdir()):
        (out / PARTIAL).rmdir()
    columns = SEG_COLUMNS if predictor.task == "segmentation" else COLUMNS
    if opts.shard is None:
        table, failed_table = out / "cohort.csv", out / "failed_slides.csv"
    else:
        k, n = opts.shard
        table, failed_table = out / SHARDS / f"cohort-{k}-of-{n}.csv", out / SHARDS / f"failed-{k}-of-{n}.csv"
    _write_tables(rows, table, failed_table, columns)
    return {"rows": rows, "table": table, "failed_table": failed_table, "selected": len(selected),
            "total": len(items)}


def merge_shards(out: str | Path) -> dict[str, Any]:
    """Build ``out/cohort.csv`` (and ``failed_slides.csv``) from the shard tables in ``out/shards``.

    Raises:
        ConfigError: no shard table, shards of different counts, or a shard not run yet.
    """
    out = Path(out)
    found: dict[int, Path] = {}
    counts = set()
    for f in sorted((out / SHARDS).glob("cohort-*-of-*.csv")):
        m = _SHARD_FILE.fullmatch(f.name)
        if m:
            found[int(m.group(1))] = f
            counts.add(int(m.group(2)))
    if not found:
        raise ConfigError(f"'{out}' has no shard tables ({SHARDS}/cohort-K-of-N.csv); run medattn slide … "
                          f"--shard K/N --out {out} for each K first")
    if len(counts) > 1:
        raise ConfigError(f"'{out / SHARDS}' holds shards of different counts (of {', '.join(map(str, sorted(counts)))}); "
                          "keep one sharding of the cohort")
    n = counts.pop()
    missing = sorted(set(range(1, n + 1)) - set(found))
    if missing:
        raise ConfigError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{k}/{n}' for k in missing)} of '{out}' "
                          f"{'have' if len(missing) > 1 else 'has'} no table yet; run medattn slide … --shard K/{n} "
                          f"--out {out} for {'them' if len(missing) > 1 else 'it'} first")
    rows: list[dict[str, Any]] = []
    header: tuple[str, ...] | None = None
    for k in sorted(found):
        with open(found[k], encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            header = header or tuple(reader.fieldnames or COLUMNS)
            rows += list(reader)
    ids = [r["slide"] for r in rows]
    if len(set(ids)) < len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"slides {', '.join(dup[:5])} appear in several shard tables of '{out}'; were the shards "
                        "run with different manifests?")
    table, failed_table = out / "cohort.csv", out / "failed_slides.csv"
    _write_tables(rows, table, failed_table, header or COLUMNS)
    return {"rows": rows, "table": table, "failed_table": failed_table, "shards": n}


# ---------------------------------------------------------------------------------------------
# Dask distributed: one task per slide.
# ---------------------------------------------------------------------------------------------

_PREDICTORS: dict[tuple[str, str | None], Any] = {}


def _dask_task(bundle: str, item: SlideItem, out: str, slide_kw: dict[str, Any], cpus: int,
               device: str | None, load: Callable[..., Any]) -> dict[str, Any]:
    """One slide on a Dask worker: its CPU share as torch threads, the bundle loaded once per
    worker process, DataLoader reading in the task (a daemonic worker cannot fork readers)."""
    import multiprocessing

    import torch

    torch.set_num_threads(cpus)
    key = (bundle, device)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = load(bundle, device=device)
    kw = dict(slide_kw)
    if multiprocessing.current_process().daemon:
        kw["workers"] = 0
    return run_one(_PREDICTORS[key], item, out, kw)


def _dask_client(address: str | None, cpus: int) -> Any:
    """A client of the scheduler at ``address``, or of a local cluster of one single-threaded
    worker per ``cpus`` cores of this machine."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--engine dask needs Dask distributed; pip install 'medattn[cluster]'") from None
    if address == "auto":
        address = dask.config.get("scheduler-address", None) or None
    try:
        if not address or address == "local":
            n = max(1, (os.cpu_count() or 1) // cpus)
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   resources={"CPU": cpus})
            client = Client(cluster)
            client._medattn_cluster = cluster  # closed with the client
            return client
        if Path(address).is_file():
            return Client(scheduler_file=address, timeout="20s")
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        from medattn.infer.slide_io import error_line

        raise ConfigError(f"--address {address}: cannot reach a Dask scheduler ({error_line(exc)}); start one "
                          "(dask scheduler) or drop --address for a cluster on this machine") from None


def _resources(client: Any, cpus: int, gpus: float) -> dict[str, float] | None:
    """The task's worker-resource request: CPU when the workers declare CPU, GPU when asked."""
    workers = client.scheduler_info().get("workers", {}).values()
    declared = [w.get("resources") or {} for w in workers]
    res: dict[str, float] = {}
    if any("CPU" in d for d in declared):
        if not any(d.get("CPU", 0) >= cpus for d in declared):
            raise ConfigError(f"--cpus-per-slide {cpus}: no Dask worker declares that many (resources CPU="
                              f"{max(d.get('CPU', 0) for d in declared):g} at most)")
        res["CPU"] = cpus
    if gpus:
        if not any(d.get("GPU", 0) >= gpus for d in declared):
            raise ConfigError(f"--gpus-per-slide {gpus:g}: no Dask worker declares a GPU resource; start the "
                              "workers with dask worker ADDRESS --resources 'GPU=1'")
        res["GPU"] = gpus
    return res or None


def dask_rows(bundle: str | Path, items: list[SlideItem], opts: CohortOptions) -> Iterator[dict[str, Any]]:
    """Rows of ``items`` run as one Dask task each, in the order they finish. A task lost with
    its worker (killed, out of memory) after Dask's retries becomes a failed row."""
    from medattn.infer.slide_io import error_line

    client = _dask_client(opts.address, opts.cpus_per_slide)
    try:
        from dask.distributed import as_completed

        res = _resources(client, opts.cpus_per_slide, opts.gpus_per_slide)
        bundle_abs, out_abs = str(Path(bundle).resolve()), str(Path(opts.out).resolve())
        futures = {client.submit(_dask_task, bundle_abs, it, out_abs, opts.slide, opts.cpus_per_slide, opts.device,
                                 opts.load, key=f"medattn-slide-{it.slide}-{os.getpid()}-{time.time_ns()}", resources=res,
                                 pure=False): it for it in items}
        for fut in as_completed(futures):
            it = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker fails that slide only
                yield _row(it, "failed", seconds=0.0, warnings="", error=f"the Dask task failed: {error_line(exc)}")
    finally:
        cluster = getattr(client, "_medattn_cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
