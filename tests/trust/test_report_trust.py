"""Risk–coverage figure and the report section beside calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.trust.selective import risk_coverage


def test_risk_coverage_orders_by_confidence() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    p = np.clip(y * 0.6 + rng.normal(0.2, 0.2, 2000), 0, 1)  # errors mostly near the threshold
    rc = risk_coverage("binary", y, p, 0.5)
    assert rc["risk"][0] <= rc["risk"][-1] and abs(rc["risk"][-1] - rc["risk_at_full"]) < 1e-4
    assert rc["aurc"] < rc["risk_at_full"]  # confidence ranks errors last: selective prediction helps
    shuffled = risk_coverage("binary", y, rng.permutation(p), 0.5)
    assert shuffled["aurc"] > rc["aurc"]
    mc = risk_coverage("multiclass", np.array([0, 1, 2]), np.eye(3)[[0, 1, 0]] * 0.9 + 0.033, None)
    assert mc["risk_at_full"] == 1 / 3


def test_report_section_in_smoke_run(smoke_pcam_run: Path) -> None:
    from medattn.report.trust_plots import trust_section

    sec = trust_section(smoke_pcam_run)
    assert sec is not None and sec[0] == "selective" and "AURC" in sec[2] and "coverage" in sec[2]
    assert (smoke_pcam_run / "risk_coverage.png").is_file()
    assert 'id="selective"' in (smoke_pcam_run / "report.html").read_text()
