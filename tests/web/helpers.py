"""What the console's browser tests share: the browser, the screen sizes, and saving screenshots."""

import os
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
UPDATE_DOCS_ENV = "CLASSOPS_UPDATE_SCREENSHOTS"
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 860}


def screenshot(page: Any, name: str) -> None:
    """Save a full-page screenshot as a test artefact, and under docs/ when asked to refresh those."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get(UPDATE_DOCS_ENV) == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)
