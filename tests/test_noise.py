"""The noise bank: determinism, level, length, the SNR of mixes, and the train / held-out split."""

from __future__ import annotations


import numpy as np
import pytest
from scipy.stats import kurtosis

from avscene.dsp import noise as bank
from avscene.errors import UsageError

SR = 16000

# The held-out families, pinned: moving one to training changes what the stress test measures,
# so it must be a deliberate edit of this list too.
PINNED_HELDOUT = {"resonant", "brown", "typing", "crackle", "chirps", "traffic", "engine", "crowd", "mix_heldout"}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64)))))


@pytest.mark.parametrize("family", sorted(bank.FAMILIES))
def test_every_family_is_deterministic_by_seed(family):
    a = bank.noise(family, SR, sr=SR, rng=7)
    assert np.array_equal(a, bank.noise(family, SR, sr=SR, rng=7))
    assert np.array_equal(a, bank.noise(family, SR, sr=SR, rng=np.random.default_rng(7)))
    b = bank.noise(family, SR, sr=SR, rng=8)
    assert np.mean(np.abs(a - b)) > 0.1  # another seed: other samples, not a tiny perturbation


@pytest.mark.parametrize("family", sorted(bank.FAMILIES))
@pytest.mark.parametrize("n", [1, 333, 10 * SR])
def test_every_family_has_the_asked_length_unit_rms_and_finite_samples(family, n):
    for seed in range(2):
        x = bank.noise(family, n, sr=SR, rng=seed)
        assert x.shape == (n,) and x.dtype == np.float32
        assert np.all(np.isfinite(x))
        assert _rms(x) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("sr", [8000, 44100])
def test_families_work_at_other_sample_rates(sr):
    for family in bank.FAMILIES:
        x = bank.noise(family, sr // 2, sr=sr, rng=3)
        assert x.shape == (sr // 2,) and np.all(np.isfinite(x)) and _rms(x) == pytest.approx(1.0, rel=1e-4)


def test_impulsive_families_are_impulsive_and_plain_noises_are_gaussian():
    impulsive = [k for k, f in bank.FAMILIES.items() if f.texture == "impulsive"]
    assert len(impulsive) >= 4
    for seed in range(4):
        for family in impulsive:  # sparse events: heavy tails (a Gaussian has excess kurtosis 0)
            assert kurtosis(bank.noise(family, 10 * SR, sr=SR, rng=seed)) > 10, family
        for family in ("white", "coloured", "resonant", "brown"):
            assert abs(kurtosis(bank.noise(family, 10 * SR, sr=SR, rng=seed))) < 0.5, family


def test_tones_put_almost_all_their_energy_in_a_few_frequencies():
    for seed in range(4):
        power = np.abs(np.fft.rfft(bank.noise("tones", 10 * SR, sr=SR, rng=seed))) ** 2
        top = np.sort(power)[::-1][:100]  # 100 of 80001 bins
        assert top.sum() / power.sum() > 0.9


def test_noise_rejects_unknown_families_and_bad_sizes():
    with pytest.raises(UsageError, match="unknown noise family 'siren'"):
        bank.noise("siren", 100, sr=SR, rng=0)
    with pytest.raises(UsageError, match="at least one sample"):
        bank.noise("white", 0, sr=SR, rng=0)
    with pytest.raises(UsageError, match="sample rate of at least"):
        bank.noise("white", 100, sr=4000, rng=0)


# --------------------------------------------------------------------------- mixing


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 7.5, 20.0])
def test_mix_at_snr_gives_the_asked_snr(snr_db):
    rng = np.random.default_rng(1)
    signal = np.sin(2 * np.pi * 440 * np.arange(SR) / SR) * np.linspace(0, 0.5, SR)  # any level, any shape
    background = 3.0 * rng.standard_normal(SR) + 0.2
    mixed = bank.mix_at_snr(signal, background, snr_db)
    added = mixed.astype(np.float64) - signal
    measured = 10 * np.log10(np.mean(signal**2) / np.mean(added**2))
    assert measured == pytest.approx(snr_db, abs=0.01)
    # the added part is the background, scaled (correlation 1), not some other noise
    assert np.corrcoef(added, background)[0, 1] == pytest.approx(1.0, abs=1e-6)


def test_mix_at_snr_puts_the_background_at_silent_rms_under_a_silent_signal():
    background = np.random.default_rng(2).standard_normal(SR) * 5
    mixed = bank.mix_at_snr(np.zeros(SR), background, 0.0)
    assert _rms(mixed) == pytest.approx(bank.SILENT_RMS, rel=1e-5)
    assert _rms(bank.mix_at_snr(np.zeros(SR), background, 0.0, silent_rms=0.5)) == pytest.approx(0.5, rel=1e-5)


def test_mix_at_snr_rejects_mismatched_or_silent_backgrounds():
    with pytest.raises(UsageError, match="one length"):
        bank.mix_at_snr(np.ones(10), np.ones(11), 0.0)
    with pytest.raises(UsageError, match="non-zero power"):
        bank.mix_at_snr(np.ones(10), np.zeros(10), 0.0)


# --------------------------------------------------------------------------- the split


def test_train_and_heldout_are_disjoint_cover_the_bank_and_share_every_texture():
    train, heldout = set(bank.TRAIN_FAMILIES), set(bank.HELDOUT_FAMILIES)
    assert not train & heldout
    assert train | heldout == set(bank.FAMILIES)
    assert heldout == PINNED_HELDOUT
    textures = {t: ({k for k in train if bank.FAMILIES[k].texture == t},
                    {k for k in heldout if bank.FAMILIES[k].texture == t}) for t in bank.TEXTURES}
    for texture, (tr, ho) in textures.items():
        assert tr and ho, f"texture {texture} needs families on both sides: train {tr}, held out {ho}"
    assert {f.texture for f in bank.FAMILIES.values()} == set(bank.TEXTURES)
    assert all(f.split == ("heldout" if k in heldout else "train") for k, f in bank.FAMILIES.items())


def test_training_noise_draws_every_training_family_and_never_a_heldout_one(spied):
    rng = np.random.default_rng(0)
    for _ in range(300):
        x = bank.training_noise(64, sr=SR, rng=rng)
        assert x.shape == (64,) and _rms(x) == pytest.approx(1.0, rel=1e-4)
    assert set(spied) == set(bank.TRAIN_FAMILIES)  # mix_train's parts included: all training families
    assert not set(spied) & PINNED_HELDOUT


def test_the_spy_catches_a_heldout_family_in_the_training_pool(spied, monkeypatch):
    # the check above is not vacuous: with one held-out family in the pool, the spy sees it
    monkeypatch.setattr(bank, "TRAIN_FAMILIES", bank.TRAIN_FAMILIES + ("crowd",))
    rng = np.random.default_rng(0)
    for _ in range(300):
        bank.training_noise(64, sr=SR, rng=rng)
    assert "crowd" in spied


def test_each_mixture_family_draws_only_from_its_own_split(spied):
    for seed in range(40):
        bank.noise("mix_heldout", 64, sr=SR, rng=seed)
    assert set(spied) - {"mix_heldout"} <= PINNED_HELDOUT and len(set(spied)) > 4
    spied.clear()
    for seed in range(40):
        bank.noise("mix_train", 64, sr=SR, rng=seed)
    assert not set(spied) & PINNED_HELDOUT and len(set(spied)) > 4
