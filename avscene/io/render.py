"""Render a ``localize`` result over its video: boxes, labels and an audio heatmap strip.

The output is an H.264 (yuv420p) + AAC file, written frame by frame: decode →
draw → encode, never holding the whole video in memory, and atomically (an
interrupted render leaves no file). What is drawn:

* **Boxes.** For each class in ``result.visual``, the boxes of the sampled
  frame instant in effect (see ``box_hold``), drawn in the class's colour with
  its name on a plate, only where the class is reported seen at that instant,
  with opacity from the box score on one scale for every frame and class; a
  class that is not a prediction (``result.status``: seen only, ...) dashed and
  named so (:mod:`avscene.io.draw`, the rule the report's thumbnails follow too).
* **Heatmap strip.** Along the bottom, over the picture, one row per reported
  class with audio scores, bright in the class's sound events and dark elsewhere
  (one scale anchored at the event threshold, :func:`avscene.io.draw.heat_levels`;
  each window standing for its central span, as in the score TSV), the class
  names in a margin at the left, a legend row with the threshold, and a white
  playhead at the frame's time.

Timing is kept exactly: the output uses the input stream's time base and each
frame's own pts, so odd rates (30000/1001) and variable frame rates survive;
the nominal rate is the input's ``average_rate`` as a Fraction. Frame times for
the overlay are seconds from the container's start time, the clock of
:mod:`avscene.io.decode` (and so of the result's times).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from avscene.errors import DecodeError, UsageError
from avscene.io.chunks import codec_threads
from avscene.io.draw import BoxLayer, heat_strip
from avscene.io.writers import atomic_write
from avscene.results import LocalizeResult

X264_OPTIONS = {"preset": "veryfast", "crf": "20"}  # fast, visually clean overlays
AAC_MAX_CHANNELS = 8  # ffmpeg's native AAC encoder handles layouts up to 7.1
COLORSPACE_BT601 = 6  # AVCOL_SPC_SMPTE170M: the matrix of cv2.COLOR_RGB2YUV_I420
COLOR_RANGE_LIMITED = 1  # AVCOL_RANGE_MPEG: Y in [16, 235]
BOX_HOLD_MODES = ("hold", "nearest")
CONTAINER_BY_SUFFIX = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


@dataclass(frozen=True)
class RenderReport:
    """What :func:`render_overlay` wrote."""

    path: Path  # the output file
    frames: int  # video frames written
    duration: float  # seconds from the first frame's start to the last frame's end
    has_audio: bool  # False when the input has no audio stream
    width: int  # output size in pixels (the input's, padded to even numbers)
    height: int
    padded: bool  # True when a 1-px edge column/row was added for yuv420p
    skipped_packets: int = 0  # damaged packets that could not be decoded and were left out


def render_overlay(
    src_path: str | Path,
    result: LocalizeResult,
    out_path: str | Path,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    box_hold: str = "hold",
) -> RenderReport:
    """Write ``src_path`` with ``result`` drawn over it as an H.264 + AAC video.

    The video keeps the input's resolution, time base, frame timestamps and
    ``average_rate`` (never rounded). yuv420p, the only H.264 format every
    player decodes, needs even sizes, so an odd width or height is padded by
    one pixel on the right/bottom, repeating the edge pixels (e.g. 17×13 →
    18×14; ``RenderReport.padded``; box coordinates are unaffected). A
    display-matrix rotation is applied to the pixels, so the output is upright
    and carries no rotation metadata. Damaged packets are skipped
    (``RenderReport.skipped_packets``) and a frame repeating the previous
    frame's timestamp is dropped, as ffmpeg does. The audio stream is
    decoded and re-encoded to AAC at its own sample rate and channel layout
    where AAC allows (otherwise the next higher AAC rate / a stereo downmix);
    an input without audio gives an output without audio.

    Args:
        src_path: the input video.
        result: its localize result (boxes in display pixels, times in seconds).
        out_path: the file to write (.mp4; .mov and .mkv also work).
        force: overwrite an existing ``out_path``.
        progress: called as ``progress(done, total)`` after each frame; ``total``
            is the container's frame count or an estimate from the duration.
            An exception it raises aborts the render and leaves no file.
        box_hold: which sampled frame's boxes a video frame shows. ``"hold"``:
            the most recent sampled instant at or before the frame's time (before
            the first instant, 0.5 s, the first one's boxes). ``"nearest"``: the
            nearest instant, which with 1-fps sampling at mid-segment is the
            frame of the 1-s segment the video frame lies in.

    Returns:
        A :class:`RenderReport`.

    Raises:
        UsageError: the input has no video stream, ``out_path`` is the input,
            or ``box_hold`` is unknown.
        DecodeError: the input cannot be opened or no video frame decodes.
        OutputError: ``out_path`` exists without ``force`` or cannot be written.
    """
    src, out = Path(src_path), Path(out_path)
    if box_hold not in BOX_HOLD_MODES:
        raise UsageError(f"unknown box_hold {box_hold!r}: use one of {', '.join(BOX_HOLD_MODES)}")
    if src.resolve() == out.resolve():
        raise UsageError(f"the overlay would overwrite its input {src}: choose another output path")
    rotation, (width, height) = _probe_video(src)
    fmt = CONTAINER_BY_SUFFIX.get(out.suffix.lower(), "mp4")
    with _open_input(src) as inp, atomic_write(out, force=force) as tmp:
        vin = inp.streams.video[0]
        codec_threads(vin)  # frame + slice threads, within the budget: decoding keeps up with the encoder
        ain = inp.streams.audio[0] if inp.streams.audio else None
        if ain is not None:
            codec_threads(ain)
        pad_w, pad_h = width + width % 2, height + height % 2
        duration = result.classification.duration or _stream_seconds(inp, vin)
        overlay = _Overlay(result, (pad_w, pad_h), duration=duration, box_hold=box_hold)
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        with av.open(str(tmp), "w", format=fmt, options=options) as container:
            vout = _add_video_stream(container, vin, (pad_w, pad_h))
            aout = _add_audio_stream(container, ain) if ain is not None else None
            loop = _Loop(inp, vin, ain, container, vout, aout, overlay, rotation, progress)
            frames, seconds = loop.run()
    return RenderReport(path=out, frames=frames, duration=seconds, has_audio=aout is not None,
                        width=pad_w, height=pad_h, padded=(pad_w, pad_h) != (width, height),
                        skipped_packets=loop.skipped)


# --------------------------------------------------------------------------- input / output


def _open_input(src: Path) -> av.container.InputContainer:
    try:
        return av.open(str(src))
    except (av.error.FFmpegError, OSError) as e:
        raise DecodeError(f"cannot open {src}: {e}; check that the file exists and is a video") from e


def _probe_video(src: Path) -> tuple[int, tuple[int, int]]:
    """Rotation (degrees counter-clockwise) and display size (w, h) from the first frame."""
    with _open_input(src) as inp:
        if not inp.streams.video:
            raise UsageError(f"{src} has no video stream to draw on; render overlays of videos only")
        try:
            frame = next(inp.decode(inp.streams.video[0]), None)
        except av.error.FFmpegError as e:
            raise DecodeError(f"cannot decode the video of {src}: {e}") from e
    if frame is None:
        raise DecodeError(f"{src}: its video stream has no decodable frame")
    k = round(frame.rotation / 90) % 4  # np.rot90 turns counter-clockwise, like the display matrix
    size = (frame.height, frame.width) if k % 2 else (frame.width, frame.height)
    return k, size


def _stream_seconds(inp: av.container.InputContainer, vin: av.video.stream.VideoStream) -> float:
    if vin.duration is not None and vin.time_base is not None:
        return float(vin.duration * vin.time_base)
    return (inp.duration or 0) / av.time_base


def _frame_rate(vin: av.video.stream.VideoStream) -> Fraction:
    return vin.average_rate or vin.guessed_rate or vin.base_rate or Fraction(25)


def _add_video_stream(container: av.container.OutputContainer, vin: av.video.stream.VideoStream,
                      size: tuple[int, int]) -> av.video.stream.VideoStream:
    vout = container.add_stream("libx264", rate=_frame_rate(vin), options=dict(X264_OPTIONS))
    vout.width, vout.height = size
    vout.pix_fmt = "yuv420p"
    vout.codec_context.time_base = vin.time_base  # frames keep their own pts: no rounding
    vout.time_base = vin.time_base
    codec_threads(vout)
    vout.codec_context.colorspace = COLORSPACE_BT601  # what _to_yuv420p produces
    vout.codec_context.color_range = COLOR_RANGE_LIMITED
    return vout


def _add_audio_stream(container: av.container.OutputContainer,
                      ain: av.audio.stream.AudioStream) -> av.audio.stream.AudioStream:
    """An AAC stream at the input's rate and layout where AAC allows them."""
    rates = sorted(av.Codec("aac", "w").audio_rates)
    rate = ain.codec_context.sample_rate
    if rate not in rates:
        rate = next((r for r in rates if r >= rate), rates[-1])
    layout = ain.codec_context.layout
    if not _aac_accepts(layout, rate):
        layout = av.AudioLayout("mono" if layout.nb_channels == 1 else "stereo")
    aout = container.add_stream("aac", rate=rate)
    aout.layout = layout
    codec_threads(aout)
    return aout


def _aac_accepts(layout: av.AudioLayout, rate: int) -> bool:
    if not 1 <= layout.nb_channels <= AAC_MAX_CHANNELS:
        return False
    try:
        cc = av.CodecContext.create("aac", "w")
        cc.sample_rate, cc.layout, cc.format = rate, layout, "fltp"
        cc.open()
    except (av.error.FFmpegError, ValueError):
        return False
    return True


class _Loop:
    """The streaming decode → draw → encode loop over one input."""

    def __init__(self, inp: av.container.InputContainer, vin: av.video.stream.VideoStream,
                 ain: av.audio.stream.AudioStream | None, container: av.container.OutputContainer,
                 vout: av.video.stream.VideoStream, aout: av.audio.stream.AudioStream | None,
                 overlay: _Overlay, rotation: int, progress: Callable[[int, int], None] | None):
        self.inp, self.vin, self.ain = inp, vin, ain
        self.container, self.vout, self.aout = container, vout, aout
        self.overlay, self.rotation, self.progress = overlay, rotation, progress
        self.rate = _frame_rate(vin)
        self.total = vin.frames or max(1, math.ceil(_stream_seconds(inp, vin) * self.rate))
        self.origin = (inp.start_time or 0) / av.time_base  # s: the clock's zero, as in decode.py
        self.done, self.first, self.last = 0, None, None
        self.skipped = 0  # undecodable packets

    def run(self) -> tuple[int, float]:
        streams = [self.vin] + ([self.ain] if self.ain is not None else [])
        for packet in self.inp.demux(*streams):
            for frame in self._decode(packet):
                if packet.stream is self.vin:
                    self._video(frame)
                else:
                    self.container.mux(self.aout.encode(frame))
        self.container.mux(self.vout.encode(None))
        if self.aout is not None:
            self.container.mux(self.aout.encode(None))
        if self.done == 0:
            raise DecodeError(f"{self.inp.name}: no video frame could be decoded")
        end = (self.last - self.first) * self.vin.time_base + 1 / self.rate
        return self.done, float(end)

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame | av.AudioFrame]:
        """The packet's frames; a damaged packet is skipped (as decode.py does) and counted."""
        try:
            return packet.decode()
        except (av.error.FFmpegError, ValueError):
            self.skipped += 1
            return []

    def _video(self, frame: av.VideoFrame) -> None:
        tb = self.vin.time_base
        pts = frame.pts if frame.pts is not None else round(self.done / self.rate / tb)
        if self.last is not None and pts <= self.last:
            return  # duplicate timestamp: never displayed (ffmpeg drops it too)
        if self.first is None:
            self.first = pts
        img = frame.to_ndarray(format="rgb24")  # (H, W, 3)
        if self.rotation:
            img = np.rot90(img, self.rotation)
        img = _fit(img, self.overlay.size)
        self.overlay.draw(img, float(pts * tb) - self.origin)
        out = _to_yuv420p(img)
        out.pts, out.time_base = pts, tb
        self.container.mux(self.vout.encode(out))
        self.last = pts
        self.done += 1
        if self.progress is not None:
            self.total = max(self.total, self.done)
            self.progress(self.done, self.total)


def _to_yuv420p(img: np.ndarray) -> av.VideoFrame:
    """RGB (H, W, 3), even H and W → a BT.601 limited-range yuv420p frame.

    OpenCV's SIMD conversion is ~15× faster than swscale's rgb24 path; the
    stream is tagged BT.601 (:data:`COLORSPACE_BT601`) to match.
    """
    i420 = cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420)  # (3H/2, W): Y, then U, then V planes
    frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    frame.colorspace, frame.color_range = COLORSPACE_BT601, COLOR_RANGE_LIMITED
    return frame


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) → ``size`` (w, h): pad an odd edge by repeating it, rescale a mid-stream size change."""
    w, h = size
    ph, pw = h - img.shape[0], w - img.shape[1]
    if ph == pw == 0:
        return np.ascontiguousarray(img)
    if 0 <= ph <= 1 and 0 <= pw <= 1:
        return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- drawing


class _Overlay:
    """Everything drawn on a frame, precomputed from the result; ``draw`` works in place."""

    def __init__(self, result: LocalizeResult, size: tuple[int, int], *, duration: float,
                 box_hold: str):
        self.size, self.duration = size, max(duration, 1e-9)
        self.boxes = BoxLayer(result, size, box_hold=box_hold)
        strip = heat_strip(result, self.boxes.colours, size, self.duration)
        self.strip, self.cells_x0 = strip if strip is not None else (None, 0)  # (S, W, 3), first cell column
        self.playhead_w = max(1, size[0] // 320)

    def draw(self, img: np.ndarray, t: float) -> None:
        self.boxes.draw(img, t)
        if self.strip is not None:
            h, w = img.shape[:2]
            s = self.strip.shape[0]
            img[h - s:] = self.strip
            x0, cells = self.cells_x0, w - self.cells_x0
            x = x0 + min(max(round(t / self.duration * cells), 0), cells - self.playhead_w)
            img[h - s:, x:x + self.playhead_w] = 255
