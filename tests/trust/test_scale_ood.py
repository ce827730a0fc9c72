"""Warnings that fire when they must (issue 21): declared resolutions read by the one decoder, the
scale check (declared µm/px and object scale), the multi-layer OOD model and its threshold, tiled
inputs through predict and REST alike, slide tile trust, Mondrian multiclass sets, the external
coverage guarantee and the screening operating point — all on synthetic data."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from medattn.decode import read_image
from medattn.trust.contract import check_scale, object_scale_record
from medattn.trust.ood import (
    HEAD,
    INPUT,
    capture_features,
    fit_gaussian,
    fit_ood,
    input_features,
    ood_scores,
    stage_layers,
)

# -- declared resolution -------------------------------------------------------------------------


def _rgb(n: int = 40) -> np.ndarray:
    return (np.random.default_rng(0).random((n, n, 3)) * 255).astype(np.uint8)


def _mpp(data: Any) -> tuple[Any, Any]:
    info: dict[str, Any] = {}
    read_image(data, info=info)
    return info["mpp"], info["mpp_source"]


def test_decoder_reports_declared_resolution() -> None:
    import tifffile

    b = io.BytesIO()
    tifffile.imwrite(b, _rgb(), resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    assert _mpp(b.getvalue()) == (pytest.approx(0.25), "TIFF resolution tags")
    b = io.BytesIO()
    tifffile.imwrite(b, _rgb(), description="Aperio Image Library|AppMag = 40|MPP = 0.2525")
    assert _mpp(b.getvalue())[0] == pytest.approx(0.2525)
    b = io.BytesIO()
    tifffile.imwrite(b, _rgb(), resolution=(2.0, 2.0), imagej=True, metadata={"unit": "micron"})
    assert _mpp(b.getvalue())[0] == pytest.approx(0.5)
    for dpi, expect in ((72, None), (101600, 0.25)):  # a screen default is not a scan resolution
        b = io.BytesIO()
        Image.fromarray(_rgb()).save(b, "PNG", dpi=(dpi, dpi))
        assert _mpp(b.getvalue())[0] == (None if expect is None else pytest.approx(expect))
    assert _mpp(_rgb()) == (None, None)


def test_decoder_reports_dicom_pixel_spacing() -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.139, 0.139]
    ds.PixelData = (np.arange(256, dtype=np.uint16) * 8).reshape(16, 16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert _mpp(buf.getvalue()) == (pytest.approx(139.0), "DICOM PixelSpacing")


# -- the scale check ----------------------------------------------------------------------------


def test_scale_check_compares_declared_resolution_at_the_model_input() -> None:
    meta = {"recipe": {"data": {"mpp": 4.0}}}
    assert check_scale(meta, mpp=4.5) == ([], [])  # within 25%
    warns, notes = check_scale(meta, mpp=0.25, mpp_source="TIFF resolution tags")
    assert [w["code"] for w in warns] == ["scale"] and "0.25" in warns[0]["message"] and not notes
    # a 100 px image at 2 µm/px resized to a 50 px input is seen at 4 µm per model pixel
    assert check_scale(meta, mpp=2.0, zoom=0.5) == ([], [])
    warns, notes = check_scale(meta)
    assert warns == [] and [n["code"] for n in notes] == ["scale_unknown"]
    assert check_scale({}) == ([], [])  # a bundle without a scale notes nothing


def _texture(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink H&E-like texture with nuclei of about 2 px (a low-magnification patch)."""
    img = np.full((n, n, 3), (230, 180, 210), np.float32)
    dots = rng.random((n, n)) < 0.15
    img[dots] = (90, 40, 120)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _zoomed(img: np.ndarray, k: int) -> np.ndarray:
    """The centre of ``img`` enlarged ``k`` times: the same tissue at a k× higher magnification."""
    n = img.shape[0]
    c = img[n // 2 - n // (2 * k): n // 2 + n // (2 * k), n // 2 - n // (2 * k): n // 2 + n // (2 * k)]
    return np.asarray(Image.fromarray(c).resize((n, n), Image.Resampling.BICUBIC))


def _batch(imgs: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


def test_object_scale_flags_a_higher_magnification_without_metadata() -> None:
    rng = np.random.default_rng(0)
    train = [_texture(48, rng) for _ in range(60)]
    rec = object_scale_record(input_features(_batch(train), None, None))
    meta = {"contract": {"object_scale": rec}}
    same = input_features(_batch([_texture(48, rng) for _ in range(20)]), None, None)
    assert all(check_scale(meta, inputs=same[i:i + 1])[0] == [] for i in range(20))
    big = input_features(_batch([_zoomed(_texture(192, rng), 8) for _ in range(5)]), None, None)
    for i in range(5):
        warns, _ = check_scale(meta, inputs=big[i:i + 1])
        assert [w["code"] for w in warns] == ["scale"] and "coarser" in warns[0]["message"]


def test_input_profile_flags_magnified_patches_and_older_input_components_still_score() -> None:
    """The input component's blob-energy profile flags the same texture seen 4× larger (a crop of a
    higher magnification) at about the design rate of in-distribution patches; a component fitted
    before the profile existed (2C + 2 columns) reads the columns it was fitted on."""
    from medattn.trust.ood import INPUT, component_scores

    rng = np.random.default_rng(3)
    feats = {INPUT: input_features(_batch([_texture(48, rng) for _ in range(300)]), None, None)}
    valid = {INPUT: input_features(_batch([_texture(48, rng) for _ in range(120)]), None, None)}
    assert feats[INPUT].shape == (300, 2 * 3 + 9 + 2)
    doc = fit_ood(feats, None, valid, seed=0)
    new = input_features(_batch([_texture(48, rng) for _ in range(100)]), None, None)
    big = input_features(_batch([_zoomed(_texture(192, rng), 4) for _ in range(40)]), None, None)
    assert np.mean(ood_scores(doc, {INPUT: new}) > doc["threshold"]) < 0.15
    assert np.mean(ood_scores(doc, {INPUT: big}) > doc["threshold"]) > 0.9
    cols = np.r_[0:6, -2, -1]
    old = fit_ood({INPUT: feats[INPUT][:, cols]}, None, {INPUT: valid[INPUT][:, cols]}, seed=0)
    np.testing.assert_allclose(component_scores(old, {INPUT: big})[INPUT],
                               component_scores(old, {INPUT: big[:, cols]})[INPUT])


# -- the multi-layer OOD model --------------------------------------------------------------------


def test_stage_layers_and_capture_of_a_resnet() -> None:
    from medattn.models import create_model

    m = create_model("resnet18", num_classes=1).eval()
    x = torch.randn(2, 3, 50, 50)
    layers = stage_layers(m, x)
    assert layers == ["layer1", "layer2", "layer3", "layer4"]  # global pooling is not a stage
    with capture_features(m, [*layers, HEAD]) as store:
        m(x)
    assert store["layer1"][0].shape == (2, 128) and store[HEAD][0].shape == (2, 512)


def test_fit_ood_threshold_flags_about_five_percent_and_any_shifted_component() -> None:
    rates = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        tr = {"a": rng.normal(size=(800, 16)), "b": rng.normal(size=(800, 4))}
        va = {"a": rng.normal(size=(400, 16)), "b": rng.normal(size=(400, 4))}
        doc = fit_ood(tr, rng.integers(0, 2, 800), va, rng.integers(0, 2, 400),
                      valid_groups=[f"p{i % 40}" for i in range(400)], seed=seed)
        new = {"a": rng.normal(size=(3000, 16)), "b": rng.normal(size=(3000, 4))}
        rates.append(np.mean(ood_scores(doc, new) > doc["threshold"]))
        far_b = {"a": rng.normal(size=(300, 16)), "b": rng.normal(size=(300, 4)) + 3.0}
        assert np.mean(ood_scores(doc, far_b) > doc["threshold"]) > 0.95  # one component is enough
    assert 0.03 < np.mean(rates) < 0.08
    assert doc["layers"] == ["a", "b"] and json.loads(json.dumps(doc)) == doc  # plain numbers
    assert [c["rank"] for c in doc["components"]] == [8, 2]  # at most half of each component's features


def test_single_layer_doc_of_older_bundles_still_scores() -> None:
    rng = np.random.default_rng(1)
    f = rng.normal(size=(500, 8))
    old = fit_gaussian(f, None, f[:200], rank=7)
    s = ood_scores(old, rng.normal(size=(10, 8)) + 5)
    assert (s > old["threshold"]).all()


# -- a served bundle: predict, REST, slide -------------------------------------------------------


@pytest.fixture(scope="module")
def scaled_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny binary bundle at 4 µm/px (32 px input) with an input contract, object scale and OOD
    model fitted on synthetic low-magnification texture."""
    from medattn.bundle import save_bundle
    from medattn.models import create_model
    from medattn.trust.contract import image_stats, summarise_stats

    torch.manual_seed(0)
    model = create_model("patch_cnn_baseline", num_classes=1, width=0.125).eval()
    rng = np.random.default_rng(0)
    imgs = [_texture(32, rng) for _ in range(200)]
    mean, std = [0.5] * 3, [0.25] * 3
    x = (_batch(imgs) - 0.5) / 0.25
    layers = [*stage_layers(model, x[:2]), HEAD]

    def feats(t: torch.Tensor) -> dict[str, np.ndarray]:
        with capture_features(model, layers) as st, torch.no_grad():
            model(t)
        return {**{k: torch.cat(v).numpy() for k, v in st.items()}, INPUT: input_features(t, mean, std)}

    tr, va = feats(x[:120]), feats(x[120:])
    contract = summarise_stats([image_stats(i) for i in imgs], in_chans=3, input_size=32)
    contract["object_scale"] = object_scale_record(tr[INPUT])
    meta = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 32, "in_chans": 3,
            "mean": mean, "std": std, "threshold": 0.5, "recipe": {"data": {"mpp": 4.0}},
            "contract": contract, "ood": fit_ood(tr, None, va, seed=0)}
    return save_bundle(model, meta, tmp_path_factory.mktemp("scaled") / "bundle")


def _tiff(img: np.ndarray, mpp: float | None) -> bytes:
    import tifffile

    b = io.BytesIO()
    kw = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if mpp else {}
    tifffile.imwrite(b, img, **kw)
    return b.getvalue()


def _codes(ans: dict[str, Any]) -> set[str]:
    return {w["code"] for w in ans["warnings"]}


def test_predict_and_rest_warn_alike_about_scale(scaled_bundle: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from medattn.bundle import load_bundle
    from medattn.serve.api import create_app

    pred = load_bundle(scaled_bundle, device="cpu")
    patch = _texture(32, np.random.default_rng(5))
    (tmp_path / "at40x.tif").write_bytes(_tiff(patch, 0.25))
    (tmp_path / "right.tif").write_bytes(_tiff(patch, 4.2))
    Image.fromarray(patch).save(tmp_path / "plain.png")
    at40, right, plain = pred.infer([tmp_path / "at40x.tif", tmp_path / "right.tif", tmp_path / "plain.png"])
    assert "scale" in _codes(at40) and "scale" not in _codes(right) and "scale" not in _codes(plain)
    assert [n["code"] for n in plain["notes"]] == ["scale_unknown"] and right["notes"] == []
    assert "scale" not in _codes(pred.infer(tmp_path / "at40x.tif", mpp=4.0)[0])  # --mpp replaces the header
    # a large 40x field of view without metadata: tiled at its own scale, flagged by the object scale
    big = _zoomed(_texture(1024, np.random.default_rng(6)), 8)[:400, :400]
    Image.fromarray(big).save(tmp_path / "big.png")
    tiled = pred.infer(tmp_path / "big.png")[0]
    assert tiled["handling"] == "tiled" and "scale" in _codes(tiled)
    assert 0 <= tiled["tile_ood_share"] <= 1 and tiled["notes"][0]["code"] == "scale_unknown"
    with TestClient(create_app(scaled_bundle, ui=False, max_wait_ms=5)) as c:
        def rest(name: str, body: bytes, **kw: Any) -> dict[str, Any]:
            r = c.post("/v1/predict", files=[("file", (name, body, "image/tiff"))], **kw)
            assert r.status_code == 200, r.text
            return r.json()["predictions"][0]

        assert _codes(rest("a.tif", _tiff(patch, 0.25))) == _codes(at40)
        assert _codes(rest("big.png", (tmp_path / "big.png").read_bytes())) == _codes(tiled)
        assert "scale" not in _codes(rest("a.tif", _tiff(patch, 0.25), params={"mpp": 4.0}))
        assert "scale" not in _codes(rest("a.tif", _tiff(patch, 0.25), data={"mpp": "4.0"}))  # form field
        assert rest("p.png", (tmp_path / "plain.png").read_bytes())["notes"][0]["code"] == "scale_unknown"


def test_cli_predict_mpp_option(scaled_bundle: Path, tmp_path: Path) -> None:
    from medattn.cli import main
    from medattn.infer.records import read_rows

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.tif").write_bytes(_tiff(_texture(32, np.random.default_rng(7)), 0.25))
    assert main(["predict", str(scaled_bundle), str(tmp_path / "in"), "--out", str(tmp_path / "p")]) == 0
    row = read_rows(tmp_path / "p" / "predictions.csv")[0]
    assert "scale" in {w["code"] for w in json.loads(row["warnings"])}
    assert main(["predict", str(scaled_bundle), str(tmp_path / "in"), "--out", str(tmp_path / "q"),
                 "--mpp", "4"]) == 0
    assert "scale" not in {w["code"] for w in json.loads(read_rows(tmp_path / "q" / "predictions.csv")[0]["warnings"])}


def test_slide_tiles_carry_ood_and_sets(scaled_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("shapely")
    from medattn.bundle import load_bundle
    from medattn.infer.records import read_rows
    from medattn.infer.slide import SlideOptions, run_slide
    from medattn.infer.testslides import synthetic_slide

    pred = load_bundle(scaled_bundle, device="cpu")
    pred.meta["ood"]["threshold"] = -1e9  # every tile out of distribution: the slide must say so
    slide, _ = synthetic_slide(tmp_path / "s.svs", grid=(2, 3), mpp=1.0)
    s = run_slide(pred, slide, SlideOptions(out=tmp_path / "o", workers=0))
    rows = read_rows(tmp_path / "o" / "tiles.csv")
    assert rows and all(r["ood"] == "1" for r in rows) and s["tile_ood_share"] == 1.0
    assert any(w.startswith("ood:") for w in s["warnings"])
    gj = json.loads((tmp_path / "o" / "slide.geojson").read_text())
    tiles = [f for f in gj["features"] if f["properties"]["objectType"] == "detection"]
    assert all(f["properties"]["measurements"]["ood"] == 1.0 for f in tiles)


# -- conformal: Mondrian sets, external coverage; the screening operating point ------------------


def test_mondrian_multiclass_covers_each_class() -> None:
    from medattn.trust.conformal import (
        coverage_stats,
        fit_conformal,
        per_class_coverage,
        set_membership,
    )

    rng = np.random.default_rng(0)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.choice(3, n, p=[0.7, 0.2, 0.1])
        logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[y] * np.array([2.0, 1.0, 0.3])[y, None]
        p = np.exp(logits)
        return y, p / p.sum(1, keepdims=True)

    yv, pv = draw(6000)
    yt, pt = draw(8000)
    aps = fit_conformal("multiclass", yv, pv, ["a", "b", "c"])
    mon = fit_conformal("multiclass", yv, pv, ["a", "b", "c"], mondrian=True)
    assert mon["score"] == "mondrian_multiclass" and set(mon["strata"]) == {"0", "1", "2"}
    per_aps = per_class_coverage(aps, yt, pt, 0.1)
    per_mon = per_class_coverage(mon, yt, pt, 0.1)
    assert min(v.mean() for v in per_mon.values()) >= 0.87  # within every class
    assert per_aps[2].mean() < per_mon[2].mean()  # marginal sets under-cover the hard rare class
    assert set_membership(mon, pt, 0.1).any(1).all()  # never empty
    assert coverage_stats(mon, yt, pt, 0.1)["covered"].mean() >= 0.88
    few = fit_conformal("multiclass", yv[:40], pv[:40], ["a", "b", "c"], mondrian=True)
    assert set_membership(few, pt[:5], 0.1)[:, 2].all()  # too few items of class c to exclude it


def test_external_coverage_guarantee_is_flagged() -> None:
    from medattn.engine.trust_fit import conformal_metrics, coverage_guarantee
    from medattn.trust.conformal import fit_conformal

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 600)
    p = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.15, 600), 0.01, 0.99)
    cal = fit_conformal("binary", y, p, ["neg", "pos"])
    same = conformal_metrics(cal, y, p, None, n_boot=50, ci_alpha=0.05, seed=0)
    assert "coverage_pos" in same["alpha_0.1"] and coverage_guarantee(same)["held"]
    flipped = conformal_metrics(cal, 1 - y, p, None, n_boot=50, ci_alpha=0.05, seed=0)  # a shifted site
    g = coverage_guarantee(flipped)
    assert not g["held"] and not g["alphas"]["alpha_0.1"]["held"] and "NOT hold" in g["message"]
    assert set(g["alphas"]["alpha_0.1"]["classes_below"]) == {"neg", "pos"}


def test_screening_operating_point_reaches_its_sensitivity_on_validation() -> None:
    from medattn.engine.config import load_recipe
    from medattn.engine.evaluate_run import positive_view

    recipe = load_recipe("herlev-cpu")
    assert recipe.evaluation.screening_sensitivity == 0.95
    names = list(recipe.data.class_names)
    rng = np.random.default_rng(2)
    y = rng.integers(0, len(names), 400)
    p = rng.dirichlet(np.ones(len(names)), 400) * 0.5 + 0.5 * np.eye(len(names))[y]
    view = positive_view(recipe, names, p, y, (p, y), None)
    op = view["record"]["operating_points"]["screening"]
    assert op["valid_sensitivity"] >= 0.95 and op["threshold"] <= view["record"]["threshold"] + 1e-9
    m = view["metrics"](np.arange(400))
    assert m["abnormal_screening_sensitivity"] >= 0.95 and "abnormal_sensitivity" in m
    again = positive_view(recipe, names, p, y, None, view["record"])  # external: the stored points
    assert again["record"]["operating_points"] == view["record"]["operating_points"]


def test_info_shows_the_screening_point_beside_youden() -> None:
    from medattn.commands.trust import _operating_points

    meta = {"task": "multiclass", "class_names": ["a", "b"],
            "positive_view": {"name": "abnormal", "classes": ["b"], "threshold": 0.41,
                              "threshold_method": "youden on validation",
                              "operating_points": {"screening": {
                                  "threshold": 0.12, "target_sensitivity": 0.95, "chosen_on": "validation (75 items)",
                                  "valid_sensitivity": 0.96, "valid_specificity": 0.7}}}}
    ops = _operating_points(meta)
    assert "0.41" in ops["abnormal (youden)"] and "sensitivity >= 0.95" in ops["abnormal (screening)"]
