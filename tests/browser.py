"""Headless Chromium for the report's tests: screenshot, print to PDF, and measure overflow.

Printing uses Chromium's own command line (`--print-to-pdf`), as an officer's "Save as PDF"
does; pages are counted with poppler's `pdfinfo`. Overflow is measured in the page itself over
the DevTools protocol: print media emulated at the width of the A4 text block, every element's
box compared with the page width.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A4 is 210 mm wide; the report's @page margins are 14 mm each side: 182 mm of text, at CSS's
# 96 px per inch.
A4_TEXT_WIDTH_PX = round(182 / 25.4 * 96)

OVERFLOW_SCRIPT = """(() => {
  const width = document.documentElement.clientWidth;
  const bad = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.right > width + 1 || box.left < -1) {
      const name = `${el.tagName.toLowerCase()}.${el.getAttribute('class') || ''}`;
      bad.push(`${name} right=${Math.round(box.right)}`);
    }
  }
  return JSON.stringify({width, scroll_width: document.documentElement.scrollWidth, bad});
})()"""


def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "Debian's chromium is needed for this test; `make test` installs it"
    return found


def _run(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def dump_dom(page: Path, profile: Path, *flags: str) -> str:
    return _run(profile, *flags, "--dump-dom", page.as_uri()).stdout


def screenshot(page: Path, out: Path, profile: Path, size: str = "1200,2400") -> Path:
    _run(profile, f"--window-size={size}", f"--screenshot={out}", page.as_uri())
    return out


def print_pdf(page: Path, out: Path, profile: Path) -> Path:
    _run(profile, "--no-pdf-header-footer", f"--print-to-pdf={out}", page.as_uri())
    return out


def pdf_info(pdf: Path) -> dict[str, str]:
    assert shutil.which("pdfinfo"), "poppler-utils is needed for this test; `make test` installs it"
    text = subprocess.run(
        ["pdfinfo", str(pdf)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return dict(
        (key.strip(), value.strip())
        for key, value in (line.split(":", 1) for line in text.splitlines() if ":" in line)
    )


def pdf_text(pdf: Path) -> list[str]:
    """Text of each page (pdftotext separates pages with a form feed)."""
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True,
        timeout=60,
    ).stdout
    return text.split("\f")[:-1]


def is_a4(info: dict[str, str]) -> bool:
    """pdfinfo's "Page size: 594.96 x 841.92 pts (A4)"."""
    sizes = re.findall(r"[\d.]+", info.get("Page size", ""))
    return len(sizes) >= 2 and abs(float(sizes[0]) - 595.3) < 2 and abs(float(sizes[1]) - 841.9) < 2


def print_overflow(page: Path, profile: Path, width: int = A4_TEXT_WIDTH_PX) -> dict:
    """Elements wider than the A4 text block when the page is laid out for print."""
    from websockets.sync.client import connect

    port_file = profile / "DevToolsActivePort"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [chromium(), *FLAGS, "--hide-scrollbars", f"--user-data-dir={profile}",
         "--remote-debugging-port=0",
         "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30) as ws:
            ids = iter(range(1, 10_000))

            def call(method: str, session: str | None = None, **params) -> dict:
                message = {"id": next(ids), "method": method, "params": params}
                if session:
                    message["sessionId"] = session
                ws.send(json.dumps(message))
                while True:
                    reply = json.loads(ws.recv(timeout=60))
                    if reply.get("id") == message["id"]:
                        assert "error" not in reply, reply["error"]
                        return reply["result"]

            target = call("Target.createTarget", url="about:blank")["targetId"]
            session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            call("Emulation.setEmulatedMedia", session, media="print")
            call(
                "Emulation.setDeviceMetricsOverride", session,
                width=width, height=1100, deviceScaleFactor=1, mobile=False,
            )
            call("Page.navigate", session, url=page.as_uri())
            while True:
                state = call(
                    "Runtime.evaluate", session, expression="document.readyState"
                )["result"]["value"]
                if state == "complete":
                    break
                assert time.monotonic() < deadline, "the report did not finish loading"
                time.sleep(0.1)
            found = call(
                "Runtime.evaluate", session, expression=OVERFLOW_SCRIPT, returnByValue=True
            )
            return json.loads(found["result"]["value"])
    finally:
        process.terminate()
        process.wait(timeout=30)
