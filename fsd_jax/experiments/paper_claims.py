"""The FSD paper's comparisons, checked against a grid's records point by point.

Jung et al., "Feature Structure Distillation with Centered Kernel Alignment in BERT
Transferring", arXiv:2204.08922: Table 2 (dev scores), Table 4 (ablations), Table 6 (CKA
diagonal means) and Table 7 (mean rank of the four relation differences among VKD, PKD, RKD
and FSD), as transcribed in the design notes (METHODS.md §2.10). The paper's "FSD" is FSD with
all three terms, this project's ``fsd_ilg``; its ablation columns are mapped as the design notes
infer them from the prose (w/o LG = FSD-I, w/o IG = FSD-L, w/o IL = FSD-G, w/o G = FSD-IL).

Each claim is a signed difference "FSD minus X"; the verdict says whether the records show the
same sign with a 95 % Welch interval that excludes 0 ("same, separated"), the same sign without
that ("same, not separated"), the other sign ("reversed, separated" / "reversed, not
separated"), equal means ("no difference"), or cannot say (a side not run, or with one
seed). The paper's teachers, students
and budgets differ from the grid's: a verdict compares directions, not values.
"""

from __future__ import annotations

from collections.abc import Mapping

from fsd_jax.experiments.stats import RELATIONS, Stat, relation_ranks, welch_interval

FSD = "fsd_ilg"

# Table 2, the main dev score of each task as this project scores it (MRPC: the mean of F1
# and accuracy; the paper prints F1/accuracy: FSD 87.10/82.20, VKD 86.24/80.75, ...)
DEV_SCORE: dict[str, dict[str, float]] = {
    "cola": {"vkd": 41.46, "pkd": 41.87, "minilm": 33.34, "rkd": 43.07, FSD: 43.03},
    "mrpc": {
        "vkd": (86.24 + 80.75) / 2,
        "pkd": (86.37 + 80.98) / 2,
        "minilm": (84.57 + 78.13) / 2,
        "rkd": (86.87 + 81.84) / 2,
        FSD: (87.10 + 82.20) / 2,
    },
    "rte": {"vkd": 65.40, "pkd": 63.90, "minilm": 61.49, "rkd": 65.22, FSD: 66.61},
    "wnli": {"vkd": 54.37, "pkd": 54.37, "minilm": 48.45, "rkd": 51.83, FSD: 55.49},
}
# Table 4: change of the dev score when FSD loses terms (MRPC: the mean of its two columns)
ABLATION: dict[str, dict[str, float]] = {
    "cola": {"fsd_i": -2.15, "fsd_l": -8.14, "fsd_g": -1.60, "fsd_il": -2.50},
    "mrpc": {
        "fsd_i": (-0.18 - 0.40) / 2,
        "fsd_l": (-0.10 - 0.24) / 2,
        "fsd_g": (-1.24 - 2.16) / 2,
        "fsd_il": (-0.08 - 0.24) / 2,
    },
    "rte": {"fsd_i": -0.72, "fsd_l": -0.45, "fsd_g": -0.18, "fsd_il": -0.63},
    "wnli": {"fsd_i": -6.60, "fsd_l": -1.02, "fsd_g": -3.55, "fsd_il": -2.03},
}
# Table 6: T–nDS (the undistilled student), T–VKD, T–PKD, T–FSD
CKA_DIAGONAL: dict[str, dict[str, float]] = {
    "cola": {"nokd": 0.803, "vkd": 0.811, "pkd": 0.813, FSD: 0.835},
    "mrpc": {"nokd": 0.981, "vkd": 0.979, "pkd": 0.979, FSD: 0.990},
    "rte": {"nokd": 0.985, "vkd": 0.984, "pkd": 0.980, FSD: 0.990},
    "wnli": {"nokd": 0.998, "vkd": 0.997, "pkd": 0.997, FSD: 0.999},
}
# Table 7: mean rank over the four relation differences among these four methods
RANKED = ("vkd", "pkd", "rkd", FSD)
RELATION_RANK: dict[str, dict[str, float]] = {
    "cola": {"vkd": 3.00, "pkd": 2.75, "rkd": 3.00, FSD: 1.25},
    "mrpc": {"vkd": 3.25, "pkd": 2.50, "rkd": 2.50, FSD: 2.25},
    "rte": {"vkd": 2.50, "pkd": 2.50, "rkd": 3.00, FSD: 2.00},
    "wnli": {"vkd": 3.00, "pkd": 2.50, "rkd": 2.50, FSD: 2.00},
}


def verdict(
    paper: float, ours: Stat | None, theirs: Stat | None, digits: int = 2
) -> tuple[str, str]:
    """(our difference with its 95 % Welch interval, the verdict) for the paper's signed
    difference ``paper`` and our two sides (mean, std, seeds)."""
    if ours is None or theirs is None or not ours[2] or not theirs[2]:
        return "—", "not run"
    w = welch_interval(ours, theirs)
    if w is None:
        return f"{ours[0] - theirs[0]:+.{digits}f}", "one seed: no interval"
    d, lo, hi = w
    text = f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    if d == 0:  # e.g. every seed of both at the majority class
        return text, "no difference"
    separated = ", separated" if lo > 0 or hi < 0 else ", not separated"
    return text, ("same" if (d > 0) == (paper > 0) else "reversed") + separated


def _scaled(stat: Stat | None, scale: float) -> Stat | None:
    return None if stat is None else (stat[0] * scale, stat[1] * scale, stat[2])


def claim_lines(
    task: str,
    scores: Mapping[str, Mapping[str, Stat]],
    analyses: Mapping[str, Mapping[str, Stat]] | None,
) -> list[str]:
    """The section of ``results.md`` that checks the paper's claims on ``task`` (none for a
    task the paper does not report): ``scores[method]["score"]`` and the analyses' keys."""
    if task not in DEV_SCORE:
        return []
    analyses = analyses or {}
    lines = [
        f"### {task}: the FSD paper's comparisons against these records",
        "",
        "FSD = FSD (ILG). Differences are FSD minus the other method: dev score ×100, CKA "
        "diagonal as is; our 95 % Welch interval over the seeds in brackets. Verdict: the sign "
        "of our difference against the paper's, and whether our interval excludes 0.",
        "",
        "| paper | comparison | paper's difference | ours | verdict |",
        "|---|---|---|---|---|",
    ]

    def score(m: str) -> Stat | None:
        return _scaled(scores.get(m, {}).get("score"), 100.0)

    rows = [
        ("Table 2", f"FSD − {m}", DEV_SCORE[task][FSD] - v, score(FSD), score(m), 2)
        for m, v in DEV_SCORE[task].items()
        if m != FSD
    ]
    rows += [
        ("Table 4", f"FSD − {m}", -change, score(FSD), score(m), 2)
        for m, change in ABLATION[task].items()
    ]
    rows += [
        (
            "Table 6",
            f"CKA diagonal, FSD − {m}",
            CKA_DIAGONAL[task][FSD] - v,
            analyses.get(FSD, {}).get("cka_diagonal"),
            analyses.get(m, {}).get("cka_diagonal"),
            3,
        )
        for m, v in CKA_DIAGONAL[task].items()
        if m != FSD
    ]
    for table, what, paper, ours, theirs, digits in rows:
        text, says = verdict(paper, ours, theirs, digits)
        lines.append(f"| {table} | {what} | {paper:+.{digits}f} | {text} | {says} |")
    lines += ["", *_rank_lines(task, analyses), ""]
    return lines


def _rank_lines(task: str, analyses: Mapping[str, Mapping[str, Stat]]) -> list[str]:
    have = {m: analyses[m] for m in RANKED if all(k in analyses.get(m, {}) for k in RELATIONS)}
    paper = RELATION_RANK[task]
    paper_order = ", ".join(f"{m} {paper[m]:.2f}" for m in sorted(paper, key=lambda m: paper[m]))
    if len(have) < len(RANKED):
        missing = ", ".join(m for m in RANKED if m not in have)
        return [
            f"Table 7 (mean relation-difference rank; paper: {paper_order}): {missing} not run."
        ]
    ranks = relation_ranks(have)
    ours = ", ".join(
        f"{m} {ranks[m]['mean']:.2f}" for m in sorted(ranks, key=lambda m: ranks[m]["mean"])
    )
    first = min(ranks, key=lambda m: ranks[m]["mean"])
    says = "FSD first, as in the paper" if first == FSD else f"{first} first, not FSD"
    return [
        f"Table 7 (mean rank of the four relation differences among {', '.join(RANKED)}, "
        f"from the means over seeds; no interval): paper {paper_order}; here {ours}: {says}."
    ]
