"""Data folders in the lab layout (i-CLEVR, anime faces): validation, decoding, caching, batching and splits.

Layout of a data folder::

    objects.json     name -> index (24 classes)
    train.json       image file name -> list of object names
    images/          the images named in train.json
    test.json        list of conditions (lists of names); optional, like new_test.json
    groups.json      optional: group name -> its values (attribute groups: one value of each per image)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cgan_export.errors import CganError, DatasetError, VocabularyError
from cgan_export.io import atomic_path
from cgan_export.vocabulary import GROUPS_FILE, Vocabulary, read_condition_file

DATA_ENV = "CGAN_EXPORT_DATA"
CACHE_ENV = "CGAN_EXPORT_CACHE"
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "iclevr"
CONDITION_FILES = ("test.json", "new_test.json")
_SCENE = re.compile(r"_(\d+)_\d+\.\w+$")


def default_cache_dir() -> Path:
    """Where decoded datasets and run folders live (outside the repository)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "cgan-export"))


def resolve_data_root(path: Path | None = None) -> Path:
    """The data folder: the given path, else ``$CGAN_EXPORT_DATA``, else ``../shared/iclevr``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(DATA_ENV, DEFAULT_DATA))


def _read_json(path: Path):
    if not path.is_file():
        raise DatasetError(f"dataset folder {path.parent} has no {path.name}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from None


def load_vocabulary(root: Path) -> Vocabulary:
    """The vocabulary of a data folder: its ``objects.json``, as attribute groups when it has ``groups.json``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist (set --data or ${DATA_ENV})")
    vocabulary = Vocabulary.from_objects_json(root / "objects.json")  # reads and validates it once
    if (root / GROUPS_FILE).exists():
        vocabulary = vocabulary.with_groups(_read_json(root / GROUPS_FILE))
    return vocabulary


def evaluation_conditions(root: Path, vocabulary: Vocabulary) -> dict[str, list[list[str]]]:
    """The condition sets a folder is scored on, by name: its lab condition files (``test``, ``new_test``); a
    groups folder without them is scored on every combination of one value per group (``combinations``)."""
    sets = {f.removesuffix(".json"): load_conditions(root / f, vocabulary) for f in CONDITION_FILES if (root / f).is_file()}
    if not sets and vocabulary.groups:
        sets["combinations"] = vocabulary.combinations()
    return sets


def load_conditions(path: Path, vocabulary: Vocabulary) -> list[list[str]]:
    """Read a lab condition file and validate every name against the folder's vocabulary."""
    try:
        conditions = read_condition_file(Path(path))
        for condition in conditions:
            vocabulary.parse(condition)
    except CganError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    return conditions


def read_annotations(root: Path, vocabulary: Vocabulary) -> dict[str, list[str]]:
    """Read and validate ``train.json``: every name known, every image present."""
    root = Path(root)
    annotations = _read_json(root / "train.json")
    if not isinstance(annotations, dict) or not annotations:
        raise DatasetError(f"{root / 'train.json'} must map image file names to lists of object names")
    if not (root / "images").is_dir():
        raise DatasetError(f"dataset folder {root} has no images/ folder")
    present = set(os.listdir(root / "images"))
    for file_name, names in annotations.items():
        if file_name not in present:
            raise DatasetError(f"image {file_name} named in train.json is missing from {root / 'images'}")
        if not isinstance(names, list):
            raise DatasetError(f"train.json entry {file_name} must be a list of object names")
        for name in names:
            try:
                vocabulary.index(name)
            except VocabularyError as exc:
                raise DatasetError(f"train.json entry {file_name}: {exc}") from None
    return annotations


@dataclass(frozen=True)
class ICLEVRData:
    """All training images of a data folder in memory as uint8, with their multi-hot labels."""

    root: Path
    vocabulary: Vocabulary
    files: tuple[str, ...]
    images: torch.Tensor  # uint8 [N, 3, H, W]
    labels: torch.Tensor  # float32 [N, 24]

    def __len__(self) -> int:
        return len(self.files)

    def conditions(self, file_name: str) -> list[list[str]]:
        """The condition file ``file_name`` of this folder (e.g. ``test.json``)."""
        return load_conditions(self.root / file_name, self.vocabulary)

    def evaluation_conditions(self) -> dict[str, list[list[str]]]:
        """The condition sets this folder is scored on (see :func:`evaluation_conditions`)."""
        return evaluation_conditions(self.root, self.vocabulary)

    def subset(self, indices: np.ndarray) -> "ICLEVRData":
        """A view holding only ``indices``."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ICLEVRData(self.root, self.vocabulary, tuple(self.files[i] for i in indices),
                          self.images[idx], self.labels[idx])


def _decode(path: Path, image_size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.BICUBIC)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # [3, H, W]
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"cannot decode image {path}: {exc}") from None


def _cache_name(root: Path, files: list[str], image_size: int) -> tuple[str, str]:
    """The cache file's stem for this data: ``(content, stem)``. ``content`` hashes the annotations, the size
    and a sample of image names and byte counts; the stem adds their modification times, so a folder whose
    images changed (or were copied afresh) decodes again and the stale copies of the same content go."""
    content, fresh = hashlib.sha256(), hashlib.sha256()
    for name in ("train.json", "objects.json"):
        content.update((root / name).read_bytes())
    content.update(str(image_size).encode())
    for f in files[:: max(1, len(files) // 64)]:  # a sample of image sizes and times
        st = (root / "images" / f).stat()
        content.update(f"{f}:{st.st_size}".encode())
        fresh.update(f"{f}:{int(st.st_mtime)}".encode())
    key = f"iclevr-{content.hexdigest()[:16]}"
    return key, f"{key}-{fresh.hexdigest()[:8]}"


def _drop_stale(cache: Path, content: str) -> None:
    """Remove the cached copies of the same content made before its images' times changed."""
    for old in cache.parent.glob(f"{content}-*.npy"):
        if old != cache:
            old.unlink(missing_ok=True)  # a reader holding it open keeps its data


def _decode_all(root: Path, files: list[str], image_size: int) -> np.ndarray:
    paths = [root / "images" / f for f in files]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return np.stack(list(pool.map(lambda p: _decode(p, image_size), paths, chunksize=256)))


def load_dataset(root: Path | None = None, image_size: int = 64, cache_dir: Path | None = None) -> ICLEVRData:
    """Validate a data folder, decode its images once (cached on disk by content hash)."""
    root = resolve_data_root(root)
    vocabulary = load_vocabulary(root)
    annotations = read_annotations(root, vocabulary)
    files = sorted(annotations)
    content, stem = _cache_name(root, files, image_size)
    cache = Path(cache_dir or default_cache_dir() / "data") / f"{stem}.npy"
    if cache.is_file():
        images = np.load(cache)
    else:
        images = _decode_all(root, files, image_size)  # [N, 3, H, W] uint8
        try:
            with atomic_path(cache) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, images)
            _drop_stale(cache, content)
        except Exception:  # a read-only cache only costs the next load time
            pass
    labels = torch.from_numpy(np.stack([vocabulary.encode(annotations[f]) for f in files]))  # [N, 24]
    return ICLEVRData(root, vocabulary, tuple(files), torch.from_numpy(images), labels)


def scene_of(file_name: str) -> int:
    """Scene number of ``CLEVR_train_SCENE_STEP.png`` (the middle number)."""
    match = _SCENE.search(file_name)
    if not match:
        raise DatasetError(f"cannot read a scene number from {file_name!r}")
    return int(match.group(1))


def scene_key(file_name: str) -> str | int:
    """What a held-out split keeps together: the scene of an i-CLEVR file, else the file itself."""
    match = _SCENE.search(file_name)
    return int(match.group(1)) if match else file_name


def scene_split(files: tuple[str, ...] | list[str], holdout_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so that no held-out image shares a scene with a training image (files without a scene
    number, such as anime faces' ``ID.jpg``, are split one by one)."""
    keys = [scene_key(f) for f in files]
    if not all(isinstance(k, int) for k in keys):
        keys = list(range(len(files)))
    scenes = np.array(keys)
    unique = np.unique(scenes)
    rng = np.random.default_rng(seed)
    n_hold = max(1, int(round(len(unique) * holdout_fraction)))
    held = set(rng.choice(unique, size=n_hold, replace=False).tolist())
    mask = np.array([s in held for s in scenes])
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float32 in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def iterate_batches(data: ICLEVRData, batch_size: int, generator: torch.Generator,
                    drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of ``(images [B, 3, H, W] in [-1, 1], labels [B, 24])``."""
    order = torch.randperm(len(data), generator=generator)
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield to_float(data.images[idx]), data.labels[idx]
