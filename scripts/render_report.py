"""Render a run's report.html in headless Chromium to a PNG, to look at it as a reader would.

    python scripts/render_report.py runs/demo            # writes runs/demo/report.png

Needs a Chromium binary (Debian: `apt-get install chromium`). The page is standalone (its plots
are embedded), so no server and no network are involved.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def render(html: Path, png: Path, width: int = 1200, height: int = 3000) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no Chromium found: install it (Debian: apt-get install chromium) and run again")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    return png


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory holding report.html")
    parser.add_argument("--output", type=Path, default=None, help="PNG path (default: RUN/report.png)")
    args = parser.parse_args()
    html = args.run / "report.html"
    if not html.is_file():
        print(f"{html} not found: run `translator evaluate --run {args.run}` first", file=sys.stderr)
        return 2
    print(render(html, args.output or args.run / "report.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
