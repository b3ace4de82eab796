"""Rasterise public/icons/favicon.svg into the PNG icons of the manifest with
Debian's Chromium (run once when the icon changes; the PNGs are committed).

    ../.venv/bin/python scripts/make_icons.py
"""

from pathlib import Path

from playwright.sync_api import sync_playwright

ICONS = Path(__file__).resolve().parent.parent / "public" / "icons"
SVG = (ICONS / "favicon.svg").read_text()
# size, file, padding (maskable icons keep the artwork in the 80 % safe zone)
TARGETS = [(192, "icon-192.png", 0), (512, "icon-512.png", 0), (512, "maskable-512.png", 0.12), (180, "apple-touch-icon.png", 0)]

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
    for size, name, pad in TARGETS:
        page = browser.new_page(viewport={"width": size, "height": size}, device_scale_factor=1)
        inner = int(size * (1 - 2 * pad))
        svg = SVG.replace('rx="112"', 'rx="0"') if pad or name.startswith("apple") else SVG
        page.set_content(
            f'<html><body style="margin:0;background:#0b0f14;display:grid;place-items:center;height:{size}px">'
            f'<div style="width:{inner}px;height:{inner}px">{svg.replace("<svg ", f"<svg width={inner} height={inner} ")}</div></body></html>'
        )
        page.screenshot(path=str(ICONS / name), omit_background=False)
        page.close()
    browser.close()
print("icons written to", ICONS)
