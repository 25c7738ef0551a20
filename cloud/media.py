"""Photos attached to work orders: type and size checked, stored on disk under the media directory."""

import hashlib
import os
import uuid
from pathlib import Path

from cloud.errors import InvalidInput

# The image types a phone's camera or a QR form sends, recognised by their first bytes, not by the name or
# the Content-Type a client claims.
IMAGE_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"WEBP", 8, "image/webp", "webp"),
)


class MediaTooLarge(InvalidInput):
    """The file is larger than the service takes."""


def image_type(data: bytes) -> tuple[str, str]:
    """(content type, extension) of an image; InvalidInput if it is not JPEG, PNG or WebP."""
    for magic, offset, content_type, extension in IMAGE_SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (extension != "webp" or data[:4] == b"RIFF"):
            return content_type, extension
    raise InvalidInput("a photo must be a JPEG, PNG or WebP image")


def store_photo(media_dir: str, order_id: int, data: bytes, *, max_bytes: int) -> tuple[str, str, str]:
    """Write a checked photo under the media directory; return (relative path, content type, sha256)."""
    if len(data) > max_bytes:
        raise MediaTooLarge(f"the photo is larger than {max_bytes} bytes")
    if not data:
        raise InvalidInput("the photo is empty")
    content_type, extension = image_type(data)
    relative = Path("work-orders") / str(order_id) / f"{uuid.uuid4().hex}.{extension}"
    target = Path(media_dir) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, target)
    return relative.as_posix(), content_type, hashlib.sha256(data).hexdigest()


def media_path(media_dir: str, relative: str) -> Path:
    """The file of a stored photo."""
    return Path(media_dir) / relative


def remove(media_dir: str, relative: str) -> None:
    """Delete a stored file if it is there (a write that failed after the file was stored)."""
    media_path(media_dir, relative).unlink(missing_ok=True)
