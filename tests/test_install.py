"""The installed stack loads: torchaudio's native library against this torch (a mismatched
pair installs cleanly and fails only at import)."""

import torch


def test_torchaudio_loads_and_runs_against_the_installed_torch():
    import torchaudio
    import torchaudio.functional as AF

    assert torchaudio.__version__.split("+")[0].rsplit(".", 1)[0] == torch.__version__.split("+")[0].rsplit(".", 1)[0]
    x = torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 16000).unsqueeze(0)
    y = AF.lowpass_biquad(x, 16000, 1000.0)  # a native-library op
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert float(y.abs().max()) > 0.5  # 440 Hz passes a 1 kHz low-pass
