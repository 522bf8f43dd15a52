"""Make the README's screenshot of a real report: docs/report.png (kept under 200 kB).

    python scripts/report_screenshot.py [--clip examples/clips/accordion_trumpet_async.mp4] [--out docs/report.png]

Runs ``avscene report --separate`` with the bundled model on an example clip, opens the
page in headless Chromium at 1280 px wide, and keeps the top of the page (classes and
timeline), scaled down, as an optimised PNG.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = 200_000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=REPO / "examples" / "clips" / "accordion_trumpet_async.mp4")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    ap.add_argument("--height", type=int, default=1100, help="CSS pixels of the page kept, from the top "
                    "(the classes and the timeline; not the machine paths of \"How this was made\")")
    ap.add_argument("--width", type=int, default=960, help="width of the PNG")
    args = ap.parse_args()
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        sys.exit("Chromium is needed: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / f"{args.clip.stem}.html"
        subprocess.run([sys.executable, "-m", "avscene", "report", str(args.clip), "-o", str(page), "--separate",
                        "--offline"], check=True, cwd=REPO)
        shot = Path(tmp) / "shot.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--virtual-time-budget=5000", f"--window-size=1280,{args.height}", f"--screenshot={shot}",
                        page.as_uri()], check=True, capture_output=True)
        img = cv2.imread(str(shot))
    h, w = img.shape[:2]
    img = cv2.resize(img, (args.width, round(h * args.width / w)), interpolation=cv2.INTER_AREA)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    size = args.out.stat().st_size
    print(f"{args.out}: {img.shape[1]}x{img.shape[0]}, {size / 1000:.0f} kB")
    return 0 if size <= MAX_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
