"""Multinomial L2 logistic regression for many problems on one feature matrix at once.

Selection fits the linear head many times on the same features: every C value of its grid, on
every cross-validation fold, and with each known generator withheld in turn. Solved one at a time,
cold-started, with scikit-learn's L-BFGS, that costs many times the one extraction pass. Here
every problem on one matrix is solved together:

- the objective is scikit-learn's: Σ_i (s_i/S)·CE_i + ‖W‖² / (2·C·S) with sample weights s_i
  (balanced class weights over the problem's own rows), S = Σ s_i, the intercept not penalised;
  so the optimum is the same;
- a problem is (training rows, C); a class with no training row is absent from it (its logit is
  −∞), so a generator withheld from a fold stays out of that fold's model;
- the matrix is rotated once into its principal basis (`Basis`: eigenvectors of the weighted
  second moment, from the D×D moment or, when there are fewer rows than dimensions, from the n×n
  Gram matrix), null directions dropped; every problem of the matrix shares that one basis, and
  is solved by L-BFGS in coordinates scaled by (a·λ_j + 1/(C·S))^(-1/2): a diagonal
  preconditioner that makes every C about as well conditioned as the smallest;
- all problems advance together: one matrix product per step computes the logits of every
  problem on every row (rows outside a problem weigh nothing); converged problems leave the batch;
- memory: the matrix is held once, as its principal coordinates plus the intercept column; above
  `F32_ELEMS` values (n × D) that copy and the matrix products are float32 (the objective,
  softmax and L-BFGS state stay float64), and the caller's matrices are released as soon as
  their basis is built (`fit_multinomial` consumes its list).
Stopping rule per problem (as scipy's L-BFGS-B used by scikit-learn): max-abs gradient ≤ tol, or
relative decrease of the objective ≤ 64·eps, or `max_iter` iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_A = 0.25  # p(1-p) at p = ½: the curvature scale of the log-loss
_MAX_BATCH_ELEMS = 6_000_000  # problems × classes × samples held at once (memory bound)
F32_ELEMS = 1_000_000  # n × D above which a basis is kept, and multiplied, in float32
_ROWS = 1024  # row chunk of the passes over a feature matrix
_ABSENT = -1e30  # the logit of a class with no training row in a problem


@dataclass
class LogisticFit:
    n_iter: int
    converged: bool
    objective: float
    present: np.ndarray  # (K,) bool: the classes with training rows in the problem
    coef: np.ndarray | None = None  # (K, D) on the features given (`fit_multinomial`)
    intercept: np.ndarray | None = None  # (K,)


@dataclass(frozen=True)
class Stopping:
    """When a problem is solved: max-abs gradient ≤ tol, or `max_iter` iterations; `memory`
    L-BFGS corrections are kept."""

    tol: float = 1e-4
    max_iter: int = 1000
    memory: int = 10


@dataclass(frozen=True)
class Problem:
    """One logistic regression on a shared matrix: its training rows (None: every row) and C."""

    C: float
    rows: np.ndarray | None = None


def balanced_weights(y_idx: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(y_idx, minlength=n_classes).astype(np.float64)
    present = max(int((counts > 0).sum()), 1)
    return (len(y_idx) / (present * np.maximum(counts, 1)))[y_idx]


def objective(
    Z: np.ndarray,
    y_idx: np.ndarray,
    sample_weight: np.ndarray,
    C: float,
    coef: np.ndarray,
    intercept: np.ndarray,
) -> float:
    """The objective every solver here minimises (to compare solutions of different solvers)."""
    S = sample_weight.sum()
    L = Z @ coef.T + intercept
    m = L.max(1, keepdims=True)
    lse = (m + np.log(np.exp(L - m).sum(1, keepdims=True)))[:, 0]
    ce = lse - L[np.arange(len(y_idx)), y_idx]
    return float((sample_weight / S) @ ce + 0.5 / (C * S) * np.sum(coef * coef))


class Basis:
    """A feature matrix in its principal basis plus an intercept column: Vp = [Z·Q, 1] (null
    directions dropped), Q the eigenvectors of the w-weighted second moment ZᵀWZ. Built in row
    chunks (`Z[a:b]`: an array, or rows standardised on demand); Z itself is not kept. With fewer
    rows than dimensions the eigenvectors come from the n×n Gram matrix (cheaper, same basis)."""

    def __init__(self, Z, w8: np.ndarray):
        n, D = Z.shape
        self.n, self.D = n, D
        self.dtype = np.float32 if n * D > F32_ELEMS else np.float64
        if n < D:
            self._from_gram(Z, w8)
        else:
            self._from_moment(Z, w8)
        self.dim = int(self.Q.shape[1])

    def _from_moment(self, Z, w8: np.ndarray) -> None:
        n, D = Z.shape
        M = np.zeros((D, D))
        for s in range(0, n, _ROWS):
            z = np.asarray(Z[s : s + _ROWS], dtype=np.float64)
            M += (z * w8[s : s + _ROWS, None]).T @ z
        ev, Q = np.linalg.eigh(M)
        del M
        keep = ev > max(float(ev.max()), 1e-300) * 1e-12
        self.Q, self.ev = Q[:, keep], np.maximum(ev[keep], 0.0)
        self.Vp = np.empty((n, int(keep.sum()) + 1), dtype=self.dtype)
        Qd = self.Q.astype(self.dtype)
        for s in range(0, n, _ROWS):
            self.Vp[s : s + _ROWS, :-1] = np.asarray(Z[s : s + _ROWS], self.dtype) @ Qd
        self.Vp[:, -1] = 1.0

    def _from_gram(self, Z, w8: np.ndarray) -> None:
        # A = W^½ Z; AAᵀ = U Λ Uᵀ gives the eigenvectors of AᵀA as Q = Aᵀ U Λ^(-½), and Z·Q =
        # (Z Zᵀ) W^½ U Λ^(-½)
        n = Z.shape[0]
        Zf = np.asarray(Z[0:n], dtype=np.float64)
        G = Zf @ Zf.T
        r = np.sqrt(w8)
        ev, U = np.linalg.eigh(G * r[:, None] * r[None, :])
        keep = ev > max(float(ev.max()), 1e-300) * 1e-12
        ev, U = np.maximum(ev[keep], 1e-300), U[:, keep]
        B = (U * r[:, None]) / np.sqrt(ev)
        self.Q, self.ev = Zf.T @ B, ev
        self.Vp = np.empty((n, int(keep.sum()) + 1), dtype=self.dtype)
        self.Vp[:, :-1] = G @ B
        self.Vp[:, -1] = 1.0

    def logits(self, W: np.ndarray, rows=None, exact: bool = True) -> np.ndarray:
        """(m, n) logits of m rows of weights (m, dim + 1) in these coordinates (float64, or
        the basis's own precision when not `exact`)."""
        V = self.Vp if rows is None else self.Vp[rows]
        L = W.astype(self.dtype, copy=False) @ V.T
        return np.asarray(L, dtype=np.float64) if exact else L

    def backproject(self, R: np.ndarray) -> np.ndarray:
        """(m, dim + 1) = R · Vp for residuals R (m, n) (float64)."""
        return np.asarray(R.astype(self.dtype, copy=False) @ self.Vp, dtype=np.float64)

    def to_features(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(coef (K, D), intercept (K,)) on the matrix's own features for a solution v."""
        return v[:, :-1] @ self.Q.T, v[:, -1].copy()


def _weights(y_idx: np.ndarray, K: int, rows: np.ndarray | None, balanced: bool):
    """(w8 (n,) normalised weights, zero outside `rows`; S; present-class mask (K,))."""
    n = len(y_idx)
    sel = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    sw = balanced_weights(y_idx[sel], K) if balanced else np.ones(len(sel))
    w8 = np.zeros(n)
    w8[sel] = sw
    S = float(sw.sum())
    present = np.bincount(y_idx[sel], minlength=K) > 0
    return w8 / S, S, present


def solve(
    basis: Basis,
    y_idx: np.ndarray,
    n_classes: int,
    problems: Sequence[Problem],
    balanced: bool = True,
    stopping: Stopping = Stopping(),
) -> list[tuple[np.ndarray, LogisticFit]]:
    """Every problem on one basis: per problem (v (K, dim + 1) in basis coordinates, fit without
    its feature-space coefficients, which `Basis.to_features` gives)."""
    y_idx = np.asarray(y_idx, dtype=np.int64)
    n = len(y_idx)
    prepared = [_weights(y_idx, n_classes, p.rows, balanced) for p in problems]
    limit = max(1, _MAX_BATCH_ELEMS // (n_classes * n))
    out: list[tuple[np.ndarray, LogisticFit]] = []
    for start in range(0, len(problems), limit):
        chunk = list(range(start, min(start + limit, len(problems))))
        out += _solve_batch(
            basis,
            np.array([problems[i].C for i in chunk], dtype=np.float64),
            np.stack([prepared[i][0] for i in chunk]),
            np.array([prepared[i][1] for i in chunk]),
            np.stack([prepared[i][2] for i in chunk]),
            y_idx,
            stopping,
        )
    for (v, fit), (w8, S, present), p in zip(out, prepared, problems):
        fit.objective = _objective_in_basis(basis, y_idx, w8, present, p.C, S, v)
    return out


def _objective_in_basis(
    b: Basis, y_idx: np.ndarray, w8: np.ndarray, present: np.ndarray, C: float, S: float, v
) -> float:
    """The objective at v (K, dim + 1), computed in the basis (‖coef‖ = ‖v[:, :dim]‖)."""
    rows = np.flatnonzero(w8)
    L = b.logits(v[present], rows)
    m = L.max(0, keepdims=True)
    lse = (m + np.log(np.exp(L - m).sum(0, keepdims=True)))[0]
    pos = np.cumsum(present) - 1
    ce = lse - L[pos[y_idx[rows]], np.arange(len(rows))]
    return float(w8[rows] @ ce + 0.5 / (C * S) * np.sum(v[:, : b.dim] ** 2))


def fit_multinomial(
    Zs: list, y_idx: np.ndarray, n_classes: int, Cs: Sequence[float], balanced: bool = True,
    stopping: Stopping = Stopping(),
) -> list[list[LogisticFit]]:  # fmt: skip
    """Every (Z in Zs, C in Cs) problem on all rows (balanced class weights, or none);
    result[i][j] is for Zs[i] and Cs[j]. The list is consumed: each entry is released once its
    basis is built (so a caller holding only the list holds each matrix once)."""
    y_idx = np.asarray(y_idx, dtype=np.int64)
    w8 = _weights(y_idx, n_classes, None, balanced)[0]
    res = []
    for i in range(len(Zs)):
        basis = Basis(Zs[i], w8)
        Zs[i] = None
        row = []
        problems = [Problem(float(C)) for C in Cs]
        for v, fit in solve(basis, y_idx, n_classes, problems, balanced, stopping):
            fit.coef, fit.intercept = basis.to_features(v)
            row.append(fit)
        res.append(row)
        del basis
    return res


def _solve_batch(
    basis: Basis,
    Cs: np.ndarray,
    W8: np.ndarray,
    S: np.ndarray,
    present: np.ndarray,
    y_idx: np.ndarray,
    stopping: Stopping,
) -> list[tuple[np.ndarray, LogisticFit]]:
    tol, max_iter, m = stopping.tol, stopping.max_iter, stopping.memory
    n = len(y_idx)
    B, K = present.shape
    dim = basis.dim
    W1 = dim + 1  # coordinates + intercept column
    P = K * W1
    lam = 1.0 / (Cs * S)
    scale = np.zeros((B, K, W1))  # u → v: v = scale·u (preconditioner)
    scale[:, :, :dim] = (1.0 / np.sqrt(_A * basis.ev[None, :] + lam[:, None]))[:, None, :]
    scale[:, :, dim] = 1.0 / np.sqrt(_A)
    scale *= present[:, :, None]  # an absent class's weights stay at zero
    scale = scale_all = scale.reshape(B, P)
    pen = np.ones((K, W1))
    pen[:, dim] = 0.0
    pen = pen.ravel()
    rows = np.arange(n)
    dt = basis.dtype  # softmax and residuals in the basis's precision; sums in float64
    Yk = np.zeros((1, K, n), dtype=dt)
    Yk[0, y_idx, rows] = 1.0
    absent = ~present

    def value_and_grad(u, lam, W8, absent, scale):
        b = u.shape[0]
        v = u * scale
        L = basis.logits(v.reshape(b * K, W1), exact=False).reshape(b, K, n)
        L[absent] = _ABSENT
        mx = L.max(1, keepdims=True)
        E = np.exp(L - mx)
        se = E.sum(1, keepdims=True)
        lse = mx[:, 0] + np.log(se[:, 0])
        f = ((lse - L[:, y_idx, rows]).astype(np.float64) * W8).sum(1)
        R = (E / se - Yk) * W8[:, None, :].astype(dt)
        Gv = basis.backproject(R.reshape(b * K, n)).reshape(b, P)
        vp = v * pen
        f = f + 0.5 * lam * np.einsum("bp,bp->b", vp, v)
        Gv += lam[:, None] * vp
        Gv *= scale != 0  # absent classes: no gradient
        return f, Gv * scale, Gv

    u = np.zeros((B, P))
    active = np.arange(B)
    u_out = np.zeros((B, P))
    n_iter = np.zeros(B, dtype=np.int64)
    converged = np.zeros(B, dtype=bool)
    f, g, gv = value_and_grad(u, lam, W8, absent, scale)
    Sh, Yh = np.zeros((m, B, P)), np.zeros((m, B, P))
    rho, gamma = np.zeros((m, B)), np.ones(B)
    k = 0
    ftol = 64 * np.finfo(np.float64).eps
    done = np.abs(gv).max(1) <= tol
    for it in range(max_iter + 1):
        if done.any():
            u_out[active[done]] = u[done]
            converged[active[done]] = True
            keep = ~done
            active, u, f, g, gv = active[keep], u[keep], f[keep], g[keep], gv[keep]
            lam, W8, absent, scale = lam[keep], W8[keep], absent[keep], scale[keep]
            Sh, Yh, rho, gamma = Sh[:, keep], Yh[:, keep], rho[:, keep], gamma[keep]
        if not active.size or it == max_iter:
            break
        # two-loop recursion for the L-BFGS direction
        q = g.copy()
        alphas = []
        for j in range(min(k, m)):
            i = (k - 1 - j) % m
            a = rho[i] * np.einsum("bp,bp->b", Sh[i], q)
            q -= a[:, None] * Yh[i]
            alphas.append((i, a))
        r = gamma[:, None] * q
        for i, a in reversed(alphas):
            r += Sh[i] * (a - rho[i] * np.einsum("bp,bp->b", Yh[i], r))[:, None]
        d = -r
        gd = np.einsum("bp,bp->b", g, d)
        uphill = gd >= 0
        if uphill.any():
            d[uphill] = -g[uphill]
            gd[uphill] = -np.einsum("bp,bp->b", g[uphill], g[uphill])
        # backtracking line search (Armijo), each problem with its own step
        step = np.ones(len(f))
        pending = np.ones(len(f), dtype=bool)
        f_new, g_new, gv_new = f.copy(), g.copy(), gv.copy()
        for _ in range(40):
            idx = np.flatnonzero(pending)
            if not idx.size:
                break
            ft, gt, gvt = value_and_grad(
                u[idx] + step[idx, None] * d[idx], lam[idx], W8[idx], absent[idx], scale[idx]
            )
            ok = ft <= f[idx] + 1e-4 * step[idx] * gd[idx]
            acc = idx[ok]
            f_new[acc], g_new[acc], gv_new[acc] = ft[ok], gt[ok], gvt[ok]
            pending[acc] = False
            step[idx[~ok]] *= 0.5
        s = step[:, None] * d
        s[pending] = 0.0  # no acceptable step: the problem has converged
        yv = g_new - g
        sy = np.einsum("bp,bp->b", s, yv)
        yy = np.einsum("bp,bp->b", yv, yv)
        good = sy > 1e-10 * np.maximum(yy, 1e-300)
        slot = k % m
        Sh[slot] = np.where(good[:, None], s, 0.0)
        Yh[slot] = np.where(good[:, None], yv, 0.0)
        rho[slot] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
        gamma = np.where(good, sy / np.where(good, yy, 1.0), gamma)
        k += 1
        u = u + s
        rel = (f - f_new) / np.maximum(np.maximum(np.abs(f), np.abs(f_new)), 1.0)
        f, g, gv = f_new, g_new, gv_new
        n_iter[active] += 1
        done = (np.abs(gv).max(1) <= tol) | (rel <= ftol) | pending
    if active.size:
        u_out[active] = u
    V = (u_out * scale_all).reshape(B, K, W1)
    return [
        (V[j], LogisticFit(int(n_iter[j]), bool(converged[j]), float("nan"), present[j].copy()))
        for j in range(B)
    ]
