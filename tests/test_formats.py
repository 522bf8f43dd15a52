"""The container/codec allowlist of the decode path (:mod:`avscene.io.formats`).

Random bytes are refused, whatever FFmpeg probes them as; every container and codec of the
media corpus (what users' videos and recordings come in) is still decoded. The random files
are decoded in one child process (this file run as a script), so that a crash in native code
fails the test with the case that caused it instead of killing the test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RANDOM_CASES = int(os.environ.get("AVSCENE_RANDOM_FILES", "3000"))
RANDOM_SEED = 7
SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".wav", ".mp3", ".m4a", ".flac", ".ogg")
SIZES = (512, 2048, 4096, 16384, 65536)  # bytes
CHILD_LIMIT_S = 600.0  # ~3 ms a case; only a hang gets near it


def random_file(folder: Path, case: int) -> Path:
    """Case ``case``: seeded random bytes, the size and suffix cycling through SIZES and SUFFIXES."""
    rng = np.random.default_rng([RANDOM_SEED, case])
    size = SIZES[(case // len(SUFFIXES)) % len(SIZES)]
    path = folder / f"random{case}{SUFFIXES[case % len(SUFFIXES)]}"
    path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


# ---- the child: decodes the random files ------------------------------------------------------


def child(workdir: str, count: int) -> None:
    """Decode cases 0 .. count - 1; one JSON line per case in ``workdir/log.jsonl``."""
    import av

    from avscene.errors import DecodeError
    from avscene.io.decode import decode

    av.logging.set_level(av.logging.PANIC)
    work = Path(workdir)
    with open(work / "log.jsonl", "a", buffering=1) as log:
        for case in range(count):
            path = random_file(work, case)
            try:
                clip = decode(path)
                outcome = f"accepted: {clip.info.duration:.3f} s decoded"
            except DecodeError as e:
                outcome = f"refused: {e}"
            except Exception as e:  # noqa: BLE001 - the finding: anything else escaped the library
                outcome = f"crash {type(e).__name__}: {e}"
            log.write(json.dumps({"case": case, "outcome": outcome}) + "\n")
            path.unlink()


def test_random_files_are_refused(tmp_path):
    cmd = [sys.executable, "-X", "faulthandler", __file__, "--child", str(tmp_path), str(RANDOM_CASES)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_LIMIT_S,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert proc.returncode == 0, f"the child died in case {rows[-1]['case'] + 1 if rows else 0}: {proc.stderr[-2000:]}"
    assert len(rows) == RANDOM_CASES
    bad = [f"case {r['case']}: {r['outcome']}" for r in rows if not r["outcome"].startswith("refused: ")]
    assert not bad, "\n".join(bad)
    # One line each, naming the file; and the allowlist did meet probed formats (not only open failures).
    assert all("\n" not in r["outcome"] and "random" in r["outcome"] for r in rows)
    assert any("unsupported container" in r["outcome"] for r in rows)


# ---- the media corpus: what users really have -------------------------------------------------

# (file name, video encoder, audio encoder, write_video arguments); audio only when video is None.
CORPUS = [
    ("h264-aac.mp4", "libx264", "aac", {}),
    ("hevc-aac.mp4", "libx265", "aac", {}),
    ("av1-opus.mp4", "libsvtav1", "libopus", {"audio_rate": 48000}),
    ("h264-pcm.mov", "libx264", "pcm_s16le", {}),
    ("mjpeg-pcm.mov", "mjpeg", "pcm_s16le", {}),
    ("h263-amr.3gp", "h263", "libopencore_amrnb", {"size": (128, 96), "audio_rate": 8000}),
    ("h264-aac.mkv", "libx264", "aac", {}),
    ("hevc-flac.mkv", "libx265", "flac", {}),
    ("h264-ac3.mkv", "libx264", "ac3", {"audio_rate": 48000}),
    ("vp9-opus.webm", "libvpx-vp9", "libopus", {"audio_rate": 48000}),
    ("vp8-opus.webm", "libvpx", "libopus", {"audio_rate": 48000}),
    ("mpeg4-mp3.avi", "mpeg4", "libmp3lame", {}),
    ("mjpeg-pcm.avi", "mjpeg", "pcm_s16le", {}),
    ("h264-aac.ts", "libx264", "aac", {}),
    ("mpeg2-mp2.ts", "mpeg2video", "mp2", {}),
    ("mpeg1-mp2.mpg", "mpeg1video", "mp2", {"fps": 25}),
    ("flv-mp3.flv", "flv", "libmp3lame", {"audio_rate": 22050}),
    ("wmv2-mp3.wmv", "wmv2", "libmp3lame", {}),
    ("pcm.wav", None, "pcm_s16le", {}),
    ("float.wav", None, "pcm_f32le", {}),
    ("pcm.aiff", None, "pcm_s16be", {}),
    ("lame.mp3", None, "libmp3lame", {}),
    ("adts.aac", None, "aac", {}),
    ("lossless.flac", None, "flac", {}),
    ("aac.m4a", None, "aac", {}),
    ("alac.m4a", None, "alac", {}),
    ("opus.ogg", None, "libopus", {}),
]


@pytest.mark.parametrize("name, video, audio, extra", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_is_accepted(tmp_path, name, video, audio, extra):
    from avscene.io.audio_stream import AudioReader
    from avscene.io.decode import decode, probe
    from avscene.testing.media import has_encoders, write_audio, write_video

    if not has_encoders(video, audio):
        pytest.skip(f"this PyAV has no {video} / {audio} encoder")
    path = tmp_path / name
    if video is None:
        write_audio(path, duration=1.0, codec=audio)
    else:
        write_video(path, duration=1.0, video_codec=video, audio_codec=audio, **{"size": (64, 48), **extra})
    clip = decode(path)
    assert clip.info.has_audio and clip.audio is not None and 0.9 < len(clip.audio) / 16000 < 1.2
    assert (clip.frames is not None and len(clip.frames) >= 1) == (video is not None)
    assert probe(path).has_audio
    with AudioReader(path) as reader:  # separate's reader: the same check
        assert sum(len(b) for b in reader.blocks()) == len(clip.audio)


# ---- refusal and opt-out ----------------------------------------------------------------------


def _refused_case(tmp_path: Path, container: str) -> Path:
    """The first random case that FFmpeg probes as ``container``."""
    import av

    for case in range(RANDOM_CASES):
        path = random_file(tmp_path, case)
        try:
            with av.open(str(path)) as c:
                if c.format.name == container:
                    return path
        except (av.error.FFmpegError, ValueError):
            pass
        path.unlink()
    pytest.fail(f"no random case is probed as {container}")


def test_refused_container_names_it_and_any_format_lifts_it(tmp_path):
    from avscene.errors import DecodeError
    from avscene.io.decode import decode, probe

    path = _refused_case(tmp_path, "h263")  # raw H.263 elementary stream: not a file format
    with pytest.raises(DecodeError, match=r"random\d+\.\w+: unsupported container 'h263'.*--any-format"):
        decode(path)
    with pytest.raises(DecodeError, match="unsupported container 'h263'"):
        probe(path)
    info = probe(path, any_format=True)  # the opt-out reaches FFmpeg's own probe
    assert info.has_video


def test_refused_codec(tmp_path):
    """An accepted container holding only a codec outside the list is refused, naming the codec."""
    import av

    from avscene.errors import DecodeError
    from avscene.io.audio_stream import AudioReader
    from avscene.io.decode import decode
    from avscene.testing.media import has_encoders, write_audio

    if not has_encoders("adpcm_ima_qt"):
        pytest.skip("no adpcm_ima_qt encoder")
    path = write_audio(tmp_path / "qt-adpcm.mov", duration=1.0, codec="adpcm_ima_qt")
    with av.open(str(path)) as c:
        assert c.streams.audio[0].codec_context.name == "adpcm_ima_qt"
    with pytest.raises(DecodeError, match=r"qt-adpcm\.mov: unsupported codec 'adpcm_ima_qt'"):
        decode(path)
    with pytest.raises(DecodeError, match="unsupported codec 'adpcm_ima_qt'"):
        AudioReader(path)
    assert len(decode(path, any_format=True).audio) == 16000


def test_cli_refuses_with_one_line_and_any_format_opt_out(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from avscene.cli.app import app

    path = _refused_case(tmp_path, "h263")
    runner = CliRunner()
    r = runner.invoke(app, ["classify", str(path), "-m", str(tiny_model_dir), "--json"])
    assert r.exit_code == 1
    err = [line for line in r.stderr.splitlines() if str(path) in line]
    assert len(err) == 1 and "unsupported container 'h263'" in err[0], r.stderr
    r = runner.invoke(app, ["classify", str(path), "-m", str(tiny_model_dir), "--json", "--any-format"])
    assert "unsupported container" not in r.stderr
    # lifted, the probe's verdict stands: random bytes that FFmpeg calls raw H.263 decode to nothing
    # usable, which is a failed input (exit 1, one line naming it), not a usage error or a crash
    assert r.exit_code == 1, r.stderr
    assert len([line for line in r.stderr.splitlines() if str(path) in line]) == 1, r.stderr


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    child(sys.argv[2], int(sys.argv[3]))
