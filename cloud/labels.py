"""QR labels to stick on devices: the code opens the device's page and its fault-report form."""

import io
from html import escape

import segno

from cloud.models import Device

QR_SCALE = 4
QR_BORDER = 2
LABEL_TEXT_HEIGHT = 16


def device_url(public_base_url: str, device_id: str) -> str:
    """The address a device's label points at."""
    return f"{public_base_url}/d/{device_id}"


def _qr(url: str) -> segno.QRCode:
    return segno.make(url, error="m", micro=False)


def label_png(url: str) -> bytes:
    """The QR code of `url` as a PNG."""
    out = io.BytesIO()
    _qr(url).save(out, kind="png", scale=QR_SCALE * 2, border=QR_BORDER)
    return out.getvalue()


def label_svg(url: str, device: Device) -> str:
    """An SVG label: the QR code of `url` above the device id, asset tag and model."""
    qr = _qr(url)
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=QR_SCALE, border=QR_BORDER, xmldecl=False, svgns=False, nl=False)
    size, _ = qr.symbol_size(scale=QR_SCALE, border=QR_BORDER)
    lines = [device.id]
    if device.asset_tag:
        lines.append(f"asset {device.asset_tag}")
    if device.model or device.vendor:
        lines.append(" ".join(part for part in (device.vendor, device.model) if part))
    width = max(size, 8 * max(len(line) for line in lines))
    height = size + LABEL_TEXT_HEIGHT * len(lines) + 4
    texts = "".join(
        f'<text x="{width // 2}" y="{size + LABEL_TEXT_HEIGHT * (n + 1)}" text-anchor="middle" '
        f'font-family="monospace" font-size="12">{escape(line)}</text>'
        for n, line in enumerate(lines)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
        f"<title>{escape(url)}</title>"
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<g transform="translate({(width - size) // 2},0)">{out.getvalue().decode()}</g>'
        f"{texts}</svg>"
    )
