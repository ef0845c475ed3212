"""The sparse Cholesky (symbolic pattern, left-looking columns, dense trailing block, Takahashi
selected inverse) against dense linear algebra, on crossed, nested and random-slope structures and
at every admissible split."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ppl_glmm.engine import sparse_cholesky
from ppl_glmm.engine.linalg import NotPositiveDefinite
from ppl_glmm.engine.sparse_cholesky import SymbolicFactor
from ppl_glmm.engine.structure import REStructure


def _term(name, codes, T, offset=0):
    """What REStructure reads of a design's RandomTerm: codes, columns, size and offset."""
    q_r, levels = T.shape[1], int(codes.max()) + 1
    return SimpleNamespace(group=name, codes=codes, T=T, q_r=q_r, size=q_r * levels, offset=offset)


def _structure(kind: str, n: int = 600, seed: int = 0) -> REStructure:
    rng = np.random.default_rng(seed)
    ones = np.ones((n, 1))
    if kind == "crossed":
        terms = [_term("a", rng.integers(0, 250, n), ones), _term("b", rng.integers(0, 60, n), ones)]
    elif kind == "nested":  # pupils in classes in schools: class codes are school * 4 + k
        school = rng.integers(0, 80, n)
        cls = school * 4 + rng.integers(0, 4, n)
        terms = [_term("school", school, ones), _term("class", cls, ones)]
    elif kind == "three":  # three levels of nesting plus a crossed factor with a random slope
        school = rng.integers(0, 40, n)
        cls = school * 3 + rng.integers(0, 3, n)
        x = rng.normal(size=(n, 1))
        terms = [
            _term("school", school, ones),
            _term("class", cls, ones),
            _term("rater", rng.integers(0, 30, n), np.hstack([ones, x])),
        ]
    elif kind.startswith("single"):  # one scalar term: H is diagonal, factored elementwise
        terms = [_term("g", rng.integers(0, 500 if kind == "single_large" else 40, n), ones)]
    else:
        raise ValueError(kind)
    off = 0
    out = []
    for t in terms:
        out.append(_term(t.group, t.codes, t.T, off))
        off += t.size
    return REStructure.from_terms(out, n)


def _dense_h(re: REStructure, vals, c):
    A = np.zeros((re.n, re.q))
    for a in range(re.m):
        np.add.at(A, (np.arange(re.n), re.cols[:, a]), vals[:, a])
    return A, A.T @ (c[:, None] * A) + np.eye(re.q)


@pytest.mark.parametrize("kind", ["crossed", "nested", "three", "single", "single_large"])
def test_factor_matches_dense(kind):
    re = _structure(kind, n=3000 if kind == "single_large" else 600)
    rng = np.random.default_rng(1)
    lambdas = [np.tril(rng.uniform(0.3, 1.5, (q, q))) for q in re.layout.sizes]
    vals = re.a_values(lambdas, 1.0)
    c = rng.uniform(0.2, 3.0, re.n)
    A, H = _dense_h(re, vals, c)
    fac = re.factor_h(vals, c)
    assert fac.sym.diagonal == kind.startswith("single")  # (1|g) only; a slope couples its pair
    assert fac.logdet == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
    r = rng.normal(size=(re.q, 3))
    np.testing.assert_allclose(fac.solve(r), np.linalg.solve(H, r), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fac.solve(r[:, 0]), np.linalg.solve(H, r[:, 0]), rtol=1e-10, atol=1e-12)
    Hinv = np.linalg.inv(H)
    sel = fac.selected_inverse()
    np.testing.assert_allclose(re.leverages(vals, sel), np.einsum("ij,jk,ik->i", A, Hinv, A), rtol=1e-10)
    assert re.trace_inverse(sel) == pytest.approx(np.trace(Hinv), rel=1e-12)
    for slot in range(re.m):
        want = (A @ Hinv)[np.arange(re.n), re.cols[:, slot]]
        np.testing.assert_allclose(re.a_hinv_at(vals, sel, slot), want, rtol=1e-10, atol=1e-14)
    # the joint (u, beta) matrix
    X = np.column_stack([np.ones(re.n), rng.normal(size=re.n)])
    M = np.block([[H, A.T @ (c[:, None] * X)], [X.T @ (c[:, None] * A), X.T @ (c[:, None] * X)]])
    jf = re.factor_joint(vals, c, X)
    assert jf.logdet == pytest.approx(np.linalg.slogdet(M)[1], rel=1e-12)
    rj = rng.normal(size=(re.q + 2, 2))
    np.testing.assert_allclose(jf.solve(rj), np.linalg.solve(M, rj), rtol=1e-9, atol=1e-11)


def test_nested_factor_has_no_fill_and_crossed_goes_dense():
    nested = _structure("nested", n=3000)
    crossed = _structure("crossed", n=3000)
    for re in (nested, crossed):
        re.factor_h(re.a_values([np.eye(1)] * re.m, 1.0), np.ones(re.n))
    sym_n = nested._h_pattern.sym
    # classes (320) first, then schools: every column of L holds its diagonal and at most its school
    assert sym_n.s == nested.q and sym_n.m == 0
    assert sym_n.nnz <= nested.q + nested.boundaries[1]
    sym_c = crossed._h_pattern.sym
    assert sym_c.s == crossed.boundaries[1] and sym_c.m == crossed.q - crossed.boundaries[1]


@pytest.mark.parametrize("split", [0, 1, 2])
def test_every_split_gives_the_same_factor(monkeypatch, split):
    re = _structure("three", n=900, seed=3)
    bounds = [*re.boundaries, re.q]
    rng = np.random.default_rng(2)
    vals = re.a_values([np.eye(q) * 0.8 for q in re.layout.sizes], 1.0)
    c = rng.uniform(0.5, 2.0, re.n)
    _, H = _dense_h(re, vals, c)
    monkeypatch.setattr(sparse_cholesky, "_choose_split", lambda n, counts, b: sorted(b)[split])
    monkeypatch.setattr(sparse_cholesky, "_ALL_DENSE", 0)
    r = np.concatenate([np.zeros(0, np.int64)] + [re.cols[:, a] for a in range(re.m) for b in range(a, re.m)])
    cc = np.concatenate([re.cols[:, b] for a in range(re.m) for b in range(a, re.m)])
    sym = SymbolicFactor.analyse(re.q, r, cc, bounds)
    assert sym.s == sorted(bounds)[split]
    F = np.zeros(sym.size)
    lo_r, lo_c = np.tril_indices(re.q)
    keep = H[lo_r, lo_c] != 0
    F[sym.positions(lo_r[keep], lo_c[keep])] = H[lo_r[keep], lo_c[keep]]
    fac = sym.factor(F)
    assert fac.logdet == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
    Hinv = np.linalg.inv(H)
    sel = fac.selected_inverse()
    np.testing.assert_allclose(
        sel[sym.positions(lo_r[keep], lo_c[keep])], Hinv[lo_r[keep], lo_c[keep]], rtol=1e-10, atol=1e-14
    )


@pytest.mark.parametrize("kind", ["nested", "single"])
def test_not_positive_definite_is_reported(kind):
    re = _structure(kind, n=2000)
    vals = re.a_values([np.eye(1)] * re.m, 1.0)
    c = np.full(re.n, -5.0)
    with pytest.raises(NotPositiveDefinite):
        re.factor_h(vals, c)
    c[:] = np.nan
    with pytest.raises(NotPositiveDefinite):
        re.factor_h(vals, c)
