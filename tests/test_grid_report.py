"""The grid report: relation ranks, throughput of phased cells, values that are not applicable."""

from __future__ import annotations

import json

import numpy as np


def test_relation_ranks_and_phase_throughput():
    from fsd_jax.experiments.report import cell_throughput, relation_ranks

    rows = {
        "a": {
            "inter_euclid": (3.0, 0, 1),
            "inter_cos": (0.1, 0, 1),
            "intra_euclid": (1.0, 0, 1),
            "intra_cos": (0.2, 0, 1),
        },
        "b": {
            "inter_euclid": (2.0, 0, 1),
            "inter_cos": (0.3, 0, 1),
            "intra_euclid": (0.5, 0, 1),
            "intra_cos": (0.1, 0, 1),
        },
        "c": {"inter_euclid": (1.0, 0, 1)},
    }
    r = relation_ranks(rows)
    assert r["a"] == {
        "inter_euclid": 3,
        "inter_cos": 1,
        "intra_euclid": 2,
        "intra_cos": 2,
        "mean": 2.0,
    }
    assert r["b"]["mean"] == (2 + 2 + 1 + 1) / 4 and r["c"] == {"inter_euclid": 1}
    # two phases: 300 examples at 10/s and 100 at 50/s → 400 examples in 32 s
    phased = {
        "phases": {
            "p1": {"epochs": 3.0, "train_examples": 100, "train_examples_per_s": 10.0},
            "p2": {"epochs": 1.0, "train_examples": 100, "train_examples_per_s": 50.0},
        },
        "train_examples_per_s": 50.0,
    }
    assert cell_throughput(phased) == 400 / 32
    # one stage: 140 examples at 7/s plus 10 s building the teacher cache
    single = {"epochs": 2.0, "train_examples": 70, "train_examples_per_s": 7.0}
    assert cell_throughput(single) == 7.0
    assert cell_throughput({**single, "teacher_cache": {"build_s": 10.0}}) == 140 / 30


def test_undefined_restoration_values_are_reported_as_not_applicable(tmp_path):
    from fsd_jax.experiments import report as grid_report

    for seed, precision in ((0, None), (1, 0.5)):
        cell = tmp_path / "rte" / "vkd" / f"seed{seed}"
        (cell / "analysis").mkdir(parents=True)
        (cell / "results.json").write_text(json.dumps({"dev": {"dev": {"accuracy": 0.5}}}))
        rate = {"precision": precision, "recall": None, "f1": None, "agreement": 1.0}
        analysis = {
            "cka_diagonal_mean": 0.9,
            "params": {"model": 10},
            "relation_differences": {"inter_euclid": 1.0},
            "restoration_rate": rate,
        }
        (cell / "analysis" / "analysis.json").write_text(json.dumps(analysis))
    row = grid_report.aggregate_analyses(tmp_path, ["rte"], ["vkd"])["rte"]["vkd"]
    assert row["restoration_precision"] == (0.5, 0.0, 1)  # over the seed where it is defined
    assert row["restoration_recall"][2] == 0 and row["restoration_agreement"] == (1.0, 0.0, 2)
    # in the report: "n/a" for the recall and for the throughput (none in results.json)
    page = grid_report.write_report(
        {"rte": {}}, tmp_path / "report", "t", analyses={"rte": {"vkd": row}}
    )["markdown"].read_text()
    header = next(x for x in page.splitlines() if x.startswith("| method") and "CKA" in x)
    line = next(x for x in page.splitlines() if x.startswith("| vkd"))
    cells = {k.strip(): v.strip() for k, v in zip(header.split("|"), line.split("|"), strict=True)}
    assert cells["restoration P / R / F1 / agree"].split(" / ")[1] == "n/a"
    assert cells["examples/s"] == "n/a"


def test_welch_intervals_match_scipys_t_test_and_the_report_says_what_is_separated(tmp_path):
    from scipy import stats

    from fsd_jax.experiments.report import welch_interval, write_report

    def _stat(x):
        return float(np.mean(x)), float(np.std(x, ddof=1)) if len(x) > 1 else 0.0, len(x)

    rng = np.random.default_rng(0)
    a, b = rng.normal(0.6, 0.02, 5), rng.normal(0.55, 0.05, 3)
    d, lo, hi = welch_interval(_stat(a), _stat(b))
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    np.testing.assert_allclose([d, lo, hi], [a.mean() - b.mean(), ci.low, ci.high], rtol=1e-10)
    assert welch_interval(_stat(a), _stat(b[:1])) is None  # one seed: no interval

    table = {
        "mrpc": {
            "teacher": {"score": (0.9, 0.0, 1)},
            "nokd": {"score": _stat([0.50, 0.51, 0.49])},
            "vkd": {"score": _stat([0.60, 0.61, 0.59])},
            "fsd_il": {"score": _stat([0.58, 0.63, 0.61])},
        }
    }
    text = write_report(table, tmp_path)["markdown"].read_text()
    assert "| vkd | nokd | +10.00 |" in text and "| nokd | vkd |" not in text
    rows = {
        ln.split("|")[1].strip() + "/" + ln.split("|")[2].strip(): ln
        for ln in text.splitlines()
        if ln.startswith("| fsd_il |") and "[" in ln
    }
    assert rows["fsd_il/nokd"].endswith("| yes |") and rows["fsd_il/vkd"].endswith("| no |")


def test_the_papers_comparisons_are_checked_with_welch_intervals():
    from fsd_jax.experiments.paper_claims import claim_lines, verdict

    a, b = (0.60, 0.01, 3), (0.50, 0.01, 3)
    assert verdict(+1.0, a, b)[1] == "same, separated"
    assert verdict(-1.0, a, b)[1] == "reversed, separated"
    assert verdict(+1.0, (0.60, 0.2, 3), b)[1] == "same, not separated"
    assert verdict(+1.0, a, a)[1] == "no difference"
    assert verdict(+1.0, a, (0.5, 0.0, 1))[1] == "one seed: no interval"
    assert verdict(+1.0, a, None)[1] == "not run"
    assert claim_lines("sst2", {}, {}) == []  # not a task of the paper's Table 2

    scores = {m: {"score": (0.40, 0.01, 3)} for m in ("vkd", "pkd", "rkd", "minilm")}
    scores["fsd_ilg"] = {"score": (0.45, 0.01, 3)}
    rel = {k: (1.0, 0.1, 3) for k in ("inter_euclid", "inter_cos", "intra_euclid", "intra_cos")}
    analyses = {m: dict(rel) for m in ("vkd", "pkd", "rkd")}
    analyses["fsd_ilg"] = {k: (0.5, 0.1, 3) for k in rel} | {"cka_diagonal": (0.9, 0.01, 3)}
    analyses["nokd"] = {"cka_diagonal": (0.8, 0.01, 3)}
    text = "\n".join(claim_lines("cola", scores, analyses))
    # CoLA's Table 2: FSD 43.03, VKD 41.46; ours +5.00 (×100) with its interval
    assert "| Table 2 | FSD − vkd | +1.57 | +5.00 [" in text and "same, separated" in text
    # the paper has RKD above FSD on CoLA (−0.04): ours is the other way
    assert "| Table 2 | FSD − rkd | -0.04 | +5.00 [" in text and "reversed, separated" in text
    assert "| Table 4 | FSD − fsd_i | +2.15 | — | not run |" in text
    assert "| Table 6 | CKA diagonal, FSD − nokd | +0.032 | +0.100 [" in text
    assert "| Table 6 | CKA diagonal, FSD − vkd | +0.024 | — | not run |" in text
    assert "FSD first, as in the paper" in text
