"""Write small synthetic media files with PyAV, with content a test can recognise.

Every video frame ``k`` is a solid colour that encodes ``k`` (:func:`index_colour`),
so a test can tell which source frame a decoder returned (:func:`nearest_index`)
even after lossy compression. Audio is a sine tone of known frequency and
amplitude, so a test can check the decoder's sample scale and resampling.

Damaged files for robustness tests are made from valid ones:
:func:`truncate_file`, :func:`overwrite_bytes`, :func:`corrupt_video_packets` (a
container that parses but whose video packets decode to nothing) and
:func:`mutate_bytes` (seeded random mutations for fuzzing).

Example::

    from avscene.testing.media import write_video, has_encoders

    path = write_video(tmp_path / "clip.mp4", duration=2.0, fps=8)
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

COLOUR_LEVELS = (40, 90, 140, 190, 240)  # 50 apart: far above codec error on flat frames
N_INDEX_COLOURS = len(COLOUR_LEVELS) ** 3  # 125 distinguishable frame indices
VFR_TIME_BASE = Fraction(1, 1000)  # ms timestamps for variable-frame-rate clips

# Container suffix -> default audio codec of write_audio.
AUDIO_CODEC_BY_SUFFIX = {
    ".wav": "pcm_s16le",
    ".flac": "flac",
    ".mp3": "libmp3lame",
    ".m4a": "aac",
    ".ogg": "libopus",
    ".opus": "libopus",
}
# Encoder -> pixel format it accepts for our frames (write_video's pix_fmt overrides it:
# 4:2:0 formats need even sizes, so odd sizes such as 17x13 take e.g. "yuv444p").
PIX_FMT = {"mjpeg": "yuvj420p"}
# Channel count -> FFmpeg layout name; other counts use FFmpeg's generic "<n>c".
CHANNEL_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
# mutate_bytes: the kinds of mutation, and the largest run a single mutation touches.
MUTATIONS = ("flip", "overwrite", "truncate", "duplicate", "delete")
MAX_MUTATION_RUN = 4096  # bytes: big enough to wipe a few packets of a tiny clip
VIDEO_OPTIONS = {
    "libx264": {"preset": "veryfast", "crf": "18"},  # veryfast keeps B-frames (reordering)
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
    "mpeg4": {"qscale": "2"},
    "mjpeg": {"qscale": "2"},
}


def has_encoders(*names: str | None) -> bool:
    """Whether this PyAV build can encode with every named codec (None is ignored)."""
    for name in names:
        if name is None:
            continue
        try:
            av.Codec(name, "w")
        except (av.error.FFmpegError, ValueError):
            return False
    return True


def index_colour(k: int) -> tuple[int, int, int]:
    """The solid RGB colour of frame ``k`` (a base-5 code of ``k`` over the 3 channels)."""
    n = len(COLOUR_LEVELS)
    k = k % N_INDEX_COLOURS
    return (COLOUR_LEVELS[k % n], COLOUR_LEVELS[(k // n) % n], COLOUR_LEVELS[(k // n**2) % n])


def nearest_index(frame: np.ndarray, n_frames: int) -> int:
    """The ``k < n_frames`` whose :func:`index_colour` is nearest the frame's mean colour.

    Args:
        frame: (H, W, 3) uint8 RGB, written with ``pattern="index"`` and no box.
        n_frames: how many frames the clip has.
    """
    mean = frame.reshape(-1, 3).astype(np.float64).mean(axis=0)  # (3,)
    colours = np.array([index_colour(k) for k in range(n_frames)], dtype=np.float64)  # (K, 3)
    return int(np.argmin(((colours - mean) ** 2).sum(axis=1)))


def tone(
    duration: float,
    *,
    sample_rate: int,
    channels: int = 1,
    freq: float = 440.0,
    amplitude: float | Sequence[float] = 0.5,
) -> np.ndarray:
    """A sine tone, (channels, N) float32 with N = round(duration * sample_rate).

    ``amplitude`` is one value for every channel or one per channel.
    """
    n = round(duration * sample_rate)
    amps = np.broadcast_to(np.asarray(amplitude, dtype=np.float64), (channels,))
    t = np.arange(n) / sample_rate
    wave = np.sin(2 * np.pi * freq * t)  # (N,)
    return (amps[:, None] * wave[None, :]).astype(np.float32)  # (C, N)


def _frame_image(
    k: int, size: tuple[int, int], pattern: str, rng: np.random.Generator
) -> np.ndarray:
    w, h = size
    if pattern == "index":
        return np.broadcast_to(np.array(index_colour(k), dtype=np.uint8), (h, w, 3)).copy()
    if pattern == "noise":
        return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    if pattern == "index_noise":  # incompressible right half: byte offsets track time
        img = np.broadcast_to(np.array(index_colour(k), dtype=np.uint8), (h, w, 3)).copy()
        img[:, w // 2 :] = rng.integers(0, 256, size=(h, w - w // 2, 3), dtype=np.uint8)
        return img
    raise ValueError(f"unknown pattern {pattern!r}: use 'index', 'index_noise' or 'noise'")


def _add_video_stream(
    container: av.container.OutputContainer,
    codec: str,
    *,
    fps: float,
    size: tuple[int, int],
    vfr: bool,
    rotation: int,
    pix_fmt: str | None = None,
) -> av.video.stream.VideoStream:
    rate = Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate, options=VIDEO_OPTIONS.get(codec, {}))
    stream.width, stream.height = size
    stream.pix_fmt = pix_fmt or PIX_FMT.get(codec, "yuv420p")
    if vfr:
        stream.codec_context.time_base = VFR_TIME_BASE
        stream.time_base = VFR_TIME_BASE
    if rotation:
        stream.set_display_rotation(rotation)
    return stream


def _encode_video(
    container: av.container.OutputContainer,
    stream: av.video.stream.VideoStream,
    times: Sequence[float] | None,
    n_frames: int,
    fps: float,
    draw: dict,
) -> None:
    rng = np.random.default_rng(0)
    tb = VFR_TIME_BASE if times is not None else Fraction(1) / Fraction(fps).limit_denominator(1001)
    for k in range(n_frames):
        img = _frame_image(k, draw["size"], draw["pattern"], rng)  # (H, W, 3)
        if draw["box"] is not None:
            x0, y0, x1, y1 = draw["box"]
            img[y0:y1, x0:x1] = draw["box_color"]
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = k if times is None else round(times[k] / VFR_TIME_BASE)
        frame.time_base = tb
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _encode_audio(
    container: av.container.OutputContainer,
    codec: str,
    samples: np.ndarray,
    rate: int,
    start: float = 0.0,
) -> None:
    """Encode (C, N) float32 samples from ``start`` s; the resampler converts the format."""
    channels = samples.shape[0]
    layout = CHANNEL_LAYOUTS.get(channels, f"{channels}c")
    stream = container.add_stream(codec, rate=rate, layout=layout)
    cc = stream.codec_context
    frame_size = cc.frame_size or 1024  # PCM/FLAC take any size; 1024 keeps frames small
    resampler = av.AudioResampler(format=cc.format, layout=layout, rate=rate, frame_size=frame_size)
    # Packed input (one plane, channels interleaved): PyAV mishandles planar frames of more
    # than 8 channels (AV_NUM_DATA_POINTERS), and the resampler converts either way.
    packed = np.ascontiguousarray(samples.T).reshape(1, -1)  # (1, N * C)
    frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
    frame.sample_rate = rate
    frame.pts = round(start * rate)
    frame.time_base = Fraction(1, rate)
    for out in [*resampler.resample(frame), *resampler.resample(None)]:
        container.mux(stream.encode(out))
    container.mux(stream.encode(None))


def write_video(
    path: str | Path,
    *,
    duration: float = 2.0,
    fps: float = 8,
    size: tuple[int, int] = (64, 48),
    video_codec: str | None = "libx264",
    audio_codec: str | None = "aac",
    audio_rate: int = 16000,
    channels: int = 1,
    pattern: str = "index",
    box: tuple[int, int, int, int] | None = None,
    box_color: tuple[int, int, int] = (255, 255, 255),
    frame_times: Sequence[float] | None = None,
    rotation: int = 0,
    freq: float = 440.0,
    amplitude: float | Sequence[float] = 0.5,
    faststart: bool = False,
    audio_start: float = 0.0,
    pix_fmt: str | None = None,
) -> Path:
    """Write a synthetic clip whose container is chosen by the file suffix.

    Args:
        path: output file (.mp4, .mkv, .webm, .avi, .mov, ...).
        duration: seconds of audio; with constant ``fps`` also ``round(duration * fps)`` frames.
        fps: constant frame rate (ignored when ``frame_times`` is given).
        size: (width, height) in pixels; even numbers for 4:2:0 codecs.
        video_codec: 'libx264', 'mpeg4', 'libvpx-vp9', 'mjpeg', ... or None for audio only.
        audio_codec: 'aac', 'libopus', 'pcm_s16le', 'flac', ... or None for video only.
        audio_rate: audio sample rate in Hz.
        channels: audio channels; every channel carries the tone.
        pattern: 'index' (frame ``k`` is the solid :func:`index_colour` ``(k)``),
            'index_noise' (left half 'index', right half seeded noise, so that the file's
            bytes grow with time: for truncation tests) or 'noise' (seeded random pixels).
        box: (x0, y0, x1, y1) pixel rectangle (x1/y1 exclusive) painted in every frame.
        box_color: RGB colour of ``box``.
        frame_times: presentation times in seconds for a variable-frame-rate clip
            (ms time base); frame ``k`` is shown from ``frame_times[k]``.
        rotation: display-matrix rotation in degrees counter-clockwise (mp4/mov only),
            as PyAV's ``VideoFrame.rotation`` reads it back.
        freq: tone frequency in Hz.
        amplitude: tone amplitude in [0, 1], one value or one per channel.
        faststart: mp4/mov only: put the index ('moov') before the media data, so
            that a truncated file still opens.
        audio_start: presentation time of the first audio sample in seconds (the
            video starts at 0): a late audio track.
        pix_fmt: encoder pixel format; None picks :data:`PIX_FMT`'s (``yuv420p`` by
            default). Odd sizes need a format without chroma subsampling, e.g.
            ``"yuv444p"`` with libx264.

    Returns:
        The path written.
    """
    path = Path(path)
    if video_codec is None and audio_codec is None:
        raise ValueError("write_video needs a video_codec, an audio_codec or both")
    n_frames = len(frame_times) if frame_times is not None else max(1, round(duration * fps))
    draw = {"size": size, "pattern": pattern, "box": box, "box_color": box_color}
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        vstream = None
        if video_codec is not None:
            vstream = _add_video_stream(
                container, video_codec, fps=fps, size=size, vfr=frame_times is not None,
                rotation=rotation, pix_fmt=pix_fmt,
            )
        if audio_codec is not None:
            samples = tone(duration, sample_rate=audio_rate, channels=channels, freq=freq,
                           amplitude=amplitude)
            _encode_audio(container, audio_codec, samples, audio_rate, audio_start)
        if vstream is not None:
            _encode_video(container, vstream, frame_times, n_frames, fps, draw)
    return path


def write_audio(
    path: str | Path,
    *,
    duration: float = 2.0,
    sample_rate: int = 16000,
    channels: int = 1,
    codec: str | None = None,
    freq: float = 440.0,
    amplitude: float | Sequence[float] = 0.5,
) -> Path:
    """Write an audio-only file holding a sine tone.

    Args:
        path: output file; the suffix picks the container (.wav, .flac, .mp3, .m4a, .ogg).
        duration: seconds.
        sample_rate: Hz.
        channels: number of channels.
        codec: encoder name; None picks one from the suffix (:data:`AUDIO_CODEC_BY_SUFFIX`).
            Use e.g. 'pcm_u8', 'pcm_s32le' or 'pcm_f32le' in a .wav to test sample formats.
        freq: tone frequency in Hz.
        amplitude: amplitude in [0, 1], one value or one per channel.

    Returns:
        The path written.
    """
    path = Path(path)
    codec = codec or AUDIO_CODEC_BY_SUFFIX.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"no default audio codec for {path.suffix!r}: pass codec=")
    samples = tone(duration, sample_rate=sample_rate, channels=channels, freq=freq,
                   amplitude=amplitude)
    with av.open(str(path), "w") as container:
        _encode_audio(container, codec, samples, sample_rate)
    return path


# --- damaged copies of valid files --------------------------------------------------------


def truncate_file(src: str | Path, dst: str | Path, *, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst`` (a download cut short).

    Returns:
        ``dst``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def overwrite_bytes(
    src: str | Path, dst: str | Path, *, start: float = 0.5, length: int = 256, seed: int = 0
) -> Path:
    """Copy ``src`` to ``dst`` with ``length`` seeded random bytes written over it at ``start``.

    Args:
        src: a valid file.
        dst: where the damaged copy goes.
        start: position of the damage as a fraction of the file size (0.5: the middle).
        length: number of bytes overwritten (clipped to the end of the file).
        seed: seed of the random bytes.

    Returns:
        ``dst``.
    """
    data = bytearray(Path(src).read_bytes())
    at = int(len(data) * start)
    n = max(0, min(length, len(data) - at))
    data[at : at + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst


def corrupt_video_packets(src: str | Path, dst: str | Path, *, seed: int = 0) -> Path:
    """Remux ``src`` into ``dst`` with every video packet's payload replaced by random bytes.

    The container, its index and the audio stay valid, so the file opens and its audio
    decodes, but no video frame does (the decoder rejects every packet).

    Returns:
        ``dst``.
    """
    rng = np.random.default_rng(seed)
    dst = Path(dst)
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=inp.format.name.split(",")[0]) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux(*[inp.streams[i] for i in streams]):
            if packet.size == 0:  # the flush packet demux() ends each stream with
                continue
            target = streams[packet.stream.index]
            if packet.stream.type == "video":
                junk = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                junk.pts, junk.dts, junk.time_base = packet.pts, packet.dts, packet.time_base
                junk.is_keyframe = packet.is_keyframe
                packet = junk
            packet.stream = target
            out.mux(packet)
    return dst


def mutate_bytes(data: bytes, rng: np.random.Generator, *, n_ops: int = 1) -> tuple[bytes, list[str]]:
    """Apply ``n_ops`` seeded random mutations to ``data`` (a fuzzer's step).

    Each mutation is one of :data:`MUTATIONS`: flip one bit, overwrite a run with random
    bytes, truncate, duplicate a chunk in place, or delete a run; runs are at most
    :data:`MAX_MUTATION_RUN` bytes.

    Returns:
        The mutated bytes and a description of each mutation (to reproduce a failure).
    """
    buf = bytearray(data)
    done: list[str] = []
    for _ in range(n_ops):
        if len(buf) < 2:
            break
        kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        at = int(rng.integers(len(buf)))
        n = int(rng.integers(1, min(MAX_MUTATION_RUN, len(buf) - at) + 1))
        if kind == "flip":
            buf[at] ^= 1 << int(rng.integers(8))
            done.append(f"flip bit of byte {at}")
        elif kind == "overwrite":
            buf[at : at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            done.append(f"overwrite {n} bytes at {at}")
        elif kind == "truncate":
            del buf[max(at, 1) :]
            done.append(f"truncate at {max(at, 1)}")
        elif kind == "duplicate":
            buf[at:at] = buf[at : at + n]
            done.append(f"duplicate {n} bytes at {at}")
        else:
            del buf[at : at + n]
            done.append(f"delete {n} bytes at {at}")
    return bytes(buf), done
