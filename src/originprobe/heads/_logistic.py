"""Multinomial L2 logistic regression for many (features, C) problems at once.

The linear head's C sweep is the selection's main cost: one fit per layer and C value. Solved one
at a time, cold-started, with scikit-learn's L-BFGS, a layer sweep costs many times the one
extraction pass. Here every problem of a sweep is solved together:

- the objective is scikit-learn's: Σ_i (s_i/S)·CE_i + ‖W‖² / (2·C·S) with sample weights s_i
  (balanced class weights), S = Σ s_i, the intercept not penalised; so the optimum is the same;
- each feature matrix is rotated once into its principal basis (eigenvectors of the weighted
  second moment), null directions dropped (they carry no data and stay at zero), and each
  problem is solved by L-BFGS in coordinates scaled by (a·λ_j + 1/(C·S))^(-1/2): a diagonal
  preconditioner that makes every C about as well conditioned as the smallest, so large C values
  converge in tens of iterations instead of hitting the iteration cap;
- all problems of similar width advance together: one matrix product per feature matrix and
  step computes the logits of every C value; converged problems leave the batch;
- memory: each feature matrix is held once, as its principal coordinates plus the intercept
  column; above `F32_ELEMS` values (n × D) that copy and the matrix products are float32 (the
  objective, softmax and L-BFGS state stay float64), and the caller's matrices are released
  as soon as their basis is built (`fit_multinomial` consumes its list).
Stopping rule per problem (as scipy's L-BFGS-B used by scikit-learn): max-abs gradient ≤ tol, or
relative decrease of the objective ≤ 64·eps, or `max_iter` iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_A = 0.25  # p(1-p) at p = ½: the curvature scale of the log-loss
_MAX_BATCH_ELEMS = 6_000_000  # problems × classes × samples held at once (memory bound)
F32_ELEMS = 20_000_000  # n × D above which a basis is kept, and multiplied, in float32
_ROWS = 1024  # row chunk of the passes over a feature matrix


@dataclass
class LogisticFit:
    coef: np.ndarray  # (K, D) on the features given
    intercept: np.ndarray  # (K,)
    n_iter: int
    converged: bool
    objective: float


def balanced_weights(y_idx: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(y_idx, minlength=n_classes).astype(np.float64)
    return (len(y_idx) / (n_classes * np.maximum(counts, 1)))[y_idx]


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


class _Basis:
    """A feature matrix in its principal basis plus an intercept column: Vp = [Z·Q, 1] (null
    directions dropped). Built in row chunks (`Z[a:b]`: an array, or rows standardised on
    demand); Z itself is not kept."""

    def __init__(self, Z, w8: np.ndarray):
        n, D = Z.shape
        self.dtype = np.float32 if n * D > F32_ELEMS else np.float64
        M = np.zeros((D, D))
        for s in range(0, n, _ROWS):
            z = np.asarray(Z[s : s + _ROWS], dtype=np.float64)
            M += (z * w8[s : s + _ROWS, None]).T @ z
        ev, Q = np.linalg.eigh(M)
        del M
        keep = ev > max(float(ev.max()), 1e-300) * 1e-12
        self.Q, self.ev = Q[:, keep], np.maximum(ev[keep], 0.0)
        self.dim = int(keep.sum())
        self.Vp = np.empty((n, self.dim + 1), dtype=self.dtype)
        Qd = self.Q.astype(self.dtype)
        for s in range(0, n, _ROWS):
            self.Vp[s : s + _ROWS, : self.dim] = np.asarray(Z[s : s + _ROWS], self.dtype) @ Qd
        self.Vp[:, self.dim] = 1.0

    def logits(self, W: np.ndarray) -> np.ndarray:
        """(m, n) logits of m rows of weights (m, dim + 1) in these coordinates (float64)."""
        return np.asarray(W.astype(self.dtype, copy=False) @ self.Vp.T, dtype=np.float64)

    def backproject(self, R: np.ndarray) -> np.ndarray:
        """(m, dim + 1) = R · Vp for residuals R (m, n) (float64)."""
        return np.asarray(R.astype(self.dtype, copy=False) @ self.Vp, dtype=np.float64)


def _objective_in_basis(
    b: _Basis, y_idx: np.ndarray, w8: np.ndarray, C: float, S: float, v: np.ndarray
) -> float:
    """The objective at v (K, dim + 1), computed in the basis (‖coef‖ = ‖v[:, :dim]‖)."""
    L = b.logits(v)
    m = L.max(0, keepdims=True)
    lse = (m + np.log(np.exp(L - m).sum(0, keepdims=True)))[0]
    ce = lse - L[y_idx, np.arange(len(y_idx))]
    return float(w8 @ ce + 0.5 / (C * S) * np.sum(v[:, : b.dim] ** 2))


def fit_multinomial(
    Zs: list,
    y_idx: np.ndarray,
    n_classes: int,
    sample_weight: np.ndarray,
    Cs: Sequence[float],
    tol: float = 1e-4,
    max_iter: int = 1000,
    memory: int = 10,
) -> list[list[LogisticFit]]:
    """Solve every (Z in Zs, C in Cs) problem; result[i][j] is for Zs[i] and Cs[j]. The list is
    consumed: each entry is released once its basis is built (so a caller holding only the list
    holds each matrix once)."""
    y_idx = np.asarray(y_idx, dtype=np.int64)
    sw = np.asarray(sample_weight, dtype=np.float64)
    S = float(sw.sum())
    w8 = sw / S
    bases = []
    for i in range(len(Zs)):
        bases.append(_Basis(Zs[i], w8))
        Zs[i] = None
    problems = [(i, float(C)) for i in range(len(bases)) for C in Cs]
    # group problems of similar width so that padding to the widest wastes little
    order = sorted(range(len(problems)), key=lambda p: bases[problems[p][0]].dim)
    out: dict[int, tuple[np.ndarray, LogisticFit]] = {}
    n = len(y_idx)
    start = 0
    while start < len(order):
        width = bases[problems[order[start]][0]].dim
        end = start
        limit = max(1, _MAX_BATCH_ELEMS // (n_classes * n))
        while (
            end < len(order)
            and end - start < limit
            and bases[problems[order[end]][0]].dim <= 2 * width + 8
        ):
            end += 1
        chunk = order[start:end]
        fits = _solve_batch(
            [bases[problems[p][0]] for p in chunk],
            [problems[p][1] for p in chunk],
            y_idx,
            n_classes,
            w8,
            S,
            tol,
            max_iter,
            memory,
        )
        for p, fit in zip(chunk, fits):
            out[p] = fit
        start = end
    res = []
    for i, b in enumerate(bases):
        row = []
        for j, C in enumerate(Cs):
            v, fit = out[i * len(Cs) + j]
            fit.objective = _objective_in_basis(b, y_idx, w8, float(C), S, v)
            row.append(fit)
        res.append(row)
    return res


def _solve_batch(
    bases: list[_Basis],
    Cs: list[float],
    y_idx: np.ndarray,
    K: int,
    w8: np.ndarray,
    S: float,
    tol: float,
    max_iter: int,
    m: int,
) -> list[tuple[np.ndarray, LogisticFit]]:
    n = len(y_idx)
    B = len(bases)
    uniq = list(dict.fromkeys(id(b) for b in bases))
    groups = {bid: gi for gi, bid in enumerate(uniq)}
    mats = {groups[id(b)]: b for b in bases}
    Dp = max(b.dim for b in bases)
    W1 = Dp + 1  # padded width + intercept column
    # the columns of the padded coordinates each basis uses: its own, then the intercept at Dp
    cols = {gi: np.r_[0 : b.dim, Dp] for gi, b in mats.items()}
    grp = np.array([groups[id(b)] for b in bases])
    lam = np.array([1.0 / (C * S) for C in Cs])
    scale = np.zeros((B, W1))  # u → v: v = scale·u (preconditioner)
    for j, b in enumerate(bases):
        scale[j, : b.dim] = 1.0 / np.sqrt(_A * b.ev + lam[j])
        scale[j, Dp] = 1.0 / np.sqrt(_A)
    scale = scale_all = np.repeat(scale[:, None, :], K, 1).reshape(B, -1)
    pen = np.ones((K, W1))
    pen[:, Dp] = 0.0
    pen = pen.ravel()
    rows = np.arange(n)
    Yk = np.zeros((1, K, n))
    Yk[0, y_idx, rows] = 1.0
    sw = w8[None, :]
    P = K * W1

    def value_and_grad(u, lam, grp, scale):
        b = u.shape[0]
        v = u * scale
        W = v.reshape(b, K, W1)
        L = np.empty((b, K, n))
        present = np.unique(grp)
        sels = {g: (np.flatnonzero(grp == g) if len(present) > 1 else slice(None)) for g in present}
        for g, sel in sels.items():
            Wg = W[sel][:, :, cols[g]].reshape(-1, len(cols[g]))
            L[sel] = mats[g].logits(Wg).reshape(-1, K, n)
        mx = L.max(1, keepdims=True)
        E = np.exp(L - mx)
        se = E.sum(1, keepdims=True)
        lse = mx[:, 0] + np.log(se[:, 0])
        f = ((lse - L[:, y_idx, rows]) * sw).sum(1)
        R = (E / se - Yk) * sw[:, None, :]
        Gv = np.zeros((b, K, W1))
        for g, sel in sels.items():
            idx = sel if isinstance(sel, np.ndarray) else np.arange(b)
            Gv[np.ix_(idx, np.arange(K), cols[g])] = (
                mats[g].backproject(R[sel].reshape(-1, n)).reshape(-1, K, len(cols[g]))
            )
        Gv = Gv.reshape(b, P)
        vp = v * pen
        f = f + 0.5 * lam * np.einsum("bp,bp->b", vp, v)
        Gv += lam[:, None] * vp
        return f, Gv * scale, Gv

    u = np.zeros((B, P))
    active = np.arange(B)
    u_out = np.zeros((B, P))
    n_iter = np.zeros(B, dtype=np.int64)
    converged = np.zeros(B, dtype=bool)
    f, g, gv = value_and_grad(u, lam, grp, scale)
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
            lam, grp, scale = lam[keep], grp[keep], scale[keep]
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
                u[idx] + step[idx, None] * d[idx], lam[idx], grp[idx], scale[idx]
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
    fits = []
    for j, b in enumerate(bases):
        coef = V[j, :, : b.dim] @ b.Q.T
        v = np.concatenate([V[j, :, : b.dim], V[j, :, Dp : Dp + 1]], axis=1)
        fits.append(
            (
                v,
                LogisticFit(
                    coef=coef,
                    intercept=V[j, :, Dp].copy(),
                    n_iter=int(n_iter[j]),
                    converged=bool(converged[j]),
                    objective=float("nan"),
                ),
            )
        )
    return fits
