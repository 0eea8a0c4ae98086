"""Group sums without a stored indicator (_segments.py)."""

import numpy as np
import pandas as pd
import pytest

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed._engine import GroupedData
from statsmodels_hetmixed._segments import SegmentSums, group_indicator, sparse_indicator


@pytest.mark.parametrize("sizes", [[3, 1, 4, 2], [0, 3, 0, 2, 0], [5], [0, 0]])
def test_segment_sums_equal_the_sparse_indicator_s(sizes):
    rng = np.random.default_rng(0)
    sizes = np.array(sizes)
    n, m = sizes.sum(), len(sizes)
    codes = np.repeat(np.arange(m), sizes)
    dense = sparse_indicator(codes, m)
    seg = SegmentSums(sizes)
    assert seg.shape == (m, n)
    v = rng.standard_normal(n)
    np.testing.assert_allclose(seg @ v, dense @ v, rtol=1e-15, atol=1e-15)
    rows = rng.standard_normal((n, 3))
    np.testing.assert_allclose(seg @ rows, dense @ rows, rtol=1e-15, atol=1e-15)
    # empty groups sum to zero (reduceat alone would give a row's value)
    assert np.all((seg @ np.ones(n))[sizes == 0] == 0)
    with pytest.raises(ValueError, match="rows"):
        seg @ np.ones(n + 1)


def test_vector_sums_store_nothing_row_sized():
    sizes = np.full(1000, 5)
    seg = SegmentSums(sizes)
    seg @ np.ones(5000)
    assert seg._matrix is None  # built only for a matrix of rows
    stored = sum(a.nbytes for a in vars(seg).values() if isinstance(a, np.ndarray))
    assert stored <= 3 * 8 * len(sizes)


def test_engine_uses_segment_sums_for_rows_sorted_by_group():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 4)
    y, X, Z = rng.standard_normal(24), np.ones((24, 1)), np.ones((24, 1))
    assert isinstance(GroupedData.build(y, X, Z, g, 6, layout="sparse").indicator,
                      SegmentSums)
    shuffled = rng.permutation(g)
    assert not isinstance(group_indicator(shuffled, 6, np.bincount(shuffled), False),
                          SegmentSums)
    assert not isinstance(GroupedData.build(y, X, Z, shuffled, 6,
                                            layout="sparse").indicator, SegmentSums)


@pytest.mark.parametrize("re_formula", [None, "~ x"])
def test_fit_on_sorted_and_shuffled_rows_agree(re_formula):
    """Segment sums (rows sorted by group) and the sparse indicator (rows
    in any order) give the same fit."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(40), rng.integers(2, 9, 40))
    x = rng.standard_normal(g.size)
    y = (1 + x + rng.standard_normal(40)[g] + 0.5 * rng.standard_normal(40)[g] * x
         + rng.standard_normal(g.size) * np.exp(0.3 * x))
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    kw = dict(groups="g", var_formula="~ x", re_formula=re_formula)
    sorted_fit = hmf.hetmixedlm("y ~ x", data, **kw).fit(reml=False)
    shuffled = data.iloc[rng.permutation(len(data))]
    model = hmf.hetmixedlm("y ~ x", shuffled, **kw)
    assert not isinstance(model._grouped.indicator, SegmentSums)
    assert isinstance(sorted_fit.model._grouped.indicator, SegmentSums)
    other = model.fit(reml=False)
    np.testing.assert_allclose(other.params, sorted_fit.params, rtol=1e-8)
    np.testing.assert_allclose(other.llf, sorted_fit.llf, rtol=1e-12)
    np.testing.assert_allclose(other.bse, sorted_fit.bse, rtol=1e-6)
