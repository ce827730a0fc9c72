"""A trained smoke PCam bundle carries contract, OOD model, conformal calibration and card; the
Python API and REST return warnings, sets and uncertainty; strict answers 422 (issue 17 done-when)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _train_patch(run: Path, i: int = 0) -> np.ndarray:
    import pandas as pd

    from medattn.data.formats.registry import read_item

    files = pd.read_csv(run / "split.csv")
    return read_item(json.loads((run / "run.json").read_text())["data"], files[files["split"] == "test"]["file"].iloc[i])


def test_bundle_and_metrics_carry_trust_numbers(smoke_pcam_run: Path) -> None:
    meta = json.loads((smoke_pcam_run / "bundle" / "bundle.json").read_text())
    assert meta["contract"]["height"] == [96, 96, 96] and meta["contract"]["colour"] == "colour"
    ood = meta["ood"]
    assert ood["method"] == "multi_layer_mahalanobis" and np.isfinite(ood["threshold"])
    assert {"head", "input"} <= set(ood["layers"]) and len(ood["layers"]) >= 4  # stages + head + input
    assert all(c["dim"] > 0 and c["rank"] >= 1 and c["scale"] > 0 for c in ood["components"])
    assert 0 < meta["contract"]["object_scale"]["fine_detail"][0] <= meta["contract"]["object_scale"]["fine_detail"][-1]
    assert set(meta["conformal"]["strata"]) == {"0", "1"} and meta["conformal"]["score"] == "mondrian"
    assert meta["synthetic_data"] is True and meta["card"]["training_data"]["synthetic"] is True
    assert "SYNTHETIC" in meta["card"]["limitations"][0]
    doc = json.loads((smoke_pcam_run / "metrics.json").read_text())
    for a in ("alpha_0.1", "alpha_0.2"):
        c = doc["conformal"][a]
        assert 0 <= c["coverage"]["ci_low"] <= c["coverage"]["value"] <= c["coverage"]["ci_high"] <= 1
        assert 0 <= c["mean_set_size"]["value"] <= 2
    assert 0 <= doc["selective"]["aurc"] <= 1 and len(doc["selective"]["coverage"]) == len(doc["selective"]["risk"])
    assert "<" not in json.dumps(meta)  # plain numbers and text, no object reprs


def test_predict_flags_large_grey_and_foreign_images(smoke_pcam_run: Path, tissue_1000: np.ndarray) -> None:
    from medattn.bundle import load_bundle

    pred = load_bundle(smoke_pcam_run / "bundle")
    patch = _train_patch(smoke_pcam_run)
    grey = np.repeat(patch.mean(2, keepdims=True).astype(np.uint8), 3, 2)
    xray = np.clip(np.random.default_rng(0).normal(40, 10, (96, 96)), 0, 255).astype(np.uint8)
    ok, big, g, x = pred.infer([patch, tissue_1000, grey, xray], alpha=0.2)
    assert not [w for w in ok["warnings"] if w["code"] != "ood"]
    # a large field of view is tiled at its own scale (never squashed), with per-tile trust summaries
    from medattn.infer.tiling import tile_starts

    n = len(tile_starts(1000, pred.input_hw[0], 0))
    assert big["handling"] == "tiled" and big["tiles"] == n * n
    assert not {"input_size", "aspect"} & {w["code"] for w in big["warnings"]}
    assert 0 <= big["tile_ood_share"] <= 1 and abs(sum(big["tile_sets"].values()) - 1) < 1e-3
    assert set("|".join(big["tile_sets"]).split("|")) <= {"normal", "tumour", "(empty)"} and big["alpha"] == 0.2
    squashed = pred.infer(tissue_1000, tile=False)[0]
    assert [w["code"] for w in squashed["warnings"]][:1] == ["input_size"]
    assert "medattn slide" in squashed["warnings"][0]["message"] and "1000×1000" in squashed["warnings"][0]["message"]
    assert "channels" in {w["code"] for w in g["warnings"]}
    assert {"channels", "intensity"} <= {w["code"] for w in x["warnings"]}
    assert set(ok["prediction_set"]) <= {"normal", "tumour"} and ok["alpha"] == 0.2
    assert 0 <= ok["uncertainty"]["entropy"] <= 1 and ok["ood_score"] >= 0
    assert x["ood_score"] > ok["ood_score"]
    mc = pred.infer(patch, mc_samples=8)[0]["uncertainty"]
    assert mc["mc_std"] >= 0 and 0 <= mc["mutual_information"] <= 1
    assert "warnings" not in pred.infer(patch, trust=False)[0]


def test_card_printed_and_external_evaluation_appended(smoke_pcam_run: Path, tmp_path: Path) -> None:
    import shutil

    from medattn.bundle import append_external_evaluation, load_bundle
    from medattn.trust.card import format_card

    b = tmp_path / "bundle"
    shutil.copytree(smoke_pcam_run / "bundle", b)
    text = format_card(load_bundle(b).card)
    assert "Research use only" in text and "SYNTHETIC" in text and "Limitations" in text
    append_external_evaluation(b, {"data": "/data/site_b", "n_items": 10, "n_groups": 3,
                                   "metrics": {"auroc": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}}})
    card = load_bundle(b).card  # checksum still valid: only bundle.json changed
    assert card["evaluation"]["external"][0]["metrics"]["auroc"] == {"value": 0.8, "ci": [0.7, 0.9]}
    assert "site_b" in format_card(card)


def test_rest_warns_and_strict_is_422(smoke_pcam_run: Path, tissue_1000: np.ndarray) -> None:
    from fastapi.testclient import TestClient

    from medattn.serve.api import create_app

    with TestClient(create_app(smoke_pcam_run / "bundle", ui=False, max_wait_ms=5)) as c:
        big = ("file", ("tissue.png", _png(tissue_1000), "image/png"))
        r = c.post("/v1/predict", files=[big])
        assert r.status_code == 200
        p = r.json()["predictions"][0]  # tiled at its own scale, as `medattn predict` does
        assert p["handling"] == "tiled" and p["tile_sets"] and "tile_ood_share" in p
        xray = np.clip(np.random.default_rng(0).normal(40, 10, (96, 96)), 0, 255).astype(np.uint8)
        grey = ("file", ("xray.png", _png(xray), "image/png"))
        r = c.post("/v1/predict?strict=true", files=[grey])
        assert r.status_code == 422 and r.json()["error"] == "input_warnings"
        assert "xray.png" in r.json()["warnings"]
        small = ("file", ("patch.png", _png(_train_patch(smoke_pcam_run)), "image/png"))
        r = c.post("/v1/predict?strict=true&alpha=0.2", files=[small])
        assert r.status_code in (200, 422)  # an in-range patch may still score above the OOD threshold
        if r.status_code == 200:
            assert r.json()["predictions"][0]["alpha"] == 0.2
        assert c.post("/v1/predict?alpha=2", files=[small]).status_code == 422
        r = c.post("/v1/explain?strict=true", files=[grey], data={"format": "json"})
        assert r.status_code == 422
        card = c.get("/v1/model").json()["card"]
        assert card["training_data"]["synthetic"] is True


def test_cli_info_prints_the_card(smoke_pcam_run: Path) -> None:
    from typer.testing import CliRunner

    from medattn.cli import app

    res = CliRunner().invoke(app, ["info", str(smoke_pcam_run / "bundle")])
    assert res.exit_code == 0, res.output
    assert "Research use only" in res.output and "SYNTHETIC" in res.output and "Conformal sets" in res.output
    res = CliRunner().invoke(app, ["info", str(smoke_pcam_run / "bundle"), "--json"])
    assert json.loads(res.output)["card"]["training_data"]["synthetic"] is True
    from medattn.cli import main

    assert main(["info", str(smoke_pcam_run / "nope")]) == 2


def test_external_evaluation_reports_coverage_and_lands_in_the_card(smoke_pcam_run: Path, tmp_path: Path) -> None:
    import shutil

    from medattn.engine.evaluate_cli import evaluate_path

    b = tmp_path / "bundle"
    shutil.copytree(smoke_pcam_run / "bundle", b)
    data = json.loads((smoke_pcam_run / "run.json").read_text())["data"]
    res = evaluate_path(b, data=data, external=True, out=tmp_path / "ext")
    doc = json.loads((tmp_path / "ext" / "metrics.json").read_text())
    assert res["external"] and doc["conformal"]["calibrated_on"] == "the bundle's validation split"
    assert 0 <= doc["conformal"]["alpha_0.1"]["coverage"]["value"] <= 1
    per_class = {k for k in doc["conformal"]["alpha_0.1"] if k.startswith("coverage_")}
    assert per_class == {"coverage_normal", "coverage_tumour"}  # per class, with CIs
    g = doc["conformal"]["guarantee"]
    assert doc["conformal_coverage_held"] is g["held"] and set(g["alphas"]) == {"alpha_0.1", "alpha_0.2"}
    card = json.loads((b / "bundle.json").read_text())["card"]
    assert card["evaluation"]["external"][-1]["n_items"] == doc["n_items"]
    assert card["evaluation"]["external"][-1]["conformal_coverage"]["held"] is g["held"]
    from medattn.trust.card import EXCHANGEABILITY, format_card

    assert card["evaluation"]["conformal_assumption"] == EXCHANGEABILITY
    assert "Coverage of the prediction sets there" in format_card(card)
