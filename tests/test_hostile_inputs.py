"""Hostile input -> one line on stderr (``discolib: error: ...``) naming the setting, key or file; exit status 2.

Every case runs through ``discolib.cli.main`` as a user would. The input-file cases of ``render`` also check that
no run folder was made: images are checked (opened, decoded, URLs fetched) before the folder exists.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from discolib.cli import main
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings, SettingsError
from discolib.io import images
from discolib.io.images import ImageInputError, check_image, load_image

DATA = Path(__file__).parent / "data"
MISSING_USER = "discolib_no_such_user_x9"


def _settings_file(tmp: Path, **overrides: object) -> Path:
    """A valid tiny guided settings file whose run folders go to ``tmp/runs``; ``overrides`` are dotted names."""
    s = apply_preset(Settings.defaults("guided"), "tiny")
    s.set("run.output_root", str(tmp / "runs"))
    for name, value in overrides.items():
        s.set(name.replace("__", "."), value)
    return s.save(tmp / "settings.json")


def _raw_settings(tmp: Path, text: str, name: str = "settings.json") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def _png(path: Path, size: tuple[int, int] = (16, 16)) -> Path:
    Image.new("RGB", size, (200, 40, 40)).save(path)
    return path


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A real small PNG whose IHDR chunk claims ``width`` x ``height`` (CRC fixed so Pillow trusts the header)."""
    data = bytearray((_png(path.with_suffix(".small.png"))).read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _import_file(tmp: Path, source: str, change: Callable[[str], str]) -> Path:
    return _raw_settings(tmp, change((DATA / source).read_text()), "TimeToDisco_settings.txt")


def _set_key(key: str, value: object) -> Callable[[str], str]:
    def change(text: str) -> str:
        data = json.loads(text)
        data[key] = value
        return json.dumps(data)

    return change


def _with_text(key: str, raw: str) -> Callable[[str], str]:
    """Replace the value of top-level ``key`` by raw JSON text (for numbers json.dumps cannot write)."""

    def change(text: str) -> str:
        data = json.loads(text)
        data[key] = "@@"
        return json.dumps(data).replace('"@@"', raw)

    return change


# Each case: tmp_path -> argv. The expected pattern is searched in the single stderr line.
CASES: list[tuple[str, Callable[[Path], list[str]], str, bool]] = [
    # (id, argv builder, regex the message must match, is a render case that must leave no run folder)
    ("deep-json-file", lambda t: ["validate", str(_raw_settings(t, '{"x": ' + _deep(100_000) + "}"))],
     r"settings\.json: JSON nested deeper than 64 levels", False),
    ("deep-prompt-in-file", lambda t: ["validate", str(_raw_settings(t, json.dumps(
        {"prompts": {"text_prompts": {"0": [[[[["a"]]]]]}}})))],
     r"prompts\.text_prompts: frame '0': expected a prompt string or a list of prompt strings", False),
    ("deep-prompt-via-set", lambda t: ["validate", str(_settings_file(t)), "--set=text_prompts=" + _deep(100_000)],
     r"prompts\.text_prompts: value nested deeper than 64 levels", False),
    ("huge-weights", lambda t: ["validate", str(_settings_file(t, prompts__text_prompts={"0": ["a:1e308", "b:1e308"]}))],
     r"prompts\.text_prompts: prompts at frame 0, prompt 2: weight 1e\+308 makes the sum of the weights overflow", False),
    ("dev-zero", lambda t: ["validate", "/dev/zero"], r"settings file: /dev/zero is not a regular file", False),
    ("sparse-2gb", lambda t: ["validate", str(_sparse(t))], r"settings file: .*big\.json is 2147483648 bytes; expected at most", False),
    ("folder", lambda t: ["validate", str(t)], r"settings file: .* is a folder, expected a file", False),
    ("missing-file", lambda t: ["validate", str(t / "nope.json")], r"settings file not found: .*nope\.json", False),
    ("non-utf8", lambda t: ["validate", str(_bytes_file(t, b'{"run": {"batch_name": "\xff\xfe"}}'))],
     r"settings file: .*bytes\.json: not UTF-8 text \(byte 24\)", False),
    ("nan", lambda t: ["validate", str(_raw_settings(t, '{"guidance": {"eta": NaN}}'))],
     r"settings\.json: guidance\.eta: NaN is not allowed; expected a finite number", False),
    ("infinity", lambda t: ["validate", str(_raw_settings(t, '{"guidance": {"clamp_max": -Infinity}}'))],
     r"settings\.json: guidance\.clamp_max: -Infinity is not allowed", False),
    ("1e400", lambda t: ["validate", str(_raw_settings(t, '{"run": {"seed": 1e400}}'))],
     r"settings\.json: run\.seed: the number 1e400 is too large; expected a finite number", False),
    ("5000-digits", lambda t: ["validate", str(_raw_settings(t, '{"run": {"seed": ' + "7" * 5000 + "}}"))],
     r"settings\.json: run\.seed: the number 7777777777\.\.\. \(5000 characters\) is too large", False),
    ("huge-int-for-float", lambda t: ["validate", str(_raw_settings(t, '{"guidance": {"eta": 1' + "0" * 400 + "}}"))],
     r"guidance\.eta: expected a finite number, got 1000", False),
    ("output-root-unknown-user", lambda t: ["validate", str(_raw_settings(t, json.dumps(
        {"run": {"output_root": f"~{MISSING_USER}/runs"}})))],
     rf"run\.output_root: cannot expand '~{MISSING_USER}/runs': user '{MISSING_USER}' is unknown", False),
    ("nul-in-path", lambda t: ["validate", str(_raw_settings(t, json.dumps({"guidance": {"init_image": "a\x00b.png"}})))],
     r"guidance\.init_image: a path cannot contain a NUL character", False),
    ("control-char-batch-name", lambda t: ["validate", str(_raw_settings(t, json.dumps({"run": {"batch_name": "a\nb"}})))],
     r"run\.batch_name: expected a folder name without control characters .*, got 'a\\nb'", False),
    ("set-unknown-long-name", lambda t: ["validate", str(_settings_file(t)), "--set=" + "x\r" * 5000 + "=1"],
     r"^discolib: error: x x x[x ]*\.\.\.: unknown setting$", False),
    ("out-unknown-user", lambda t: ["render", str(_settings_file(t)), "--out", f"~{MISSING_USER}/x"],
     rf"--out: cannot expand '~{MISSING_USER}/x': user '{MISSING_USER}' is unknown", True),
    ("init-bomb", lambda t: ["render", str(_settings_file(t, guidance__init_image=str(_png_claiming(t / "bomb.png", 30000, 30000))))],
     r"guidance\.init_image: .*bomb\.png claims more pixels than the limit", True),
    ("init-garbage", lambda t: ["render", str(_settings_file(t, guidance__init_image=str(_bytes_file(t, b"GIF89a garbage" * 10, "g.png"))))],
     r"guidance\.init_image: (not an image file|cannot decode): .*g\.png", True),
    ("init-truncated", lambda t: ["render", str(_settings_file(t, guidance__init_image=str(_truncated_png(t))))],
     r"guidance\.init_image: cannot decode .*cut\.png", True),
    ("init-folder", lambda t: ["render", str(_settings_file(t, guidance__init_image=str(t)))],
     r"guidance\.init_image: .* is a folder, expected a file", True),
    ("init-missing", lambda t: ["render", str(_settings_file(t, guidance__init_image=str(t / "missing.png")))],
     r"guidance\.init_image: file not found: .*missing\.png", True),
    ("init-url-refused", lambda t: ["render", str(_settings_file(t, guidance__init_image="http://127.0.0.1:9/x.png"))],
     r"guidance\.init_image: cannot download http://127\.0\.0\.1:9/x\.png: ", True),
    ("image-prompt-garbage", lambda t: ["render", str(_settings_file(
        t, prompts__image_prompts={"0": [str(_bytes_file(t, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "p.png")) + ":2"]}))],
     r"prompts\.image_prompts: (not an image file|cannot decode).*p\.png", True),
    ("import-seed-list", lambda t: ["import-settings", str(_import_file(t, "disco_v57_settings.txt", _set_key("seed", [1]))),
                                    "-o", str(t / "o.json")],
     r"TimeToDisco_settings\.txt: seed \(-> run\.seed\): expected an integer, got \[1\]", False),
    ("import-seed-1e400", lambda t: ["import-settings", str(_import_file(t, "disco_v57_settings.txt", _with_text("seed", "1e400"))),
                                     "-o", str(t / "o.json")],
     r"TimeToDisco_settings\.txt: seed: the number 1e400 is too large", False),
    ("import-seed-abc", lambda t: ["import-settings", str(_import_file(t, "deforum_settings.txt", _set_key("seed", "abc"))),
                                   "-o", str(t / "o.json")],
     r"TimeToDisco_settings\.txt: seed \(-> run\.seed\): expected an integer, got 'abc'", False),
    ("import-W-null", lambda t: ["import-settings", str(_import_file(t, "deforum_settings.txt", _set_key("W", None))),
                                 "-o", str(t / "o.json")],
     r"TimeToDisco_settings\.txt: W \(-> image\.width\): expected an integer, got None", False),
    ("import-negative-prompts-5", lambda t: ["import-settings", str(_import_file(
        t, "deforum_settings.txt", _set_key("negative_prompts", 5))), "-o", str(t / "o.json")],
     r"TimeToDisco_settings\.txt: negative_prompts \(-> latent\.negative_prompt\): expected a string", False),
    ("import-flag-not-bool", lambda t: ["import-settings", str(_import_file(t, "disco_v57_settings.txt", _set_key("RN50", "yes"))),
                                        "-o", str(t / "o.json")],
     r"TimeToDisco_settings\.txt: RN50 \(-> models\.clip_models\): expected true or false, got 'yes'", False),
    ("import-bad-schedule", lambda t: ["import-settings", str(_import_file(t, "disco_v57_settings.txt", _set_key("zoom", "0: (1+"))),
                                       "-o", str(t / "o.json")],
     r"TimeToDisco_settings\.txt: zoom \(-> animation\.zoom\): column 7: expected a value", False),
    ("import-dev-zero", lambda t: ["import-settings", "/dev/zero", "-o", str(t / "o.json")],
     r"settings file: /dev/zero is not a regular file", False),
]  # fmt: skip


def _sparse(tmp: Path) -> Path:
    p = tmp / "big.json"
    with open(p, "wb") as f:
        f.truncate(2**31)
    return p


def _bytes_file(tmp: Path, data: bytes, name: str = "bytes.json") -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


def _truncated_png(tmp: Path) -> Path:
    Image.effect_noise((64, 64), 60).convert("RGB").save(tmp / "full.png")
    data = (tmp / "full.png").read_bytes()
    p = tmp / "cut.png"
    p.write_bytes(data[: len(data) // 2])
    return p


@pytest.fixture(autouse=True)
def _no_user_named_like_the_test() -> None:
    try:
        pwd.getpwnam(MISSING_USER)
    except KeyError:
        return
    pytest.skip(f"a user {MISSING_USER!r} exists on this machine")


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err[:2000]
    assert lines[0].startswith("discolib: error: "), lines[0][:2000]
    assert "Traceback" not in err
    return lines[0]


def _run_files(tmp: Path) -> list[Path]:
    root = tmp / "runs"
    return sorted(root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize(("argv_of", "pattern", "render_case"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv_of: Callable[[Path], list[str]], pattern: str, render_case: bool
) -> None:
    argv = argv_of(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err[:2000]
    line = _one_error_line(err)
    assert re.search(pattern, line), line[:2000]
    assert len(line) < 1000, "one short line, not a dump of the input"
    if render_case:
        assert _run_files(tmp_path) == [], "no run folder may be left behind by an input error"


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO; a watchdog opens its write end after 20 s so a regression that reads it fails instead of hanging."""
    p = tmp_path / "pipe.json"
    os.mkfifo(p)

    def unblock() -> None:
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # nobody is reading: nothing to unblock
            pass

    timer = threading.Timer(20.0, unblock)
    timer.start()
    yield p
    timer.cancel()


@pytest.mark.parametrize("command", ["validate", "import-settings", "render-init-image"])
def test_fifo_is_refused_before_it_is_opened(
    tmp_path: Path, fifo: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if command == "validate":
        argv, pattern = ["validate", str(fifo)], r"settings file: .*pipe\.json is not a regular file"
    elif command == "import-settings":
        argv, pattern = ["import-settings", str(fifo), "-o", str(tmp_path / "o.json")], r"pipe\.json is not a regular file"
    else:
        argv = ["render", str(_settings_file(tmp_path, guidance__init_image=str(fifo)))]
        pattern = r"guidance\.init_image: .*pipe\.json is not a regular file"
    capsys.readouterr()
    assert main(argv) == 2
    assert re.search(pattern, _one_error_line(capsys.readouterr().err))
    assert _run_files(tmp_path) == []


def test_unreadable_init_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    img = _png(tmp_path / "secret.png")
    img.chmod(0)
    try:
        assert main(["render", str(_settings_file(tmp_path, guidance__init_image=str(img)))]) == 2
    finally:
        img.chmod(0o600)
    line = _one_error_line(capsys.readouterr().err)
    assert re.search(r"guidance\.init_image: cannot read .*secret\.png: Permission denied", line)
    assert _run_files(tmp_path) == []


def test_bomb_in_pillows_warning_range_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between MAX_IMAGE_PIXELS and twice that Pillow only warns; a user's image there is refused all the same."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)
    img = _png(tmp_path / "wide.png", (100, 100))  # 10 000 pixels: Pillow's warning range for a 6 000 limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no stray DecompressionBombWarning either
        with pytest.raises(ImageInputError, match=r"^guidance\.init_image: .*wide\.png claims more pixels than the limit of 6000"):
            check_image(img, setting="guidance.init_image")
        with pytest.raises(ImageInputError, match="claims more pixels"):
            load_image(img, setting="guidance.init_image")


def test_bomb_check_leaves_the_warnings_filters_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size check is made without ``warnings.catch_warnings``, which swaps the process-wide filters and so
    races with the render loop's writer thread; Pillow's own warning is never emitted either."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)
    over = _png(tmp_path / "over.png", (100, 100))  # Pillow only warns here (6 000 < 10 000 <= 12 000)
    far = _png(tmp_path / "far.png", (200, 100))  # Pillow raises here (> 12 000)
    edge = _png(tmp_path / "edge.png", (60, 100))  # exactly the limit: allowed

    real = warnings.catch_warnings
    swaps: list[object] = []

    def counted(*args: object, **kwargs: object) -> warnings.catch_warnings:
        swaps.append(args or kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with real(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "catch_warnings", counted)
        for img in (over, far):
            with pytest.raises(ImageInputError, match=rf"^s: .*{img.name} claims more pixels than the limit of 6000 "):
                check_image(img, setting="s")
        assert check_image(edge, setting="s") == (60, 100)
        assert tuple(load_image(edge, setting="s").shape) == (1, 3, 100, 60)
        monkeypatch.undo()
    assert swaps == []
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_images_decode_as_pillow_opens_them(tmp_path: Path, fmt: str) -> None:
    """The formats are found as ``Image.open`` finds them; the pixels are Pillow's."""
    import numpy as np

    arr = np.random.default_rng(0).integers(0, 256, (23, 31, 3), dtype=np.uint8)
    path = tmp_path / f"img.{fmt.lower()}"
    Image.fromarray(arr).save(path, format=fmt)
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    t = load_image(path, setting="s")
    assert tuple(t.shape) == (1, 3, 23, 31)
    assert np.array_equal(t[0].permute(1, 2, 0).numpy(), expected)


def test_good_image_checks_and_loads(tmp_path: Path) -> None:
    img = _png(tmp_path / "ok.png", (24, 16))
    assert check_image(img, setting="guidance.init_image") == (24, 16)
    t = load_image(img, setting="guidance.init_image")
    assert tuple(t.shape) == (1, 3, 16, 24) and abs(float(t[0, 0, 0, 0]) - 200 / 255) < 1e-6
    with pytest.warns(UserWarning, match=r"guidance\.init_image: .*ok\.png is 24x16; resized to 32x8"):
        assert tuple(load_image(img, (32, 8), setting="guidance.init_image").shape) == (1, 3, 8, 32)


def test_url_is_fetched_once_for_check_and_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """check_image (before the run folder) and load_image (in the run) share one download; no network is used."""
    payload = _png(tmp_path / "u.png", (8, 8)).read_bytes()
    calls: list[str] = []

    class Response:
        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self, n: int = -1) -> bytes:
            return payload

    def fake_urlopen(url: str, timeout: float) -> Response:
        assert timeout == images.URL_TIMEOUT_S
        calls.append(url)
        return Response()

    monkeypatch.setattr(images.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(images, "_url_cache", type(images._url_cache)())
    url = "https://example.invalid/u.png"
    assert check_image(url, setting="guidance.init_image") == (8, 8)
    assert tuple(load_image(url, setting="guidance.init_image").shape) == (1, 3, 8, 8)
    assert calls == [url]


def test_deep_prompt_dict_given_as_python_value() -> None:
    """The panel hands Python values to Settings.set/from_dict: deep nesting is one SettingsError, not RecursionError."""
    deep: object = "a castle"
    for _ in range(100_000):
        deep = [deep]
    s = Settings.defaults("guided")
    for attempt in (
        lambda: s.set("prompts.text_prompts", {"0": deep}),
        lambda: s.set("prompts.image_prompts", deep),
        lambda: Settings.from_dict({"prompts": {"text_prompts": {"0": deep}}}),
        lambda: s.set("models.clip_models", deep),
        lambda: s.set("guidance.eta", deep),
        lambda: s.set("image.mode", deep),
    ):
        with pytest.raises(SettingsError) as info:
            attempt()
        message = str(info.value)
        assert "\n" not in message and len(message) < 300 and message.startswith(("prompts.", "models.", "guidance.", "image."))
    # Set without validation (as a panel may while the user types), the value is still refused before asdict recurses.
    s.set("prompts.text_prompts", {"0": deep}, validate_field=False)
    with pytest.raises(SettingsError, match=r"^prompts\.text_prompts: value nested deeper than 64 levels"):
        s.to_dict()
    with pytest.raises(SettingsError, match=r"^prompts\.text_prompts: frame '0': expected a prompt string"):
        s.validate()
