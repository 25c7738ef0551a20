"""Files uploaded to the API and the console: read within the service's limits before any is stored."""

from fastapi import HTTPException, UploadFile, status

from cloud import media
from cloud.core.config import Settings
from cloud.tabular import Table, read_table


def read_upload(upload: UploadFile, settings: Settings) -> Table:
    """The upload's rows; 413 when it is larger than the service takes."""
    data = upload.file.read(settings.max_import_bytes + 1)
    if len(data) > settings.max_import_bytes:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"the file is larger than {settings.max_import_bytes} bytes; split it",
        )
    return read_table(data, max_rows=settings.max_import_rows)


def read_photo(upload: UploadFile, settings: Settings) -> bytes:
    """The uploaded photo's bytes; 413 when larger than the service takes, 422 when not an image."""
    data = upload.file.read(settings.max_attachment_bytes + 1)
    if len(data) > settings.max_attachment_bytes:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"a photo may be at most {settings.max_attachment_bytes} bytes",
        )
    media.image_type(data)
    return data
