"""A user's images: a folder of class folders of image files, or an ``.npz`` of images and labels.

Everything comes out as the registry's images do, uint8 (N, C, H, W), at one square size chosen
from the data: the median of the images' shorter sides, capped at ``IMAGE_SIZE_CAP`` (32 px, the
LEMONADE paper's resolution, so candidates stay quick to train; ``--image-size`` chooses another).
Shrinking uses Pillow's BOX filter (area averaging, as the registry's folders), enlarging BILINEAR.

Channels are kept: a dataset of grayscale images stays one channel; one with any colour image is
RGB (grayscale images repeated into three channels). Alpha is kept as a channel only when it
means something for the whole dataset: every image has one and some pixel is not opaque (masks,
cut-outs). Otherwise it is dropped; images that had a transparent part are composited onto black
first, so what was transparent reads the same in every image instead of as whatever colour the
file stored under it. 16-bit grayscale is scaled to 8 bits; EXIF orientation is applied.

A folder holds one folder per class (``cells/Parasitized/*.png``, images at any depth below it),
or ``train/``, ``validation/`` and ``test/`` folders of class folders, which are then the data's
own splits. Hidden files are left out; other files that are not images are named in a warning;
images that cannot be decoded are skipped and named in a warning.
"""

from __future__ import annotations

import logging
import os
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from archsmith.data.common import LoadedDataset, Source, npz_splits, split_rows
from archsmith.data.images import IMAGE_SUFFIXES
from archsmith.data.splits import TRAIN, split_code
from archsmith.data.user import (
    MIN_PER_CLASS,
    DatasetRef,
    check_classes,
    class_ids,
    few,
    report_skipped,
    user_meta,
)
from archsmith.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["IMAGE_SIZE_CAP", "load_folder", "load_npz", "locate_folder", "locate_npz"]

logger = logging.getLogger(__name__)

#: The largest side chosen from the data: the paper's 32x32 (``--image-size`` goes past it).
IMAGE_SIZE_CAP = 32
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
#: Files operating systems leave in folders; never data, so not worth a warning.
_JUNK = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
_NPZ_KEYS = ("images", "labels", "label_names", "split", "split_names")
_OPAQUE = 255

Pixels = npt.NDArray[np.uint8]


def _visible(name: str) -> bool:
    return not name.startswith(".") and name.lower() not in _JUNK


def _threads() -> int:
    """Pillow releases the GIL while it decodes and resizes, so a few threads pay off."""
    return min(8, os.cpu_count() or 1)


def _unreadable() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file it cannot read: broken headers raise SyntaxError in some
    plugins and struct.error in others; a decompression bomb is refused, never decoded."""
    from PIL import Image

    return (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


def _why(e: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "not an image Pillow can read"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:100]}" if text else type(e).__name__


# --- finding the files ----------------------------------------------------------------------


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if _visible(p.name))
    except OSError as e:
        raise InputError(f"cannot list the folder {folder}: {e.strerror}") from e


def _walk(folder: Path, images: list[Path], others: list[Path], bad: list[str]) -> None:
    """Image files at any depth below ``folder`` (hidden ones left out), the other files, and
    the folders that could not be listed."""

    def note(e: OSError) -> None:
        bad.append(f"{e.filename} ({e.strerror})")

    for where, dirs, names in os.walk(folder, onerror=note):
        dirs[:] = sorted(d for d in dirs if _visible(d))
        for name in sorted(names):
            if _visible(name):
                path = Path(where) / name
                (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)


def _fix(root: Path) -> str:
    return (
        f"Give each class a folder of at least {MIN_PER_CLASS} images named after the class"
        f" ({root}/<class>/*.png), and remove the folders of classes you do not want."
    )


def _classes(root: Path, files: list[Path]) -> tuple[list[str], npt.NDArray[np.int64] | None]:
    """Each file's class (its folder below ``root``, or below a split folder) and split code."""
    parts = [f.relative_to(root).parts for f in files]
    if parts and split_code(parts[0][0]) is not None:
        codes = [split_code(p[0]) for p in parts]
        return [p[1] for p in parts], np.array(codes, dtype=np.int64)
    return [p[0] for p in parts], None


def _labels(
    root: Path, files: list[Path], names: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], npt.NDArray[np.int64], npt.NDArray[np.int64] | None]:
    classes, given = _classes(root, files)
    names = names or tuple(sorted(set(classes)))
    index = {c: i for i, c in enumerate(names)}
    return names, np.array([index[c] for c in classes], dtype=np.int64), given


def locate_folder(ref: DatasetRef) -> Source:
    """The image files of a folder of class folders, checked before any is decoded: an empty
    folder, images outside class folders, one class or a class too small stop here."""
    root = ref.path
    entries = _children(root)
    dirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if not p.is_dir()]
    if not dirs:
        pictures = [p.name for p in loose if p.suffix.lower() in IMAGE_SUFFIXES]
        held = (
            f"holds {len(pictures)} images ({few(pictures)}) but no class folders"
            if pictures
            else "is empty"
            if not loose
            else f"holds no class folders, only {few([p.name for p in loose])}"
        )
        raise InputError(f"the image folder {root} {held}. {_fix(root)}")
    split_dirs = [d for d in dirs if split_code(d.name) is not None]
    if split_dirs and len(split_dirs) != len(dirs):
        rest = [d.name for d in dirs if d not in split_dirs]
        raise InputError(
            f"{root} mixes split folders ({few([d.name for d in split_dirs])}) with other folders"
            f" ({few(rest)}); put every class folder under train/, validation/ and test/, or"
            " none (archsmith then splits the data itself)"
        )
    class_dirs = dirs
    if split_dirs:
        if not any(split_code(d.name) == TRAIN for d in split_dirs):
            raise InputError(
                f"{root} has split folders ({few([d.name for d in split_dirs])}) but no train/"
                " folder; the training split needs one"
            )
        inside = [c for d in split_dirs for c in _children(d)]
        class_dirs = [c for c in inside if c.is_dir()]
        loose += [c for c in inside if not c.is_dir()]
    images: list[Path] = []
    others: list[Path] = list(loose)
    bad: list[str] = []
    for folder in class_dirs:
        _walk(folder, images, others, bad)
    names = tuple(sorted({d.name for d in class_dirs}))
    _, labels, given = _labels(root, images, names)
    check_classes(labels, names, given, str(root), fix=_fix(root))
    notes = []
    if others:
        listed = few([str(p.relative_to(root)) for p in others])
        notes.append(
            f"{root}: ignored {len(others)} file(s) that are not images by their suffix, or not"
            f" in a class folder: {listed}"
        )
    if bad:
        notes.append(f"{root}: could not list {len(bad)} folder(s): {few(bad)}")
    return Source("image-folder", root, tuple(images), content=True, notes=tuple(notes))


def locate_npz(ref: DatasetRef) -> Source:
    return Source("image-npz", ref.path, content=True)


# --- size, channels, alpha ------------------------------------------------------------------


def _choose_size(sides: list[tuple[int, int]], asked: int | None) -> tuple[int, str]:
    """The square size the images are brought to, and the sentence that says why."""
    if asked is not None:
        return asked, f"Images resized to {asked}x{asked} px, as --image-size asked."
    shorter = [min(w, h) for w, h in sides]
    median = int(np.median(shorter))
    size = max(1, min(IMAGE_SIZE_CAP, median))
    rule = (
        f"the median of the images' shorter sides ({median} px), capped at {IMAGE_SIZE_CAP} px"
        " (the LEMONADE paper's resolution, which keeps candidates quick to train);"
        " --image-size N chooses another"
    )
    if all(w == h == size for w, h in sides):
        return size, f"Images kept at {size}x{size} px, the size of every one: {rule}."
    lo, hi = min(shorter), max(shorter)
    return size, f"Images resized to {size}x{size} px (shorter sides {lo}-{hi} px): {rule}."


def _resample(image: Image.Image, size: int) -> Image.Image:
    from PIL import Image

    if image.size == (size, size):
        return image
    shrink = image.width >= size and image.height >= size
    return image.resize((size, size), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)


def _composite(pixels: Pixels) -> Pixels:
    """Colour (or gray) and alpha composited onto black: the alpha channel is gone."""
    alpha = pixels[..., -1:].astype(np.uint16)
    return ((pixels[..., :-1].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def _settle_alpha(
    x: Pixels, kept: bool, with_alpha: int = 0, total: int = 0
) -> tuple[Pixels, str | None]:
    """Drop an alpha channel that is opaque everywhere; the sentence about alpha, if any.

    ``kept``: every image has alpha (the last channel); else ``with_alpha`` of the ``total``
    images had one and were composited onto black."""
    if kept and bool((x[..., -1] == _OPAQUE).all()):
        return x[..., :-1], (
            "Alpha dropped: every image has an alpha channel, but it is fully opaque in all."
        )
    if kept:
        return x, (
            f"Alpha kept as channel {x.shape[-1]}: every image has one and some pixels are"
            " transparent."
        )
    if with_alpha:
        return x, (
            f"Alpha dropped: {with_alpha} of the {total} images have an alpha channel, not all;"
            " their transparent parts were composited onto black."
        )
    return x, None


def _channel_note(gray: bool, grays: int, total: int) -> str:
    if gray:
        return "1 channel: every image is grayscale."
    tail = f"; the {grays} grayscale ones were repeated into 3 channels" if grays else ""
    return f"3 channels (RGB): the images are in colour{tail}."


# --- decoding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    gray: bool
    alpha: bool


def _header(path: Path) -> _Header | str:
    """Size and kind of an image from its header (no pixels decoded), or why it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            w, h = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
            return _Header(w, h, image.mode in _GRAY_MODES, image.has_transparency_data)
    except _unreadable() as e:
        return _why(e)


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale scaled to 0..255 (Pillow's own conversion clips instead)."""
    from PIL import Image

    wide = np.asarray(image).astype(np.uint32)
    return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")


def _decode(path: Path, size: int, gray: bool, keep_alpha: bool) -> Pixels:
    """One image as (size, size, channels) uint8: 1 or 3 channels, plus alpha when kept."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()
        alpha = opened.has_transparency_data
        image = ImageOps.exif_transpose(opened)
        if image.mode in _SIXTEEN_BIT:
            image = _eight_bit(image)
        base = "L" if gray else "RGB"
        image = _resample(image.convert(base + "A" if alpha or keep_alpha else base), size)
    pixels = np.asarray(image, dtype=np.uint8).reshape(size, size, -1)
    if alpha and not keep_alpha:
        pixels = _composite(pixels)
    return pixels


def load_folder(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """Decode, bring to one size and split a folder's images; unreadable ones are skipped."""
    if source.path is None:
        raise ValueError("an image folder source needs a path")
    root = source.path
    files = list(source.files)
    names, labels, given = _labels(root, files)
    relative = [str(f.relative_to(root)) for f in files]
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        headers = list(pool.map(_header, files))
    readable = [h for h in headers if isinstance(h, _Header)]
    if not readable:
        raise InputError(
            f"{root}: none of its {len(files)} image files can be read"
            f" ({few([f'{r} ({h})' for r, h in zip(relative, headers, strict=True)])})"
        )
    size, size_note = _choose_size(
        [(h.width, h.height) for h in readable], options.get("image_size")
    )
    gray = all(h.gray for h in readable)
    keep_alpha = all(h.alpha for h in readable)
    out = np.empty((len(files), size, size, (1 if gray else 3) + keep_alpha), dtype=np.uint8)

    def fill(i: int) -> str | None:
        header = headers[i]
        if not isinstance(header, _Header):
            return header
        try:
            out[i] = _decode(files[i], size, gray, keep_alpha)
        except _unreadable() as e:
            return _why(e)
        return None

    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        errors = list(pool.map(fill, range(len(files))))
    keep = np.array([e is None for e in errors], dtype=bool)
    skipped = [(r, e) for r, e in zip(relative, errors, strict=True) if e is not None]
    lost = np.bincount(labels[~keep], minlength=len(names)).tolist()
    kept_given = None if given is None else given[keep]
    warnings = check_classes(
        labels[keep], names, kept_given, str(root), fix=_fix(root), unreadable=lost
    )
    decoded = [h for h, k in zip(headers, keep, strict=True) if k and isinstance(h, _Header)]
    x, alpha_note = _settle_alpha(
        out[keep], keep_alpha, sum(h.alpha for h in decoded), len(decoded)
    )
    grays = sum(h.gray for h in decoded)
    counts = np.bincount(labels[keep], minlength=len(names))
    notes = [
        f"Your images: {int(keep.sum()):,} in {len(names)} class folders of {root}"
        + (", in its own train/validation/test folders" if given is not None else "")
        + (f"; {len(skipped)} unreadable file(s) skipped" if skipped else "")
        + ".",
        f"Classes from the folder names: {few(list(names), limit=10)}; the smallest has"
        f" {int(counts.min())} images (each needs at least {MIN_PER_CLASS}, so every split gets"
        " one).",
        size_note,
        _channel_note(gray, grays, len(decoded)),
    ]
    warned = report_skipped(str(root), "image file", skipped)
    loaded = split_rows(
        _channels_first(x), labels[keep], names, str(root), seed=seed, given=kept_given
    )
    return replace(
        loaded,
        extra_meta=user_meta(
            [*notes, alpha_note], [*source.notes, *([warned] if warned else []), *warnings], skipped
        ),
    )


def _channels_first(x: Pixels) -> Pixels:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# --- npz ------------------------------------------------------------------------------------


def _read_npz(path: Path) -> dict[str, npt.NDArray[Any]]:
    """The arrays archsmith reads from a user's npz, each read on its own so an unreadable one
    is named; a file without ``images`` and ``labels`` says how to save one."""
    how = f"save one with numpy.savez({path.name!r}, images=images, labels=labels)"
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read {path} as an .npz archive ({e}); {how}") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError(f"{path} holds a single array, not an .npz of images and labels; {how}")
    with archive:
        missing = [k for k in ("images", "labels") if k not in archive.files]
        if missing:
            raise InputError(
                f"{path} has no {' and no '.join(repr(k) for k in missing)} array (it has"
                f" {', '.join(repr(k) for k in sorted(archive.files)) or 'none'}); {how}, images as"
                " (N, H, W) or (N, H, W, C) and one label per image"
            )
        arrays: dict[str, npt.NDArray[Any]] = {}
        for key in (k for k in _NPZ_KEYS if k in archive.files):
            try:
                arrays[key] = np.asarray(archive[key])
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise InputError(
                    f"{path}: cannot read its array {key!r} ({e}). numpy saves labels of mixed"
                    " types (numbers and text) or images of different sizes as Python objects,"
                    " which archsmith does not unpickle; store labels all as integers or all as"
                    " strings, and images as one (N, H, W[, C]) array"
                ) from e
    return arrays


def _as_uint8(images: npt.NDArray[Any], path: Path) -> tuple[Pixels, str | None]:
    """Pixel values as uint8 0..255, and how they were read when they were not uint8."""
    kind = images.dtype.kind
    if images.dtype == np.uint8:
        return images, None
    if kind == "b":
        return images.astype(np.uint8) * 255, "Boolean images read as 0 and 255."
    if kind not in "iuf":
        raise InputError(f"{path}: images of dtype {images.dtype} are not pixels; store uint8")
    if kind == "f" and not np.isfinite(images).all():
        raise InputError(f"{path}: images hold NaN or infinite values; store uint8 pixels")
    lo, hi = float(images.min()), float(images.max())
    if kind == "f" and lo >= 0 and hi <= 1:
        scaled = np.rint(images * 255.0).astype(np.uint8)
        return scaled, "Float images in 0..1 read as 0..255."
    if lo >= 0 and hi <= 255:
        return np.rint(images).astype(np.uint8), f"{images.dtype} images read as uint8."
    if kind in "iu" and lo >= 0 and hi <= 65535:
        scaled = ((images.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return scaled, "16-bit images scaled to 8 bits."
    raise InputError(
        f"{path}: image values run from {lo:g} to {hi:g}; store raw pixels (uint8 0..255, or"
        " floats in 0..1), not normalised ones"
    )


def _pixels(images: npt.NDArray[Any], path: Path) -> tuple[Pixels, str | None]:
    """(N, H, W, C) uint8 from (N, H, W) or (N, H, W, C)."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 2, 3, 4):
        hint = (
            "; channels-first (N, C, H, W) images need np.moveaxis(images, 1, -1) first"
            if images.ndim == 4 and images.shape[1] in (1, 2, 3, 4)
            else ""
        )
        raise InputError(
            f"{path}: images must be (N, H, W) or (N, H, W, C) with 1 to 4 channels, not"
            f" {tuple(images.shape)}{hint}"
        )
    if len(images) == 0:
        raise InputError(f"{path} holds no images")
    return _as_uint8(images, path)


def _npz_labels(
    arrays: dict[str, npt.NDArray[Any]], path: Path, rows: int
) -> tuple[npt.NDArray[np.int64], tuple[str, ...], str]:
    """Class ids, class names and where the names came from."""
    labels = arrays["labels"]
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise InputError(
            f"{path}: labels must hold one label per image, shape (N,), not"
            f" {tuple(labels.shape)}; one-hot labels can be saved as labels.argmax(1)"
        )
    if len(labels) != rows:
        raise InputError(f"{path}: {rows} images but {len(labels)} labels")
    names = arrays.get("label_names")
    kind = labels.dtype.kind
    if kind in "US":
        if names is not None:
            raise InputError(
                f"{path}: labels are names already; label_names is for integer labels, remove it"
            )
        values = [str(v).strip() for v in labels.tolist()]
        empty = [i for i, v in enumerate(values) if not v]
        if empty:
            rows_named = few([str(i) for i in empty])
            raise InputError(f"{path}: {len(empty)} labels are empty (rows {rows_named})")
        ids, classes = class_ids(values, str(path))
        return ids, classes, "the label strings, sorted"
    if kind == "f":
        if not (np.isfinite(labels).all() and (labels == np.round(labels)).all()):
            raise InputError(
                f"{path}: labels hold fractions (e.g. {labels[labels != np.round(labels)][:1]});"
                " labels are classes, integers or names, not values to regress"
            )
        labels = labels.astype(np.int64)
    elif kind not in "iub":
        raise InputError(f"{path}: labels of dtype {labels.dtype}; store integers or strings")
    ints = labels.astype(np.int64)
    if len(ints) and int(ints.min()) < 0:
        raise InputError(f"{path}: labels must not be negative (found {int(ints.min())})")
    if names is None:
        ids, classes = class_ids(ints.tolist(), str(path))
        return ids, classes, "the label numbers, sorted"
    listed = tuple(str(n) for n in names.ravel().tolist())
    if len(ints) and int(ints.max()) >= len(listed):
        raise InputError(
            f"{path}: label {int(ints.max())} has no name; label_names lists {len(listed)}"
        )
    if len(set(listed)) != len(listed):
        raise InputError(f"{path}: label_names repeats a name: {few(list(listed))}")
    return ints, listed, "label_names"


def _resize_all(x: Pixels, size: int) -> Pixels:
    from PIL import Image

    if x.shape[1:3] == (size, size):
        return x
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[x.shape[-1]]
    out = np.empty((len(x), size, size, x.shape[-1]), dtype=np.uint8)
    for i, pixels in enumerate(x):
        image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
        out[i] = np.asarray(_resample(image, size), dtype=np.uint8).reshape(size, size, -1)
    return out


def load_npz(source: Source, seed: int, options: dict[str, int]) -> LoadedDataset:
    """An npz's images and labels, in its own split (``split`` + ``split_names``) if it has one."""
    if source.path is None:
        raise ValueError("an npz source needs a path")
    path = source.path
    arrays = _read_npz(path)
    x, dtype_note = _pixels(arrays["images"], path)
    ids, names, named_by = _npz_labels(arrays, path, len(x))
    given = npz_splits(path, arrays, len(x))
    fix = "Add examples of those classes, or drop their rows and labels."
    warnings = check_classes(ids, names, given, str(path), fix=fix)
    _, h, w, c = x.shape
    size, size_note = _choose_size([(w, h)], options.get("image_size"))
    x, alpha_note = _settle_alpha(_resize_all(x, size), c in (2, 4))
    counts = np.bincount(ids, minlength=len(names))
    notes = [
        f"Your images: {len(x):,} from {path}"
        + (", in its own split" if given is not None else "")
        + ".",
        f"Classes from {named_by}: {few(list(names), limit=10)}; the smallest has"
        f" {int(counts.min())} images (each needs at least {MIN_PER_CLASS}, so every split gets"
        " one).",
        size_note,
        "1 channel: the images are grayscale." if c in (1, 2) else "3 channels (RGB).",
        alpha_note,
        dtype_note,
    ]
    loaded = split_rows(_channels_first(x), ids, names, str(path), seed=seed, given=given)
    return replace(loaded, extra_meta=user_meta(notes, warnings, []))
