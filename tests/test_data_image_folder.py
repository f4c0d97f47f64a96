"""image-folder on a folder of a few images written here."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from vae_lib.data import DatasetNotFoundError, load_dataset


@pytest.fixture
def folder(tmp_path):
    """Five images of different sizes and modes; b_ is wide with a white centre square, black sides."""
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "a_red.png")
    wide = Image.new("RGB", (64, 32), (0, 0, 0))
    wide.paste((255, 255, 255), (16, 0, 48, 32))
    wide.save(tmp_path / "b_wide.png")
    Image.new("L", (20, 20), 0).save(tmp_path / "c_gray.png")
    Image.new("RGBA", (24, 24), (0, 0, 255, 255)).save(tmp_path / "d_rgba.png")
    Image.new("RGB", (30, 30), (0, 255, 0)).save(tmp_path / "e_green.jpg", quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_loads_every_image_cropped_and_resized(folder):
    data = load_dataset("image-folder", root=folder, size=16, verbose=False)
    assert data.images.shape == (5, 3, 16, 16) and data.images.dtype == torch.float32
    assert data.value_range == (-1.0, 1.0) and data.images.min() >= -1 and data.images.max() <= 1
    assert data.labels.tolist() == [0] * 5 and data.labels.dtype == torch.int64
    assert data.source == str(folder) and data.name == "image-folder"
    red, wide, gray, blue, green = data.images
    assert torch.allclose(red, torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1))
    # A centre crop keeps only the white square (a squash would keep a quarter black on each side).
    assert torch.allclose(wide[:, :, 1:-1], torch.ones(3, 16, 14)) and wide[:, :, [0, -1]].min() > 0.4
    assert torch.allclose(gray, -torch.ones(3, 16, 16))                      # grayscale becomes 3 channels
    assert torch.allclose(blue, torch.tensor([-1.0, -1.0, 1.0]).view(3, 1, 1))
    assert green[1].mean() > 0.9 and green[0].mean() < -0.9                 # jpeg read too


def test_n_keeps_the_first_files_by_name_and_default_size(folder):
    data = load_dataset("image-folder", root=folder, n=2, verbose=False)
    assert data.images.shape == (2, 3, 64, 64)
    assert data.images[0, 0].mean() > 0.99                                    # a_red first


def test_split_subfolder(folder):
    (folder / "test").mkdir()
    Image.new("RGB", (8, 8), (255, 255, 255)).save(folder / "test" / "white.png")
    data = load_dataset("image-folder", "test", root=folder, size=8, verbose=False)
    assert len(data) == 1 and data.images.min() == 1
    plain = folder / "plain"
    plain.mkdir()
    Image.new("RGB", (8, 8)).save(plain / "x.png")
    with pytest.raises(ValueError, match="no test/ sub-folder"):
        load_dataset("image-folder", "test", root=plain, verbose=False)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="needs root="):
        load_dataset("image-folder", verbose=False)
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        load_dataset("image-folder", root=tmp_path / "nowhere", verbose=False)
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetNotFoundError, match=r"no images in .*\.png.*1 other entries"):
        load_dataset("image-folder", root=tmp_path, verbose=False)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode .*broken.png"):
        load_dataset("image-folder", root=tmp_path, verbose=False)


def test_sixteen_bit_pngs_are_scaled_by_65535_not_clipped_to_white(tmp_path):
    import numpy as np

    pixels = np.full((12, 12), 16384, dtype=np.uint16)  # a quarter of the 16-bit range
    pixels[:, 6:] = 65535
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I")  # really 16 bits on disk
    data = load_dataset("image-folder", root=tmp_path, size=12, verbose=False)
    left, right = data.images[0, :, :, :5], data.images[0, :, :, 7:]
    assert torch.allclose(left, torch.full_like(left, 16384 / 65535 * 2 - 1), atol=1e-4)
    assert torch.allclose(right, torch.ones_like(right), atol=1e-4)


def test_palette_images_keep_their_colours(tmp_path):
    image = Image.new("P", (8, 8))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 8, 8))  # every pixel palette entry 1: red
    image.save(tmp_path / "palette.png")
    data = load_dataset("image-folder", root=tmp_path, size=8, verbose=False)
    assert torch.allclose(data.images[0], torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1))
