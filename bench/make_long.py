"""Write a long synthetic video for memory benchmarks (not a test; media is never committed).

    python bench/make_long.py long/long_60min.mp4 --minutes 60
    python bench/make_long.py long/long_10min.mp4 --minutes 10
    python bench/make_long.py long/long_60min.m4a --minutes 60 --fps 0   # the audio alone

H.264 (x264 ultrafast, yuv420p) at a low frame rate (default 2 fps: 7,200 frames an hour,
so an hour encodes in a few minutes on 2 cores) at 1280x720, with AAC audio (default
44.1 kHz stereo, what long real-world videos carry; the decoder resamples it to 16 kHz
mono). The picture is a colour gradient with three shapes moving across it and a small
patch of noise; the audio is a tone whose pitch changes every 10 s over a little noise,
with a louder noise burst every 30 s. Streams are muxed in time order, one second at a
time, as a camera or an editor would write them.
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

WIDTH, HEIGHT = 1280, 720
X264_OPTIONS = {"preset": "ultrafast", "crf": "30"}  # fast; the content is simple
NOISE_PATCH = 64  # px: side of the noise square (keeps every frame different, but cheap)
TONE_STEP_S = 10  # s between pitch changes
BURST_EVERY_S = 30  # s between noise bursts
AUDIO_AMPLITUDE = 0.3
AUDIO_NOISE = 0.02
SHAPES = (  # (colour RGB, radius px, horizontal period s, vertical period s)
    ((230, 40, 40), 90, 37.0, 23.0),
    ((40, 200, 60), 60, 53.0, 29.0),
    ((250, 220, 30), 120, 71.0, 41.0),
)


def _background() -> np.ndarray:
    """(H, W, 3) uint8 RGB: a diagonal colour gradient."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    r = 40 + 120 * x / WIDTH
    g = 60 + 100 * y / HEIGHT
    b = 160 - 80 * (x + y) / (WIDTH + HEIGHT)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def _frame(base: np.ndarray, t: float, rng: np.random.Generator) -> av.VideoFrame:
    """The picture at ``t`` seconds as a BT.601 yuv420p frame."""
    img = base.copy()
    for colour, radius, px, py in SHAPES:
        cx = int((0.5 + 0.4 * np.sin(2 * np.pi * t / px)) * WIDTH)
        cy = int((0.5 + 0.35 * np.sin(2 * np.pi * t / py)) * HEIGHT)
        cv2.circle(img, (cx, cy), radius, colour, thickness=-1)
    img[:NOISE_PATCH, -NOISE_PATCH:] = rng.integers(0, 256, (NOISE_PATCH, NOISE_PATCH, 3), dtype=np.uint8)
    i420 = cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420)  # (3H/2, W): ~15x faster than swscale
    return av.VideoFrame.from_ndarray(i420, format="yuv420p")


def _audio_second(second: int, rate: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """(channels, rate) float32 samples of second ``second``."""
    t = second + np.arange(rate) / rate
    freq = 220.0 * 2 ** ((second // TONE_STEP_S) % 12 / 12)  # a semitone up every 10 s, per octave
    x = AUDIO_AMPLITUDE * np.sin(2 * np.pi * freq * t) + AUDIO_NOISE * rng.standard_normal(rate)
    if second % BURST_EVERY_S == BURST_EVERY_S - 1:
        x += 0.3 * rng.standard_normal(rate)
    x = np.clip(x, -1, 1).astype(np.float32)
    return np.repeat(x[None], channels, axis=0)  # (C, rate)


def write_long(path: Path, *, seconds: int, fps: int, audio_rate: int, channels: int) -> None:
    """Write ``seconds`` of video at ``fps`` with AAC audio to ``path`` (``fps`` 0: the audio alone,
    e.g. an .m4a for ``separate``, which reads only the audio)."""
    rng = np.random.default_rng(0)
    base = _background()
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options=dict(X264_OPTIONS)) if fps else None
        if video is not None:
            video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            video.codec_context.time_base = Fraction(1, fps)
        audio = out.add_stream("aac", rate=audio_rate, layout="stereo" if channels == 2 else "mono")
        resampler = av.AudioResampler(format="fltp", layout=audio.layout, rate=audio_rate,
                                      frame_size=audio.codec_context.frame_size or 1024)
        for s in range(seconds):
            block = av.AudioFrame.from_ndarray(_audio_second(s, audio_rate, channels, rng), format="fltp",
                                               layout=audio.layout.name)
            block.sample_rate, block.pts, block.time_base = audio_rate, s * audio_rate, Fraction(1, audio_rate)
            for f in resampler.resample(block):
                out.mux(audio.encode(f))
            for k in range(fps):
                frame = _frame(base, s + k / fps, rng)
                frame.pts, frame.time_base = s * fps + k, Fraction(1, fps)
                out.mux(video.encode(frame))
            if s % 300 == 299:
                print(f"  {s + 1} s written", file=sys.stderr)
        for f in resampler.resample(None):
            out.mux(audio.encode(f))
        out.mux(audio.encode(None))
        if video is not None:
            out.mux(video.encode(None))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output .mp4 (put it outside the repository)")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--fps", type=int, default=2, help="frames per second (0: no video stream, audio only)")
    ap.add_argument("--audio-rate", type=int, default=44100)
    ap.add_argument("--channels", type=int, choices=(1, 2), default=2)
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_long(args.out, seconds=round(args.minutes * 60), fps=args.fps, audio_rate=args.audio_rate,
               channels=args.channels)
    size_mb = args.out.stat().st_size / 2**20
    print(f"{args.out}: {args.minutes:g} min, {size_mb:.0f} MB, written in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
