"""Decoding: frame sampling instants, audio scale/rate/length, containers, damaged input.

Every clip is written by ``avscene.testing.media`` with known content: frame ``k`` of a
constant-rate clip is shown during ``[k / rate, (k + 1) / rate)`` and is a solid colour
that encodes ``k``; audio is ``amplitude * sin(2 pi 440 t)``. Expected values are worked
out by hand from those definitions.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from avscene.errors import DecodeError, UsageError
from avscene.io.audio_stream import AudioReader
from avscene.io.decode import decode, iter_frames, probe, read_audio
from avscene.testing.media import has_encoders, nearest_index, truncate_file, write_audio, write_video

SR = 16000
TONE_HZ = 440.0
RMS_HALF = 0.5 / math.sqrt(2)  # RMS of a sine of amplitude 0.5
AVBENCH_CLIP = Path("/work/shared/avbench/train/clips/00000.mp4")

CONTAINERS = [  # (suffix, video codec, audio codec)
    (".mp4", "libx264", "aac"),
    (".webm", "libvpx-vp9", "libopus"),
    (".mkv", "libx264", "flac"),
    (".avi", "mjpeg", "pcm_s16le"),
    (".mov", "mpeg4", "aac"),
]


def needs(*codecs: str | None):
    """Skip a test when this PyAV build lacks an encoder it writes with."""
    return pytest.mark.skipif(not has_encoders(*codecs), reason=f"no encoder among {codecs}")


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def indices(frames: np.ndarray, n: int) -> list[int]:
    return [nearest_index(f, n) for f in frames]


@pytest.mark.parametrize(("suffix", "vcodec", "acodec"), CONTAINERS)
def test_containers_decode_frames_and_audio(tmp_path, suffix, vcodec, acodec):
    if not has_encoders(vcodec, acodec):
        pytest.skip(f"this PyAV build cannot encode {vcodec}/{acodec}")
    path = write_video(tmp_path / f"clip{suffix}", duration=2.0, fps=8, size=(64, 48),
                       video_codec=vcodec, audio_codec=acodec)
    clip = decode(path)
    # instants 0.5, 1.5 s; at 8 fps frame floor(8 t) is on screen: 4 and 12
    assert clip.frames.shape == (2, 48, 64, 3) and clip.frames.dtype == np.uint8
    np.testing.assert_allclose(clip.frame_times, [0.5, 1.5])
    assert indices(clip.frames, 16) == [4, 12]
    audio = clip.audio
    assert audio.dtype == np.float32 and clip.sample_rate == SR
    # 2 s at 16 kHz; containers without an exact duration may keep < 1 AAC/Opus frame of padding
    assert 2 * SR <= len(audio) <= 2 * SR + 1024
    body = audio[SR // 4 : -SR // 4]
    assert rms(body) == pytest.approx(RMS_HALF, rel=0.03)
    assert dominant_freq(body, SR) == pytest.approx(TONE_HZ, abs=2.0)
    assert clip.info.has_video and clip.info.has_audio
    assert (clip.info.width, clip.info.height, clip.info.fps) == (64, 48, 8.0)


@needs("libx264", "aac")
def test_aac_padding_trimmed_to_stream_duration(tmp_path):
    # AAC decodes whole 1024-sample frames (33 frames = 33792 samples here);
    # the mp4 header says 2.0 s, so exactly 32000 samples must come back.
    clip = decode(write_video(tmp_path / "c.mp4", duration=2.0))
    assert len(clip.audio) == 2 * SR
    assert clip.info.duration == pytest.approx(2.0)


@needs("pcm_s16le")
def test_pcm_audio_is_sample_exact(tmp_path):
    path = write_audio(tmp_path / "a.wav", duration=1.0, sample_rate=SR)
    audio = read_audio(path)
    n = np.arange(SR)
    expected = 0.5 * np.sin(2 * np.pi * TONE_HZ * n / SR)
    np.testing.assert_allclose(audio, expected, atol=1 / 2**14)  # s16 quantisation step 2^-15


@pytest.mark.parametrize("codec", ["pcm_u8", "pcm_s16le", "pcm_s32le", "pcm_f32le"])
def test_sample_formats_scale_to_unit_range(tmp_path, codec):
    if not has_encoders(codec):
        pytest.skip(f"no {codec} encoder")
    audio = read_audio(write_audio(tmp_path / f"{codec}.wav", duration=1.0, codec=codec))
    assert audio.dtype == np.float32 and len(audio) == SR
    assert rms(audio) == pytest.approx(RMS_HALF, rel=0.01)  # u8 step 1/128 moves RMS < 1 %
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.01)


@needs("pcm_s16le")
@pytest.mark.parametrize(("amps", "expected_amp"), [((0.5, 0.5), 0.5), ((0.5, 0.1), 0.3)])
def test_stereo_44k_is_averaged_and_resampled(tmp_path, amps, expected_amp):
    # In-phase channels of amplitudes a, b average to (a + b) / 2. FFmpeg's default
    # downmix (1/sqrt(2) per channel) would give 0.71 / 0.42, a plain sum 1.0 / 0.6.
    path = write_audio(tmp_path / "s.wav", duration=2.0, sample_rate=44100, channels=2,
                       amplitude=amps)
    audio = read_audio(path)
    assert len(audio) == pytest.approx(2.0 * SR, abs=2)
    body = audio[SR // 4 : -SR // 4]
    assert rms(body) == pytest.approx(expected_amp / math.sqrt(2), rel=0.01)
    assert dominant_freq(body, SR) == pytest.approx(TONE_HZ, abs=1.0)
    # resampling keeps time: sample i is the tone at i / 16000 s
    n = np.arange(len(audio))
    ideal = expected_amp * np.sin(2 * np.pi * TONE_HZ * n / SR)
    np.testing.assert_allclose(audio[SR // 4 : -SR // 4], ideal[SR // 4 : -SR // 4], atol=2e-3)


@needs("pcm_s16le")
@pytest.mark.parametrize("channels", [6, 8, 12, 24])
def test_many_channels_are_averaged(tmp_path, channels):
    # 8 channels and more crashed the interpreter (planar frames of PyAV 18); test_bad_inputs runs the
    # CLI on them in a subprocess. Here the values: at the file's own rate every decoder must give
    # the mean of the channels soundfile reads; resampled, the mean of the amplitudes.
    amps = np.linspace(0.05, 0.9, channels)
    path = write_audio(tmp_path / "many.wav", duration=1.0, sample_rate=SR, channels=channels,
                       amplitude=amps.tolist())
    want = soundfile.read(path, dtype="float64")[0].mean(axis=1)  # (N, C) -> (N,)
    with AudioReader(path) as reader:
        streamed = np.concatenate(list(reader.blocks(3000)))
    for got in (read_audio(path), decode(path).audio, streamed):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-6)
    path48 = write_audio(tmp_path / "many48.wav", duration=1.0, sample_rate=48000, channels=channels,
                         amplitude=amps.tolist())
    audio = read_audio(path48)
    ideal = amps.mean() * np.sin(2 * np.pi * TONE_HZ * np.arange(SR) / SR)
    np.testing.assert_allclose(audio[SR // 4 : -SR // 4], ideal[SR // 4 : -SR // 4], atol=2e-3)


@needs("libx264", "pcm_s16le")
def test_late_audio_is_aligned_with_leading_silence(tmp_path):
    # audio starts 0.5 s after the first frame: sample i must still be at i / 16000 s
    path = write_video(tmp_path / "late.mkv", duration=1.0, audio_codec="pcm_s16le",
                       audio_start=0.5)
    clip = decode(path)
    assert len(clip.audio) == pytest.approx(1.5 * SR, abs=16)  # mkv has ms timestamps
    np.testing.assert_array_equal(clip.audio[: SR // 2 - 16], 0.0)
    n = np.arange(SR)
    tone = 0.5 * np.sin(2 * np.pi * TONE_HZ * n / SR)
    np.testing.assert_allclose(clip.audio[SR // 2 : SR // 2 + SR], tone, atol=1e-3)
    assert indices(clip.frames, 8) == [4]  # the video clock is unchanged


@needs("libx264", "aac")
def test_stereo_44k_in_video(tmp_path):
    path = write_video(tmp_path / "s.mp4", duration=2.0, audio_rate=44100, channels=2)
    clip = decode(path)
    assert len(clip.audio) == 2 * SR
    assert rms(clip.audio[SR // 4 : -SR // 4]) == pytest.approx(RMS_HALF, rel=0.02)
    assert (clip.info.audio_rate, clip.info.audio_channels) == (44100, 2)


@pytest.mark.parametrize(("name", "codec"), [("a.wav", "pcm_s16le"), ("a.flac", "flac"),
                                             ("a.m4a", "aac"), ("a.mp3", "libmp3lame")])
def test_audio_only_files(tmp_path, name, codec):
    if not has_encoders(codec):
        pytest.skip(f"no {codec} encoder")
    path = write_audio(tmp_path / name, duration=1.5, sample_rate=22050)
    clip = decode(path)
    assert clip.frames is None and clip.frame_times.shape == (0,)
    assert not clip.info.has_video and clip.info.has_audio
    assert clip.info.width is None and clip.info.fps is None
    assert len(clip.audio) == pytest.approx(1.5 * SR, abs=2)
    assert clip.info.duration == pytest.approx(1.5, abs=1e-3)
    assert dominant_freq(clip.audio, SR) == pytest.approx(TONE_HZ, abs=1.5)
    with pytest.raises(DecodeError, match=rf"{name}: no video stream"):
        iter_frames(path)


@needs("libx264")
def test_video_only_file(tmp_path):
    path = write_video(tmp_path / "v.mp4", duration=3.0, audio_codec=None)
    clip = decode(path)
    assert clip.audio is None and not clip.info.has_audio and clip.info.has_video
    assert indices(clip.frames, 24) == [4, 12, 20]
    assert clip.info.duration == pytest.approx(3.0)
    with pytest.raises(DecodeError, match=r"v\.mp4: no audio stream"):
        read_audio(path)


@needs("libx264")
@pytest.mark.parametrize(("duration", "n_frames"), [(2.4, 2), (2.6, 3), (0.2, 1)])
def test_frame_count_is_instants_before_end(tmp_path, duration, n_frames):
    # 8 fps: round(8 d) frames ending at round(8 d) / 8 s; instants 0.5, 1.5, 2.5 ...
    # 2.4 s -> 19 frames end 2.375: 2 instants; 2.6 s -> 21 frames end 2.625: 3;
    # 0.2 s -> 2 frames end 0.25: no instant inside, the t=0 frame is taken.
    clip = decode(write_video(tmp_path / "c.mp4", duration=duration, audio_codec=None))
    assert len(clip.frames) == n_frames
    if duration < 0.5:
        assert clip.frame_times.tolist() == [0.0] and indices(clip.frames, 2) == [0]


@needs("libx264")
def test_other_rates_and_offsets(tmp_path):
    path = write_video(tmp_path / "c.mp4", duration=2.0, audio_codec=None)
    clip = decode(path, fps=2, offset=0.0)  # instants 0, .5, 1, 1.5 -> frames 0, 4, 8, 12
    assert indices(clip.frames, 16) == [0, 4, 8, 12]
    clip = decode(path, fps=4, offset=0.5)  # instants .125 + .25 k -> frames 1, 3, ..., 15
    np.testing.assert_allclose(clip.frame_times, 0.125 + 0.25 * np.arange(8))
    assert indices(clip.frames, 16) == list(range(1, 16, 2))


@needs("libx264")
def test_iter_frames_streams_the_same_frames(tmp_path):
    path = write_video(tmp_path / "c.mp4", duration=3.0, audio_codec=None)
    stream = iter_frames(path)
    assert not isinstance(stream, (list, tuple))
    pairs = list(stream)
    clip = decode(path)
    assert [t for t, _ in pairs] == clip.frame_times.tolist()
    np.testing.assert_array_equal(np.stack([f for _, f in pairs]), clip.frames)


@pytest.mark.parametrize(("suffix", "vcodec", "acodec"),
                         [(".mkv", "libx264", "aac"), (".mp4", "libx264", "aac"),
                          (".webm", "libvpx-vp9", "libopus")])
def test_variable_frame_rate(tmp_path, suffix, vcodec, acodec):
    if not has_encoders(vcodec, acodec):
        pytest.skip(f"no {vcodec}/{acodec} encoder")
    # frame k shown from times[k]: at 0.5 s frame 2 (0.4), 1.5 s frame 3 (1.2), 2.5 s frame 4 (1.9)
    times = [0.0, 0.3, 0.4, 1.2, 1.9, 2.6]
    path = write_video(tmp_path / f"v{suffix}", duration=3.0, frame_times=times,
                       video_codec=vcodec, audio_codec=acodec)
    clip = decode(path)
    assert indices(clip.frames, len(times)) == [2, 3, 4]
    # the first frame comes late (0.7 s): 0.5 s takes it anyway
    times = [0.7, 1.0, 1.6, 2.2, 2.6]
    path = write_video(tmp_path / f"w{suffix}", duration=3.0, frame_times=times,
                       video_codec=vcodec, audio_codec=acodec)
    assert indices(decode(path).frames, len(times)) == [0, 1, 3]


@needs("libx264")
@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
                    reason="this PyAV cannot write rotation metadata")
def test_rotation_metadata_turns_frames_upright(tmp_path):
    # Stored 64x48 with a white block in the top-left corner and a display matrix of
    # +90 (counter-clockwise, PyAV's convention). ffmpeg's autorotate turns such a
    # picture 90 degrees counter-clockwise: shown 48 wide, 64 high, block bottom-left.
    path = write_video(tmp_path / "r.mp4", duration=1.0, audio_codec=None, rotation=90,
                       box=(0, 0, 16, 12), box_color=(255, 255, 255))
    clip = decode(path)
    assert clip.frames.shape[1:] == (64, 48, 3)
    assert (clip.info.width, clip.info.height) == (48, 64)
    whiteness = clip.frames[0].min(axis=-1)  # (H, W): high only where all of R, G, B are
    assert whiteness[64 - 16 + 2 : 64 - 2, 2:10].min() > 230  # the block, away from its edges
    assert whiteness[2:14, 2:10].max() < 100  # nothing white top-left any more
    assert any("rotated 90" in w for w in clip.info.warnings)
    info = probe(path)
    assert (info.width, info.height) == (48, 64)


@needs("libx264", "aac")
def test_probe_reads_the_header(tmp_path):
    path = write_video(tmp_path / "c.mp4", duration=2.0, audio_rate=44100, channels=2)
    info = probe(path)
    assert info.duration == pytest.approx(2.0)
    assert (info.width, info.height, info.fps) == (64, 48, 8.0)
    assert (info.audio_rate, info.audio_channels, info.has_video, info.has_audio) == (
        44100, 2, True, True)


@pytest.mark.skipif(not AVBENCH_CLIP.exists(), reason="avbench not available")
def test_avbench_clip_has_ten_frames_and_ten_seconds():
    clip = decode(AVBENCH_CLIP)  # 10 s, 8 fps, 16 kHz mono AAC
    assert clip.frames.shape == (10, 224, 224, 3)
    np.testing.assert_allclose(clip.frame_times, np.arange(10) + 0.5)
    assert len(clip.audio) == 10 * SR and clip.info.duration == pytest.approx(10.0)
    assert np.abs(clip.audio).max() <= 1.0


def test_missing_file(tmp_path):
    with pytest.raises(DecodeError, match=r"nope\.mp4: no such file"):
        decode(tmp_path / "nope.mp4")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(DecodeError, match=r"empty\.mp4: empty file"):
        decode(tmp_path / "empty.mp4")


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(DecodeError, match=r"notes\.mp4: not a media file FFmpeg can read \("):
        decode(path)
    with pytest.raises(DecodeError, match=r"notes\.mp4: not a media file"):
        probe(path)


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(DecodeError, match="is a folder"):
        read_audio(tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
@needs("pcm_s16le")
def test_permission_denied(tmp_path):
    path = write_audio(tmp_path / "locked.wav", duration=0.5)
    path.chmod(0)
    with pytest.raises(DecodeError, match=r"locked\.wav: permission denied"):
        decode(path)


@needs("libx264", "aac")
def test_truncated_mp4_without_index_fails(tmp_path):
    # the default mp4 layout writes the index ('moov') last: cut it off and nothing opens
    path = write_video(tmp_path / "cut.mp4", duration=2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match=r"cut\.mp4: not a media file FFmpeg can read"):
        decode(path)


@needs("libx264")
def test_truncated_faststart_mp4_decodes_the_beginning(tmp_path):
    path = write_video(tmp_path / "cut.mp4", duration=3.0, audio_codec=None,
                       pattern="index_noise", faststart=True)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])
    clip = decode(path)
    assert 1 <= len(clip.frames) < 3
    assert [nearest_index(f[:, :32], 24) for f in clip.frames] == [4, 12][: len(clip.frames)]
    assert any("truncated" in w for w in clip.info.warnings)
    assert clip.info.duration < 3.0


@needs("libx264", "aac")
def test_truncated_mkv_decodes_the_beginning(tmp_path):
    path = write_video(tmp_path / "cut.mkv", duration=3.0, pattern="index_noise")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    clip = decode(path)
    assert 1 <= len(clip.frames) < 3 and 0 < len(clip.audio) < 3 * SR
    assert [nearest_index(f[:, :32], 24) for f in clip.frames] == [4, 12][: len(clip.frames)]
    assert any("truncated" in w for w in clip.info.warnings)


@needs("libx264", "aac", "flac")
@pytest.mark.parametrize("name", ["v.mp4", "v.mkv", "a.flac"])
def test_audio_reader_notes_truncation_as_decode_does(tmp_path, name):
    # decode()'s rule and message, for the audio: mp4 and flac declare the audio stream's own
    # duration; mkv only the container's, so there the video's packets count as reached.
    if name.endswith(".flac"):
        whole = write_audio(tmp_path / name, duration=3.0)
    else:  # mp4: the index first, or nothing opens once the end is cut off
        whole = write_video(tmp_path / name, duration=3.0, pattern="index_noise", faststart=name == "v.mp4")
    cut = truncate_file(whole, tmp_path / f"cut_{name}", fraction=0.5)
    with AudioReader(cut) as reader:
        n = len(np.concatenate(list(reader.blocks())))
        warnings = reader.warnings
    assert n < 2 * SR
    truncated = r"decoded (\d\.\d\d) s of the 3\.\d\d s the header declares; the file may be truncated"
    (said,) = [float(m[1]) for w in warnings if (m := re.fullmatch(truncated, w))]
    assert said >= round(n / SR, 2)  # the audio, or further where the video's packets reach (mkv)
    assert any(re.fullmatch(truncated, w) for w in decode(cut).info.warnings)
    with AudioReader(whole) as reader:
        list(reader.blocks())
        assert reader.warnings == ()


@needs("libx264", "aac")
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_reader_does_not_take_a_longer_video_for_truncation(tmp_path, suffix):
    # 1 s of audio, frames up to 3 s: the header's ~3 s is the video's (mkv declares no stream durations).
    path = write_video(tmp_path / f"v{suffix}", duration=1.0, frame_times=[0.0, 1.0, 2.0, 3.0])
    with AudioReader(path) as reader:
        n = len(np.concatenate(list(reader.blocks())))
        assert reader.warnings == ()
    assert n == pytest.approx(SR, abs=1024)  # mkv keeps AAC's last partial frame


@needs("libx264", "aac")
def test_corrupt_middle_is_skipped_and_reported(tmp_path):
    path = write_video(tmp_path / "bad.mp4", duration=3.0, pattern="index_noise")
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 3000] = np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    clip = decode(path)
    assert len(clip.frames) == 3  # the damage is between instants; all three are still there
    assert len(clip.audio) == 3 * SR  # lost audio packets are replaced by silence, in place
    assert any("skipped" in w for w in clip.info.warnings)


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"fps": float("nan")}, {"offset": -1.0},
                                    {"sample_rate": 0}])
def test_bad_parameters(tmp_path, kwargs):
    with pytest.raises(UsageError, match="fps|offset|sample_rate"):
        decode(tmp_path / "whatever.mp4", **kwargs)


def _wav_with(tmp_path, values: dict[int, float], *, rate: int = 16000) -> Path:
    """A 1-s float WAV tone with the given sample values planted (index -> value)."""
    import soundfile as sf

    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    for i, v in values.items():
        x[i] = v
    path = tmp_path / f"bad{rate}.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("rate", [16000, 44100])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_repaired_with_a_warning(tmp_path, value, rate):
    """NaN used to reach the model (every score null, counted a success); ±Inf was clipped silently."""
    from avscene.io.audio_stream import AudioReader
    from avscene.io.decode import decode

    path = _wav_with(tmp_path, {100: value, 5000: value}, rate=rate)
    clip = decode(path)
    assert np.isfinite(clip.audio).all()
    assert any("NaN or infinite" in w for w in clip.info.warnings), clip.info.warnings
    reader = AudioReader(path)
    blocks = list(reader.blocks())
    assert all(np.isfinite(b).all() for b in blocks)
    assert any("NaN or infinite" in w for w in reader.warnings)


def test_non_finite_audio_is_classified_and_separated_with_a_warning(tmp_path, tiny_model_dir, capsys):
    from avscene.cli.app import main

    path = _wav_with(tmp_path, {100: np.nan, 200: np.inf})
    code = main(["classify", str(path), "-m", str(tiny_model_dir), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rec = json.loads(out)[0]
    assert all(isinstance(x["score"], float) for x in rec["labels"])  # no null score
    assert any("NaN or infinite" in w for w in rec["warnings"])
    code = main(["separate", str(path), "-m", str(tiny_model_dir), "--label", "drum", "--components", "4",
                 "-o", str(tmp_path / "s.wav"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert any("NaN or infinite" in w for w in json.loads(out)[0]["warnings"])
