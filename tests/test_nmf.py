"""Tests of multiplicative-update NMF (KL and IS)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from avscene.dsp.nmf import divergence, nmf
from avscene.errors import UsageError

DTYPES = [torch.float32, torch.float64]


def _random_v(
    rng: np.random.Generator, dtype: torch.dtype, shape: tuple[int, int] = (40, 60)
) -> torch.Tensor:
    # Squared uniforms: a skewed, spectrogram-like nonnegative matrix of full rank.
    return torch.from_numpy(rng.uniform(0, 1, shape) ** 2).to(dtype)


def test_kl_divergence_matches_scipy(rng: np.random.Generator) -> None:
    V = rng.uniform(0, 2, (5, 7))
    V[0, :3] = 0.0  # 0 log 0 = 0
    Y = rng.uniform(0.1, 2, (5, 7))
    want = scipy.special.kl_div(V, Y).sum()  # x log(x/y) - x + y
    got = divergence(torch.from_numpy(V), torch.from_numpy(Y), "kl", eps=0.0)
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_is_divergence_by_hand() -> None:
    # d_IS(v|y) = v/y - log(v/y) - 1: (1, 2) -> 0.5 + ln 2 - 1; (2, 2) -> 0; (3, 1) -> 2 - ln 3.
    V = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    Y = torch.tensor([[2.0, 2.0, 1.0]], dtype=torch.float64)
    want = (0.5 + np.log(2) - 1) + 0.0 + (2 - np.log(3))
    assert float(divergence(V, Y, "is", eps=0.0)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["kl", "is"])
def test_divergence_non_increasing(rng: np.random.Generator, kind: str, dtype: torch.dtype) -> None:
    V = _random_v(rng, dtype)
    res = nmf(V, k=5, divergence=kind, max_iter=150, tol=0.0)
    d = np.array(res.divergences)
    assert len(d) == res.n_iter + 1
    float_noise = 1e-5 if dtype == torch.float32 else 1e-10
    assert np.all(d[1:] <= d[:-1] * (1 + float_noise))
    assert d[-1] < 0.8 * d[0]  # and it actually decreased
    # The trace is the divergence of the returned factors.
    assert float(divergence(V, res.W @ res.H, kind)) == pytest.approx(d[-1], rel=1e-4)


@pytest.mark.parametrize("kind", ["kl", "is"])
def test_recovers_exact_rank3_factorisation(rng: np.random.Generator, kind: str) -> None:
    # Sparse factors make the rank-3 NMF (nearly) unique, so MU converges instead
    # of drifting along a valley of equivalent factorisations; the 0.1 floor on
    # H0 keeps V > 0 (IS is ill-posed on exact zeros), and every W0 row is non-zero.
    support = rng.uniform(size=(30, 3)) < 0.4
    support[np.arange(30), rng.integers(0, 3, 30)] = True
    W0 = torch.from_numpy(rng.uniform(0.1, 1, (30, 3)) * support)
    H0 = torch.from_numpy(rng.uniform(0, 1, (3, 40)) * (rng.uniform(size=(3, 40)) < 0.5) + 0.1)
    V = W0 @ H0  # (30, 40), exactly rank 3 and positive
    res = nmf(V, k=3, divergence=kind, max_iter=1000, tol=0.0)
    rel_err = float(torch.linalg.norm(V - res.W @ res.H) / torch.linalg.norm(V))
    assert rel_err < 1e-3
    # A rank-2 factorisation cannot get close: the test is not trivially passable.
    res2 = nmf(V, k=2, divergence=kind, max_iter=1000, tol=0.0)
    assert float(torch.linalg.norm(V - res2.W @ res2.H) / torch.linalg.norm(V)) > 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_dtype_shapes_and_normalisation(
    rng: np.random.Generator, dtype: torch.dtype
) -> None:
    V = _random_v(rng, dtype, (20, 30))
    res = nmf(V, k=4, max_iter=20)
    assert res.W.shape == (20, 4) and res.H.shape == (4, 30)
    assert res.W.dtype == dtype and res.H.dtype == dtype
    assert bool((res.W >= 0).all()) and bool((res.H >= 0).all())
    torch.testing.assert_close(res.W.sum(dim=0), torch.ones(4, dtype=dtype))


def test_deterministic_for_a_seed(rng: np.random.Generator) -> None:
    V = _random_v(rng, torch.float32)
    a = nmf(V, k=4, max_iter=30, seed=3)
    b = nmf(V, k=4, max_iter=30, seed=3)
    c = nmf(V, k=4, max_iter=30, seed=4)
    assert torch.equal(a.W, b.W) and torch.equal(a.H, b.H)
    assert a.divergences == b.divergences
    assert not torch.equal(a.W, c.W)


def test_tol_stops_early(rng: np.random.Generator) -> None:
    V = _random_v(rng, torch.float64)
    res = nmf(V, k=4, max_iter=500, tol=1e-3)
    assert res.n_iter < 500
    d = res.divergences
    # It stopped at the first iteration whose relative decrease fell below tol.
    assert (d[-2] - d[-1]) / d[-2] < 1e-3
    assert all((d[i - 1] - d[i]) / d[i - 1] >= 1e-3 for i in range(1, len(d) - 1))


def test_zeros_in_v_stay_finite() -> None:
    V = torch.zeros(10, 12, dtype=torch.float64)
    V[:5, :6] = 1.0
    for kind in ("kl", "is"):
        res = nmf(V, k=2, divergence=kind, max_iter=50)
        assert bool(torch.isfinite(res.W).all()) and bool(torch.isfinite(res.H).all())
        assert all(np.isfinite(res.divergences))


@pytest.mark.parametrize(
    ("V", "kwargs", "match"),
    [
        (-torch.ones(3, 3), {}, "nonnegative"),
        (torch.ones(3), {}, "2-D floating-point"),
        (torch.ones(3, 3, dtype=torch.int64), {}, "2-D floating-point"),
        (torch.ones(3, 3), {"k": 0}, "k must be >= 1"),
        (torch.ones(3, 3), {"divergence": "euclid"}, "unknown NMF divergence"),
        (torch.ones(3, 3), {"max_iter": 0}, "max_iter must be >= 1"),
        (torch.full((3, 3), float("nan")), {}, "finite"),
    ],
)
def test_rejects_bad_input(V: torch.Tensor, kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        nmf(V, **{"k": 2, **kwargs})


def test_fixed_atoms_stay_fixed_and_known_activations_are_recovered() -> None:
    """Supervised NMF through the same function: V = W_true H_true with W_true given."""
    gen = torch.Generator().manual_seed(0)
    W_true = torch.rand(40, 3, generator=gen, dtype=torch.float64) ** 4
    W_true = W_true / W_true.sum(dim=0)
    H_true = torch.rand(3, 60, generator=gen, dtype=torch.float64) * 5
    V = W_true @ H_true
    fit = nmf(V, k=0, W_fixed=W_true, max_iter=500, tol=0.0)
    assert torch.equal(fit.W, W_true)  # nothing learnt but the activations
    torch.testing.assert_close(fit.H, H_true, rtol=2e-2, atol=2e-2)
    d0 = fit.divergences[0]
    assert all(b <= a + 1e-9 * d0 for a, b in zip(fit.divergences, fit.divergences[1:]))  # KL: monotone
    assert fit.divergences[-1] < 1e-3 * d0
    both = nmf(V, k=2, W_fixed=W_true[:, :1], max_iter=50)  # two free atoms beside one fixed
    assert both.W.shape == (40, 3) and torch.equal(both.W[:, 2], W_true[:, 0])
    torch.testing.assert_close(both.W[:, :2].sum(dim=0), torch.ones(2, dtype=torch.float64))
    with pytest.raises(UsageError, match="W_fixed"):
        nmf(V, k=1, W_fixed=W_true[:10])
