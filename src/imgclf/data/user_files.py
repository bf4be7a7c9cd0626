"""Files a user hands over, opened safely: archives and JPEG/PNG images.

Archives are extracted with no link and no path outside the target folder; images are decoded
within PIL's decompression-bomb limit, EXIF-rotated and converted to 8-bit RGB (or grey). Apart
from `folder.py` (the train/<class>/<image> layout of a data set) because predict opens the same
archives and images without any layout.
"""

from __future__ import annotations

import re
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgclf.errors import ImgclfError

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
ZIP_SUFFIXES = (".zip",)
ACCEPTED_FORMATS = ("JPEG", "PNG")
# Folders that archivers add and that are never classes or data.
IGNORED_FOLDERS = frozenset({"__MACOSX"})
SIXTEEN_BIT_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# PIL's decoders release the GIL, so a few threads keep two cores busy; more only add switching.
DECODE_WORKERS = 4
LAYOUT_HINT = (
    "Lay the data out as train/<class>/<image> (and optionally test/<class>/<image>) and point "
    "data.path at that folder or at a .tar.gz/.tgz/.tar/.zip archive of it."
)


# The folder source raises it too (and tells the layout): it lives here, the lower module.
class FolderFormatError(ImgclfError, ValueError):
    """A folder data set, or one of its files, does not have the expected layout or content."""


def is_archive(path: Path) -> bool:
    """Whether the name says tar (optionally gzipped) or zip archive."""
    return path.name.lower().endswith(TAR_SUFFIXES + ZIP_SUFFIXES)


def extract_archive(archive: Path, destination: Path) -> None:
    """Safely extract a tar or zip archive into `destination`: no links, nothing outside it."""
    destination.mkdir(parents=True, exist_ok=True)
    if archive.name.lower().endswith(TAR_SUFFIXES):
        _extract_tar_safely(archive, destination)
    else:
        _extract_zip_safely(archive, destination)


def _extract_tar_safely(archive: Path, destination: Path) -> None:
    """Extract a tar archive, refusing it whole if any member could land outside `destination`."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            # Check every member before writing any, so a refused archive leaves nothing behind.
            for member in members:
                try:
                    filtered = tarfile.data_filter(member, str(destination))
                except tarfile.FilterError as error:
                    raise _refuse_member(archive, member.name, str(error)) from error
                if filtered.name != member.name:  # the filter strips a leading "/"
                    raise _refuse_member(archive, member.name, "its path is absolute")
            tar.extractall(destination, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise FolderFormatError(
            f"{archive} is not a readable tar archive ({error}). {LAYOUT_HINT}"
        ) from error


def _extract_zip_safely(archive: Path, destination: Path) -> None:
    """Extract a zip archive, refusing links and names that escape `destination`."""
    root = destination.resolve()
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                _check_zip_member(member, root, archive)
            bundle.extractall(destination, members=members)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as error:
        raise FolderFormatError(
            f"{archive} is not a readable zip archive ({error}). {LAYOUT_HINT}"
        ) from error


def _check_zip_member(member: zipfile.ZipInfo, root: Path, archive: Path) -> None:
    """Raise if a zip member is a link or its name would resolve outside `root`."""
    if stat.S_ISLNK(member.external_attr >> 16):
        raise _refuse_member(archive, member.filename, "symbolic links are not allowed")
    name = member.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in name.split("/"):
        raise _refuse_member(archive, member.filename, "its path leaves the extraction folder")
    if not (root / name).resolve().is_relative_to(root):
        raise _refuse_member(archive, member.filename, "its path leaves the extraction folder")


def _refuse_member(archive: Path, member_name: str, reason: str) -> FolderFormatError:
    """Build the error for an archive member that is not safe to extract."""
    return FolderFormatError(
        f"{archive}: refused to extract member {member_name!r} ({reason}); nothing was "
        "extracted. Rebuild the archive with plain relative paths and no links."
    )


def decode_image(path: Path, size: tuple[int, int] | None = None, channels: int = 3) -> np.ndarray:
    """Decode one JPEG or PNG file into uint8 [H, W, channels] (RGB, or grey for 1 channel).

    EXIF orientation is applied; grey, palette, RGBA and 16-bit images are converted; with
    `size` (height, width) the image is resized bilinearly, as the folder source does.
    """
    if channels not in (1, 3):
        raise FolderFormatError(f"images decode to 1 or 3 channels, not {channels}")
    try:
        with Image.open(path, formats=ACCEPTED_FORMATS) as image:
            _refuse_oversized(image, path)
            if size is not None:
                # Lets the JPEG decoder shrink big photos by 1/2..1/8 while decoding.
                image.draft("RGB", (size[1], size[0]))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb = _convert_to_rgb(image)
    except FolderFormatError:
        raise
    except Image.DecompressionBombError as error:
        raise _oversized_error(path, str(error)) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise FolderFormatError(
            f"{path} is not a readable JPEG or PNG image ({error}). Replace or remove it."
        ) from error
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    if channels == 1:
        return np.asarray(rgb.convert("L"), dtype=np.uint8)[..., np.newaxis]
    return np.asarray(rgb, dtype=np.uint8)


def _refuse_oversized(image: Image.Image, path: Path) -> None:
    """Raise before decoding an image with more pixels than PIL's bomb limit allows."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise _oversized_error(path, f"{image.width}x{image.height} exceeds {limit} pixels")


def _oversized_error(path: Path, reason: str) -> FolderFormatError:
    """Build the error for an image too large to decode safely."""
    return FolderFormatError(
        f"{path} is too large to decode safely ({reason}); it may be a decompression bomb. "
        "Shrink or remove it."
    )


def _convert_to_rgb(image: Image.Image) -> Image.Image:
    """Return an 8-bit RGB version of an image in any PNG or JPEG mode."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_GRAY_MODES:
        # PIL's own conversion clips 16-bit values at 255 instead of rescaling them.
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        gray = ((values + 128) // 257).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ("P", "PA"):
        # Via RGBA, as PIL asks for palettes with transparency; the alpha is dropped either way.
        image = image.convert("RGBA")
    return image.convert("RGB")
