"""Statistics of a grid's cells over seeds: mean ± std, Welch intervals, relation ranks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Stat = tuple[float, float, int]  # mean, sample std over seeds, number of seeds
RELATIONS = ("inter_euclid", "inter_cos", "intra_euclid", "intra_cos")


def stat(values: Sequence[float]) -> Stat:
    """(mean, std, n) over the defined (non-NaN) values; n = 0 when none is."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan, 0
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std, len(values)


def relation_ranks(rows: Mapping[str, Mapping[str, Stat]]) -> dict[str, dict[str, float]]:
    """Per relation difference, each method's rank among the methods (1 = closest to the
    teacher), plus ``mean`` over the four: the ranking of the FSD paper's Table 7."""
    ranks: dict[str, dict[str, float]] = {m: {} for m in rows}
    for key in RELATIONS:
        have = sorted((r[key][0], m) for m, r in rows.items() if key in r)
        for i, (_, m) in enumerate(have):
            ranks[m][key] = i + 1
    for r in ranks.values():
        if len(r) == len(RELATIONS):
            r["mean"] = float(np.mean([r[k] for k in RELATIONS]))
    return ranks


def welch_interval(a: Stat, b: Stat, level: float = 0.95) -> tuple[float, float, float] | None:
    """Mean of ``a`` minus mean of ``b`` with the ``level`` confidence interval of Welch's
    t-test (unequal variances, Welch–Satterthwaite degrees of freedom): (difference, low,
    high). None when either has fewer than two seeds. An interval that holds 0 means these
    seeds cannot tell the two methods apart."""
    from scipy import stats

    (ma, sa, na), (mb, sb, nb) = a, b
    if na < 2 or nb < 2:
        return None
    va, vb = sa**2 / na, sb**2 / nb
    diff = ma - mb
    if va + vb == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(va + vb)
    return diff, diff - half, diff + half
