"""One decoding path for every image: bit depths and float modes scaled correctly or refused,
decompression bombs refused without decoding, and the other images of a batch still done."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inverse_air.cli import app
from inverse_air.errors import UserError
from inverse_air.images import as_input, read_image

SCENES = Path(__file__).resolve().parent.parent / "scenes"


def test_16_bit_grey_is_scaled_not_clipped_to_white(tmp_path):
    values = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16  # 0 .. 65520
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    array, notices = read_image(tmp_path / "g16.png", 64, 1)
    assert np.array_equal(array[..., 0], np.round(values / 257).astype(np.uint8))
    assert "16-bit" in notices[0]
    Image.fromarray(np.full((64, 64), 65535, np.uint16)).save(tmp_path / "white.png")
    assert (read_image(tmp_path / "white.png", 64, 3)[0] == 255).all()


def test_float_images_are_scaled_from_0_1_or_refused(tmp_path):
    values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    Image.fromarray(values).save(tmp_path / "f.tif")
    array, notices = read_image(tmp_path / "f.tif", 64, 1)
    assert np.array_equal(array[..., 0], np.round(values.astype(np.float64) * 255).astype(np.uint8))
    assert any("float" in n for n in notices)
    for bad, fragment in ((values * 255, r"values in \[0, 255\]"), (np.full((64, 64), np.nan, np.float32), "NaN")):
        Image.fromarray(bad.astype(np.float32)).save(tmp_path / "bad.tif")
        with pytest.raises(UserError, match=fragment):
            read_image(tmp_path / "bad.tif", 64, 1)


def test_exif_orientation_turns_a_phone_jpeg_upright(tmp_path):
    upright = np.zeros((32, 32), np.uint8)
    upright[:8] = 255  # white along the top, as the photo is seen
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # white along the left, as stored
    exif = stored.getexif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to display": what phones write
    stored.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    array, notices = read_image(tmp_path / "phone.jpg", 32, 1)
    assert array[:8].mean() > 200 and array[8:, :8].mean() < 50, "read as stored, not as seen"
    assert any("EXIF orientation" in n for n in notices)
    seen, _ = as_input(Image.open(tmp_path / "phone.jpg"), 32, 1)  # a PIL image given to the Python API
    assert np.array_equal(seen, array)
    Image.fromarray(upright).save(tmp_path / "plain.png")  # no tag: as stored, no notice
    assert np.array_equal(read_image(tmp_path / "plain.png", 32, 1)[0][..., 0], upright)
    assert read_image(tmp_path / "plain.png", 32, 1)[1] == []


def test_decompose_and_train_read_the_same_files_of_a_folder(tmp_path):
    from inverse_air.decompose import expand_inputs
    from inverse_air.folders import ImageFolder

    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes((SCENES / "sphere.png").read_bytes())
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.JPG", "b.png"]
    assert [p.name for p in ImageFolder(tmp_path, "3d", 64, 3, notice=lambda text: None).paths] == ["a.JPG", "b.png"]
    result = CliRunner().invoke(app, ["decompose", str(tmp_path), "--json"])
    assert result.exit_code == 0 and [json.loads(line)["image"] for line in result.stdout.splitlines()] == [
        str(tmp_path / "a.JPG"), str(tmp_path / "b.png")]


def test_arrays_and_pil_images_take_the_same_path():
    rgb = np.asarray(Image.open(SCENES / "sphere.png"))
    assert np.array_equal(as_input(rgb, 64, 3)[0], rgb) and as_input(rgb, 64, 3)[1] == []
    assert np.array_equal(as_input(Image.open(SCENES / "sphere.png"), 64, 3)[0], rgb)
    assert np.array_equal(as_input(rgb / 255.0, 64, 3)[0], rgb)
    assert np.array_equal(as_input(rgb.astype(np.uint16) * 257, 64, 3)[0], rgb)
    with pytest.raises(UserError, match="shape"):
        as_input(np.zeros((4, 4, 7)), 64, 3)
    with pytest.raises(UserError, match="NaN"):
        as_input(np.full((8, 8), np.nan), 64, 3)


def test_a_decompression_bomb_is_refused_and_the_rest_of_the_batch_reported(tmp_path):
    Image.new("L", (9000, 9000)).save(tmp_path / "a_bomb.png")  # 81 Mpixels, a 100 KB file
    (tmp_path / "b_good.png").write_bytes((SCENES / "sphere.png").read_bytes())
    result = CliRunner().invoke(app, ["decompose", str(tmp_path), "--json"])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert "decompression bomb" in records[0]["error"] and records[1]["count"] == 1
    assert "Traceback" not in result.output


def test_a_long_strip_is_scaled_before_it_is_padded(tmp_path, monkeypatch):
    """A 30000x100 strip padded first would be a 30000x30000 square (900 million pixels, 2.7 GB
    in RGB); it is scaled to the model's size first, so that no image made on the way is larger
    than the largest image read, and the strip lands as a line across the middle."""
    from inverse_air.images import MAX_IMAGE_PIXELS

    strip = np.zeros((100, 30000, 3), dtype=np.uint8)
    strip[:, :15000] = 255  # left half white
    Image.fromarray(strip).save(tmp_path / "strip.png")
    real_new = Image.new

    def bounded_new(mode, size, *args, **kwargs):
        assert size[0] * size[1] <= MAX_IMAGE_PIXELS, f"an image of {size} would be made"
        return real_new(mode, size, *args, **kwargs)

    monkeypatch.setattr(Image, "new", bounded_new)
    image, notices = read_image(tmp_path / "strip.png", 64, 3)
    assert notices == ["30000x100 image scaled to 64x1 (its 30000x30000 square would be too large), then padded "
                       "to 64x64 with its border's median colour"]
    assert (image[31, :31] == 255).all() and (image[31, 33:] == 0).all()  # the strip, its halves in place
    above, below = image[:31], image[32:]  # padding: the median of the border (half white, half black)
    assert (above == 128).all() and (below == 128).all()
    Image.fromarray(strip[:, 14850:15150]).save(tmp_path / "short.png")  # 300x100: padded first, as ever
    image, notices = read_image(tmp_path / "short.png", 64, 3)
    assert notices[0] == "300x100 image padded to 300x300 with its border's median colour"


@pytest.mark.parametrize("command", ["train", "evaluate", "decompose"])
def test_a_decompression_bomb_in_a_folder_is_one_line_for_every_command(tmp_path, command):
    import struct
    import zlib

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.png").write_bytes((SCENES / "sphere.png").read_bytes())
    side = 20000  # 400 Mpixels, above Pillow's own limit too: it refuses the file while opening it
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    (folder / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * (side // 100 + 1), 9)) + chunk(b"IEND", b""))
    model = Path(__file__).resolve().parent.parent / "inverse_air" / "objects2d" / "models" / "air2d.pt"
    args = {"train": ["train", "--model", "2d", "--data", folder, "--out", tmp_path / "run", "--steps", 1, "--quiet"],
            "evaluate": ["evaluate", model, "--data", folder],
            "decompose": ["decompose", folder, "--model", "2d"]}[command]
    result = CliRunner().invoke(app, [str(a) for a in args])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(errors) == 1 and "bomb.png" in errors[0] and "decompression bomb" in errors[0], result.output
    assert not (tmp_path / "run").exists()
