"""The containers and codecs avscene decodes: the ones videos and recordings really come in.

FFmpeg probes a file by its content and will call almost anything *something*: random bytes
pass as raw H.263, EA cdata or a lyrics file often enough that a rule on what decodes
afterwards always misses the next case. So the decode path (:func:`avscene.io.chunks._open`
and ``_pick``) checks the probed demuxer and each stream's codec against these lists before
any packet is decoded, and refuses the rest with one line. This also keeps FFmpeg's rarely
used demuxers and decoders, where most of its security fixes land, away from users' inputs.
``any_format=True`` (``--any-format``) lifts the check. No torch here.
"""

from __future__ import annotations

# FFmpeg demuxer names (``av.container.InputContainer.format.name`` is a comma list of them,
# e.g. "mov,mp4,m4a,3gp,3g2,mj2"; a file is accepted when one of its names is listed).
CONTAINERS = frozenset({
    "mov", "mp4", "m4a", "3gp", "3g2",  # MP4 / MOV / M4A / 3GP (phones, cameras, the web)
    "matroska", "webm",  # MKV / WebM
    "avi",  # AVI (older cameras, dashcams)
    "mpegts", "mpeg",  # MPEG-TS (.ts, .m2ts camcorders, broadcast), MPEG-PS (.mpg, .vob)
    "flv",  # Flash video
    "asf",  # WMV / WMA
    "ogg",  # Ogg (Vorbis, Opus, Theora, FLAC)
    "wav", "w64", "aiff",  # PCM recordings
    "mp3", "aac", "flac",  # audio files (.mp3, ADTS .aac, .flac)
})

# Decoder names (``stream.codec_context.name``) per stream type.
VIDEO_CODECS = frozenset({
    "h264", "hevc", "av1", "vp8", "vp9", "mpeg4", "msmpeg4v1", "msmpeg4v2", "msmpeg4",
    "mpeg1video", "mpeg2video", "mjpeg", "theora", "h263", "h263p", "flv", "wmv1", "wmv2", "wmv3", "vc1",
    "prores", "dvvideo", "rawvideo", "ffv1",  # (FFV1: lossless archival video, in Matroska)
    "libdav1d", "libaom-av1", "libvpx", "libvpx-vp9",  # external decoders of the codecs above
})
AUDIO_CODECS = frozenset({
    "aac", "aac_latm", "mp3", "mp3float", "mp2", "mp2float", "mp1", "mp1float", "opus", "vorbis",
    "flac", "alac", "ac3", "eac3", "dca", "wmav1", "wmav2", "wmapro", "amrnb", "amrwb",
    "adpcm_ima_wav", "adpcm_ms",  # WAV/AVI from voice recorders and dashcams
    "libopus", "libvorbis", "libopencore_amrnb", "libopencore_amrwb",  # external decoders
})
AUDIO_CODEC_PREFIXES = ("pcm_",)  # pcm_s16le, pcm_f32le, pcm_u8, ... (WAV, AIFF, MOV)

ANY_FORMAT_HINT = "--any-format (any_format=True) decodes it anyway"


def container_refusal(format_name: str) -> str | None:
    """Why a probed demuxer is refused ("unsupported container 'x'"), None if it is accepted."""
    if any(n in CONTAINERS for n in format_name.split(",")):
        return None
    return (f"unsupported container '{format_name}': not a format of videos or recordings "
            f"(MP4/MOV, MKV/WebM, AVI, MPEG-TS, WAV, MP3, ...); {ANY_FORMAT_HINT}")


def codec_allowed(kind: str, codec_name: str | None) -> bool:
    """Whether a ``kind`` ("video" / "audio") stream of decoder ``codec_name`` is decoded."""
    if codec_name is None:
        return False
    if kind == "video":
        return codec_name in VIDEO_CODECS
    return codec_name in AUDIO_CODECS or codec_name.startswith(AUDIO_CODEC_PREFIXES)


def codec_refusal(codecs: list[str]) -> str:
    """The message for a file whose every stream has a refused codec."""
    names = ", ".join(f"'{c}'" for c in codecs)
    return f"unsupported codec {names}: not one videos or recordings use; {ANY_FORMAT_HINT}"
