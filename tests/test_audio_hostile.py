"""Hostile or malformed soundtracks: each is a one-line AudioError naming output.soundtrack, found from the path or
the header before anything is decoded where it can be, and nothing hangs (FIFOs and devices are never opened)."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from discolib.audio import (  # noqa: E402  (after the skip: without soundfile these tests do not apply)
    MAX_AUDIO_SECONDS,
    AudioError,
    analyse_audio,
    audio_duration,
    audio_features,
    decode_audio,
)
from discolib.audio import decode as decode_mod  # noqa: E402
from discolib.errors import InputError  # noqa: E402

SETTING = "output.soundtrack"


def wav_header(data_bytes: int, *, rate: int = 8000, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header whose ``data`` chunk declares ``data_bytes`` bytes."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return b"RIFF" + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + (
        b"data" + struct.pack("<I", data_bytes))  # fmt: skip


def one_line_error(func, path, match: str, **kwargs) -> AudioError:  # type: ignore[no-untyped-def]
    with pytest.raises(AudioError) as info:
        func(path, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(f"{kwargs.get('setting', SETTING)}: "), msg
    assert match in msg, msg
    assert isinstance(info.value, InputError)
    return info.value


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any sample is decoded: the refusal must come from the path or the header."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was decoded")

    monkeypatch.setattr(decode_mod, "_read_soundfile", refuse)
    monkeypatch.setattr(decode_mod, "_read_ffmpeg", refuse)


ALL = (audio_duration, decode_audio, analyse_audio)


@pytest.mark.parametrize("func", ALL, ids=lambda f: f.__name__)
def test_ten_hour_header_is_refused_from_the_header(tmp_path: Path, func, no_decoding) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ten_hours.wav"
    path.write_bytes(wav_header(10 * 3600 * 8000 * 2) + bytes(4000))  # 10 h declared, 0.25 s present
    err = one_line_error(func, path, "10.0 hours")
    assert f"{MAX_AUDIO_SECONDS:g} s" in str(err) and str(path) in str(err)


def test_streamed_wav_without_a_size_reads_what_is_there(tmp_path: Path) -> None:
    # 0xFFFFFFFF: a writer that streamed the WAV never filled the size in; that is not "4 GB declared".
    samples = (np.sin(np.arange(8000) / 5) * 8000).astype("<i2").tobytes()
    path = tmp_path / "streamed.wav"
    path.write_bytes(wav_header(0xFFFFFFFF) + samples)
    assert audio_duration(path) == pytest.approx(1.0, abs=0.01)


def test_truncated_wav(tmp_path: Path) -> None:
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.zeros(16000), 8000, subtype="PCM_16")
    data = whole.read_bytes()
    half = tmp_path / "half.wav"
    half.write_bytes(data[: len(data) // 2])
    for func in ALL:
        one_line_error(func, half, "truncated")
    head_only = tmp_path / "head_only.wav"
    head_only.write_bytes(data[:30])  # cut inside the header
    for func in ALL:
        one_line_error(func, head_only, "not a readable audio file")


def test_truncated_flac_is_found_when_decoding(tmp_path: Path) -> None:
    whole = tmp_path / "whole.flac"
    sf.write(whole, np.random.default_rng(0).normal(0, 0.1, (22050, 2)), 22050)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for func in (decode_audio, analyse_audio):
        one_line_error(func, cut, "truncated")


@pytest.mark.parametrize("func", ALL, ids=lambda f: f.__name__)
def test_empty_missing_folder_and_nul(tmp_path: Path, func, no_decoding) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.wav"
    empty.touch()
    one_line_error(func, empty, "empty")
    one_line_error(func, tmp_path / "missing.mp3", "file not found")
    one_line_error(func, tmp_path, "is a folder")
    one_line_error(func, str(tmp_path / "a\x00b.wav"), "NUL")


def test_not_audio_files(tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "image.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(png)
    text = tmp_path / "notes.txt"
    text.write_text("la la la\n" * 200)
    noise = tmp_path / "noise.mp3"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 6000, dtype=np.uint8).tobytes())
    ogg = tmp_path / "fake.ogg"
    ogg.write_bytes(b"OggS" + bytes(300))
    for path in (png, text, noise, ogg):
        for func in ALL:
            err = one_line_error(func, path, "audio")
            assert str(path) in str(err)


@pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "win32", reason="needs FIFOs and /dev/zero")
def test_fifo_and_device_are_never_opened(tmp_path: Path, no_decoding) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)  # opening it for reading would block forever
    link = tmp_path / "zero.wav"
    link.symlink_to("/dev/zero")  # never ends
    for func in ALL:
        one_line_error(func, fifo, "not a regular file")
        one_line_error(func, link, "not a regular file")


def test_the_setting_name_is_the_callers(tmp_path: Path) -> None:
    err = one_line_error(audio_features, tmp_path / "nope.wav", "file not found", fps=15, setting="my.song")
    assert str(err).startswith("my.song: ")


def test_non_finite_samples_read_as_zero(tmp_path: Path) -> None:
    y = np.zeros(22050, dtype=np.float32)
    y[100:200] = np.nan
    y[300] = np.inf
    y[5000:5100] = 0.5
    path = tmp_path / "nan.wav"
    sf.write(path, y, 22050, subtype="FLOAT")
    out = decode_audio(path)
    assert np.all(np.isfinite(out)) and out[100:200].max() == 0.0 and out[300] == 0.0 and out[5050] == 0.5
