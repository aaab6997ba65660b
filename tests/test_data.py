"""Tests for runtime.data: built-in sets, fixed splits, on-disk formats, prepare, errors.

The on-disk loaders are tested on small files written here in the real standard formats
(IDX, CIFAR python pickles, Cityscapes and CelebA-like folders of PNGs), filled with real
images from the built-in sets, so a loader that passes reads the files users have.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runtime.data import (
    BUILTIN,
    DataError,
    ImageSet,
    clear_cache,
    load_dataset,
    prepare,
    split_indices,
)

# name: (C, H, W), (train, val, all), num_classes, has labels, has label maps
EXPECTED = {
    "mnist5k": ((1, 28, 28), (4500, 500, 5000), 10, True, False),
    "fashion-mnist": ((1, 28, 28), (60000, 10000, 70000), 10, True, False),
    "digits": ((1, 8, 8), (1621, 176, 1797), 10, True, False),
    "photos": ((3, 32, 32), (1998, 222, 2220), None, False, False),
    "faces": ((1, 25, 25), (90, 10, 100), None, False, False),
    "fashion-seg": ((1, 28, 28), (60000, 10000, 70000), 11, True, True),
}


def test_every_builtin_is_tested() -> None:
    assert set(EXPECTED) == set(BUILTIN)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_shapes_and_sizes(name: str) -> None:
    shape, sizes, num_classes, has_labels, has_maps = EXPECTED[name]
    for split, size in zip(("train", "val", "all"), sizes):
        if name == "fashion-seg" and split == "all":  # 440 MB of int64 maps: count only
            assert len(split_indices(name, split)) == size
            continue
        s = load_dataset(name, split)
        assert isinstance(s, ImageSet) and len(s) == size
        assert s.images.dtype == torch.uint8 and tuple(s.images.shape) == (size, *shape)
        assert s.num_classes == num_classes and s.name == name
        assert s.description == BUILTIN[name] and "\n" not in s.description
        assert (s.labels is not None) == has_labels
        if s.labels is not None:
            assert s.labels.dtype == torch.int64 and s.labels.shape == (size,)
            assert 0 <= int(s.labels.min()) and int(s.labels.max()) < 10
        assert (s.label_maps is not None) == has_maps
        # real images use the full range, not a constant or a 0..16 scale
        some = s.images[:2000]
        assert int(some.max()) >= 250 and float(some.float().std()) > 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_splits_are_fixed_and_disjoint(name: str) -> None:
    train, val, full = (split_indices(name, s) for s in ("train", "val", "all"))
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == full.tolist()
    # fashion-seg's images are Fashion-MNIST's; its own 'all' would build 440 MB of maps
    all_images = load_dataset("fashion-mnist" if name == "fashion-seg" else name, "all").images
    assert torch.equal(load_dataset(name, "val").images, all_images[val])


def test_split_rule_is_stratified() -> None:
    # mnist5k has 500 per class, so val is exactly 50 per class
    assert torch.bincount(load_dataset("mnist5k", "val").labels).tolist() == [50] * 10
    assert split_indices("faces", "val").tolist() == list(range(9, 100, 10))
    # fashion-mnist keeps its own files: train file then test file
    assert split_indices("fashion-mnist", "val")[0] == 60000


def test_builtin_cached() -> None:
    a = load_dataset("digits", "train")
    assert load_dataset("digits", "train") is a


def test_fashion_seg_maps_follow_the_photo() -> None:
    s = load_dataset("fashion-seg", "val", limit=200)
    assert len(s) == 200 and s.label_maps.dtype == torch.int64
    fg = s.images[:, 0] > 10
    assert torch.equal(s.label_maps, fg * (s.labels[:, None, None] + 1))
    assert torch.equal(s.images, load_dataset("fashion-mnist", "val").images[:200])
    t = load_dataset("fashion-seg", "val", limit=50, threshold=0)
    assert torch.equal(t.label_maps > 0, t.images[:, 0] > 0)


def test_photos_says_it_is_a_stand_in() -> None:
    assert "stand-in for CIFAR-10" in BUILTIN["photos"]
    assert "NOT CIFAR-10" in BUILTIN["photos"]


def test_limit_and_unknown_option() -> None:
    assert len(load_dataset("faces", "train", limit=7)) == 7
    with pytest.raises(DataError, match="unknown option.*treshold.*accepted options: limit"):
        load_dataset("fashion-seg", treshold=3)


# ------------------------------------------------------------------------- IDX


def _write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path: Path, gz: bool) -> None:
    src = load_dataset("mnist5k", "all")
    images, labels = src.images[::250][:20], src.labels[::250][:20]  # 2 of each digit
    ext = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", images[:14, 0].numpy(), gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", labels[:14].numpy(), gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", images[14:, 0].numpy(), gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", labels[14:].numpy(), gz)

    train = load_dataset(str(tmp_path))
    assert torch.equal(train.images, images[:14]) and torch.equal(train.labels, labels[:14])
    assert train.num_classes == 10
    val = load_dataset(str(tmp_path), "val")
    assert torch.equal(val.images, images[14:]) and torch.equal(val.labels, labels[14:])
    assert len(load_dataset(str(tmp_path), "all")) == 20
    # one file: labels found beside it, every-tenth rule inside it
    one = load_dataset(str(tmp_path / f"train-images-idx3-ubyte{ext}"), "all")
    assert torch.equal(one.images, images[:14]) and torch.equal(one.labels, labels[:14])


def test_idx_truncated_and_garbage(tmp_path: Path) -> None:
    digits = load_dataset("mnist5k", "val").images[:5, 0].numpy()
    bad = tmp_path / "train-images-idx3-ubyte"
    _write_idx(bad, digits)
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(str(bad), "all")
    junk = tmp_path / "x-idx3-ubyte"
    junk.write_bytes(b"hello world")
    with pytest.raises(DataError, match="not an IDX file"):
        load_dataset(str(junk), "all")


# ------------------------------------------------------------------------- CIFAR


def _write_cifar_batch(path: Path, images: torch.Tensor, labels: list[int]) -> None:
    batch = {
        b"batch_label": path.name.encode(),
        b"labels": labels,
        b"data": images.reshape(len(images), -1).numpy(),
        b"filenames": [f"{i}.png".encode() for i in range(len(images))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar_batches(tmp_path: Path) -> None:
    photos = load_dataset("photos", "all").images[::100][:20]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    labels = [i % 10 for i in range(20)]  # CIFAR needs labels; these are arbitrary
    _write_cifar_batch(folder / "data_batch_1", photos[:8], labels[:8])
    _write_cifar_batch(folder / "data_batch_2", photos[8:15], labels[8:15])
    _write_cifar_batch(folder / "test_batch", photos[15:], labels[15:])
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))

    train = load_dataset(str(tmp_path))
    assert train.images.shape == (15, 3, 32, 32) and torch.equal(train.images, photos[:15])
    assert train.labels.tolist() == labels[:15] and train.num_classes == 10
    val = load_dataset(str(folder), "val")
    assert torch.equal(val.images, photos[15:])
    single = load_dataset(str(folder / "data_batch_1"), "all", format="cifar")
    assert torch.equal(single.images, photos[:8])


def test_cifar_refuses_foreign_pickles(tmp_path: Path) -> None:
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": Path("x")}))
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_dataset(str(evil), "all")


# ------------------------------------------------------------------------- folders


def test_image_folder_celeba_style(tmp_path: Path) -> None:
    faces = load_dataset("faces", "all").images[:12]
    for i, face in enumerate(faces):
        # nested is fine; loose images beside a subfolder: not class folders
        sub = tmp_path if i < 6 else tmp_path / "b" / "deeper"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face[0].numpy()).save(sub / f"{i:06d}.png")
    all_ = load_dataset(str(tmp_path), "all")
    assert all_.images.shape == (12, 1, 25, 25) and torch.equal(all_.images, faces)
    assert all_.labels is None and all_.num_classes is None
    assert len(load_dataset(str(tmp_path), "train")) == 11  # every-tenth rule: 1 in val
    assert torch.equal(load_dataset(str(tmp_path), "val").images, faces[9:10])
    big = load_dataset(str(tmp_path), "all", size=(32, 32), channels=3)
    assert big.images.shape == (12, 3, 32, 32)


def test_image_folder_partition_file(tmp_path: Path) -> None:
    faces = load_dataset("faces", "all").images[:6]
    img_dir = tmp_path / "img_align_celeba"
    img_dir.mkdir()
    lines = []
    for i, face in enumerate(faces):
        Image.fromarray(face[0].numpy()).convert("RGB").save(img_dir / f"{i + 1:06d}.jpg")
        lines.append(f"{i + 1:06d}.jpg {[0, 0, 0, 1, 1, 2][i]}")
    (tmp_path / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    assert [len(load_dataset(str(img_dir), s)) for s in ("train", "val", "test", "all")] == [
        3,
        2,
        1,
        6,
    ]
    assert load_dataset(str(img_dir), "all").images.shape == (6, 3, 25, 25)


def test_image_folder_mixed_sizes_need_size(tmp_path: Path) -> None:
    photos = load_dataset("photos", "all").images
    Image.fromarray(photos[0].permute(1, 2, 0).numpy()).save(tmp_path / "a.png")
    Image.fromarray(photos[1, :, :20].permute(1, 2, 0).numpy()).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="differ in size.*pass size=N"):
        load_dataset(str(tmp_path), "all")
    assert load_dataset(str(tmp_path), "all", size=16).images.shape == (2, 3, 16, 16)


def test_unreadable_image(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot read the image .*broken.png"):
        load_dataset(str(tmp_path), "all")


# ------------------------------------------------------------------------- pairs


def _write_cityscapes(root: Path, seg: ImageSet, split: str, city: str, n: int) -> None:
    for i in range(n):
        stem = f"{city}_{i:06d}_000019"
        photo = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
        label = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        photo.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(seg.images[i, 0].numpy()).save(photo)
        Image.fromarray(seg.label_maps[i].numpy().astype(np.uint8)).save(label)


def test_cityscapes_layout(tmp_path: Path) -> None:
    seg = load_dataset("fashion-seg", "val", limit=10)
    _write_cityscapes(tmp_path, seg, "train", "aachen", 6)
    _write_cityscapes(tmp_path, seg, "val", "frankfurt", 4)
    train = load_dataset(str(tmp_path))
    assert torch.equal(train.images, seg.images[:6])
    assert torch.equal(train.label_maps, seg.label_maps[:6])
    assert train.num_classes == 34  # Cityscapes labelIds
    assert load_dataset(str(tmp_path), "train", num_classes=11).num_classes == 11
    assert len(load_dataset(str(tmp_path), "all")) == 10
    small = load_dataset(str(tmp_path), "val", size=(14, 14))
    assert small.images.shape == (4, 1, 14, 14) and small.label_maps.shape == (4, 14, 14)
    assert set(small.label_maps.unique().tolist()) <= set(seg.label_maps.unique().tolist())


def test_cityscapes_unmatched_pairs(tmp_path: Path) -> None:
    seg = load_dataset("fashion-seg", "val", limit=3)
    _write_cityscapes(tmp_path, seg, "train", "aachen", 3)
    next((tmp_path / "gtFine" / "train" / "aachen").iterdir()).unlink()
    with pytest.raises(DataError, match="unmatched pairs.*1 photo\\(s\\) without a label map"):
        load_dataset(str(tmp_path))


def test_generic_pairs_and_colour_labels(tmp_path: Path) -> None:
    seg = load_dataset("fashion-seg", "train", limit=10)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(10):
        Image.fromarray(seg.images[i, 0].numpy()).save(
            tmp_path / "images" / f"{i}.jpg", quality=95
        )
        Image.fromarray(seg.label_maps[i].numpy().astype(np.uint8)).save(
            tmp_path / "labels" / f"{i}.png"
        )
    pairs = load_dataset(str(tmp_path), "all")
    assert torch.equal(pairs.label_maps, seg.label_maps) and pairs.num_classes == 11
    assert pairs.images.shape == (10, 1, 28, 28)  # JPEG: close, not equal
    error = float((pairs.images.int() - seg.images.int()).abs().float().mean())
    assert error < 2
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "labels" / "0.png")
    with pytest.raises(DataError, match="expected single-channel class ids"):
        load_dataset(str(tmp_path), "all")


# ------------------------------------------------------------------------- prepare


def test_prepare_pad_resize_channels() -> None:
    digits = load_dataset("mnist5k", "val").images[:8]
    padded = prepare(digits, (1, 32, 32), pad=2)
    assert padded.shape == (8, 1, 32, 32) and padded.dtype == torch.uint8
    assert torch.equal(padded[:, :, 2:30, 2:30], digits) and int(padded[:, :, :2].max()) == 0
    rgb = prepare(digits, (3, 28, 28), convert_channels=True)
    assert rgb.shape == (8, 3, 28, 28) and torch.equal(rgb[:, 2], digits[:, 0])
    photos = load_dataset("photos", "val").images[:4]
    grey = prepare(photos, (1, 32, 32), convert_channels=True)
    y = (photos.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert (grey[:, 0].float() - y).abs().max() <= 0.5 + 1e-4
    small = prepare(load_dataset("digits", "val").images[:3], (1, 32, 32), resize=True, pad=2)
    assert small.shape == (3, 1, 32, 32) and int(small[:, :, :2].max()) == 0
    wide = torch.zeros(2, 3, 20, 40, dtype=torch.uint8)
    wide[..., 5:35] = 200  # the centre survives the crop
    assert int(prepare(wide, (3, 16, 16), resize=True).min()) == 200


def test_prepare_label_maps() -> None:
    maps = load_dataset("fashion-seg", "val", limit=4).label_maps
    out = prepare(maps, (1, 32, 32), pad=2)
    assert out.dtype == torch.int64 and out.shape == (4, 32, 32)
    assert torch.equal(out[:, 2:30, 2:30], maps) and int(out[:, :2].max()) == 0
    up = prepare(maps, (1, 56, 56), resize=True)
    assert torch.equal(up[:, ::2, ::2], maps)  # nearest neighbour: no blended ids


def test_prepare_refuses_silent_changes() -> None:
    digits = load_dataset("mnist5k", "val").images[:2]
    with pytest.raises(DataError, match=r"1x28x28 .* input is 1x32x32.*pad=2"):
        prepare(digits, (1, 32, 32))
    with pytest.raises(DataError, match=r"input is 3x28x28.*pass channels=3"):
        prepare(digits, (3, 28, 28))
    with pytest.raises(DataError, match="resize=True"):
        prepare(digits, (1, 20, 24))


# ------------------------------------------------------------------------- errors


def test_missing_path_and_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither a built-in data set nor an existing path"):
        load_dataset(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="no package ships CIFAR-10"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="split must be one of train, val, all"):
        load_dataset("faces", "training")


def test_empty_and_unrecognised_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty folder; expected PNG/JPEG images"):
        load_dataset(str(tmp_path))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="no data found.*notes.txt"):
        load_dataset(str(tmp_path))
    with pytest.raises(DataError, match="unknown format"):
        load_dataset(str(tmp_path), format="tfrecord")


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    for i, face in enumerate(load_dataset("faces", "all").images[:3]):
        Image.fromarray(face[0].numpy()).save(tmp_path / f"{i}.png")
    with pytest.raises(DataError, match="'val' split .* is empty.*split='all'"):
        load_dataset(str(tmp_path), "val")


def test_pair_size_mismatch_and_memory_guard(tmp_path: Path, monkeypatch) -> None:
    seg = load_dataset("fashion-seg", "val", limit=2)
    _write_cityscapes(tmp_path, seg, "train", "bonn", 2)
    label = next((tmp_path / "gtFine" / "train" / "bonn").iterdir())
    Image.fromarray(np.zeros((14, 28), np.uint8)).save(label)
    with pytest.raises(DataError, match="is 28x28 but its label map .* is 14x28"):
        load_dataset(str(tmp_path), size=10)
    monkeypatch.setattr("runtime.data.base.MAX_BYTES", 1000)
    with pytest.raises(DataError, match="GiB.*pass size=N.*or limit=N"):
        load_dataset(str(tmp_path / "leftImg8bit"), "all")


def test_mixed_grey_and_colour_folder_becomes_rgb(tmp_path: Path) -> None:
    photo = load_dataset("photos", "val").images[0]
    Image.fromarray(photo.permute(1, 2, 0).numpy()).save(tmp_path / "0.png")
    Image.fromarray(photo[0].numpy()).save(tmp_path / "1.png")
    s = load_dataset(str(tmp_path), "all")
    assert s.images.shape == (2, 3, 32, 32) and torch.equal(s.images[0], photo)
    assert torch.equal(s.images[1], photo[:1].expand(3, -1, -1))


def test_prepare_never_aliases_the_cache() -> None:
    cached = load_dataset("faces", "val").images
    out = prepare(cached, (1, 25, 25))
    out.zero_()
    assert int(load_dataset("faces", "val").images.max()) > 0
    with pytest.raises(DataError, match="limit must be a positive int"):
        load_dataset("faces", limit=0)


# Last on purpose: clear_cache() makes later tests re-read every built-in set.
def test_splits_same_after_reload() -> None:
    # photos: rebuilt from the decoded photographs, the least trivial to reproduce
    before = (split_indices("photos", "val"), load_dataset("photos", "val").images.clone())
    clear_cache()
    assert torch.equal(split_indices("photos", "val"), before[0])
    assert torch.equal(load_dataset("photos", "val").images, before[1])
