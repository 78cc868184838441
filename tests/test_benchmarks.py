"""The benchmark entry points run and write their JSON (tiny shapes; no speed assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> None:
    res = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]


def test_suite_quick_writes_the_ratios(tiny_teacher, tmp_path):
    out = tmp_path / "bench.json"
    _run(
        "run.py",
        "--quick",
        "--teacher",
        str(tiny_teacher),
        "--layers",
        "every:2",
        "--batch_size",
        "4",
        "--seq_len",
        "32",
        "--steps",
        "1",
        "--out",
        str(out),
    )
    result = json.loads(out.read_text())
    ratios = result["ratios"]
    assert {
        "fsd_ilg_over_vkd_step_time",
        "rkd_over_vkd_step_time",
        "jax_over_torch_examples_per_s_vkd",
        "jax_over_torch_examples_per_s_fsd_il",
        "bucketing_speedup_sst2",
    } <= set(ratios)
    for key in (
        "fsd_ilg_over_vkd_step_time",
        "rkd_over_vkd_step_time",
        "teacher_cache_over_live_step_time_vkd",
    ):
        assert ratios[key] > 0
    assert set(result["cache"]) == {"vkd", "fsd_il", "fsd_ilg"}
    for key in ("vkd", "fsd_il"):  # torch is in the test extra; the cached step beside the live
        assert ratios[f"jax_over_torch_examples_per_s_{key}"] > 0
        assert ratios[f"jax_cached_over_torch_examples_per_s_{key}"] > 0
    if ratios["bucketing_speedup_sst2"] is None:
        assert "bucketing" in result["skipped"]
    assert set(result["cka"]["rows"]) and result["machine"]["backend"] == "cpu"
    assert result["machine"]["cpu"]


def test_memory_scale_runs(tmp_path):
    out = tmp_path / "mem.json"
    _run(
        "memory_scale.py",
        "--sizes",
        "300,600",
        "--dim",
        "16",
        "--clusters",
        "4",
        "--batch",
        "64",
        "--out",
        str(out),
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["n"] for r in rows] == [300, 600] and all(r["peak_rss_mib"] > 0 for r in rows)
