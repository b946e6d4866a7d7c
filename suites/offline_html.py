"""Make an ``asv publish`` site work with no network: copy the vendored scripts and styles
(``suites/www``, see its VENDOR.md) beside it and point its pages at them.

Usage: ``python suites/offline_html.py .asv/html`` (``make asv`` runs it after publishing).
Exits 1 naming any page that still loads something from the network afterwards (a new asv
version that loads another file needs a line in ``LOCAL``). Importing this module (asv imports
every module of the benchmark folder) does nothing.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import sys
from pathlib import Path

WWW = Path(__file__).resolve().parent / "www"
#: CDN address in asv 0.6.6's pages -> the vendored file, relative to the site's vendor/
LOCAL = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js":
        "flot-0.8.3/jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js":
        "flot-0.8.3/jquery.flot.time.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        "flot-0.8.3/jquery.flot.selection.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        "flot-0.8.3/jquery.flot.categories.js",
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        "jquery.flot.orderBars-1.0.0.js",
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        "stupidtable-1.1.3.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js":
        "md5-2.19.0.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js":
        "bootstrap-3.1.1/js/bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        "bootstrap-3.1.1/css/bootstrap.min.css",
}
#: a page's own loads (src= and stylesheet href=); plain links to other sites stay links
LOADS = re.compile(r"""(?:src=|<link[^>]*href=)["'](https?://[^"']+)["']""")


def _integrity(tag: str, path: Path) -> str:
    """``tag`` with its integrity attribute set to the sha384 of ``path``."""
    digest = base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()
    return re.sub(r'integrity="[^"]*"', f'integrity="sha384-{digest}"', tag)


def make_offline(site: Path) -> list[str]:
    """Vendor the files into ``site/vendor`` and rewrite every page; returns the network
    loads that remain (none when the site is complete)."""
    if not (site / "index.html").exists():
        raise SystemExit(f"{site}/index.html is missing: run asv publish first")
    dst = site / "vendor"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(WWW, dst)
    left = []
    for page in sorted(site.rglob("*.html")):
        if dst in page.parents:
            continue
        text = page.read_text()
        up = "../" * (len(page.relative_to(site).parts) - 1)
        for url, local in LOCAL.items():
            # the tag's integrity hash was the CDN file's: make it the vendored file's
            tag = re.compile(r"<(?:script|link)[^>]*" + re.escape(url) + r"[^>]*>")
            text = tag.sub(lambda m, lo=local: _integrity(m.group(0), WWW / lo), text)
            text = text.replace(url, f"{up}vendor/{local}")
        page.write_text(text)
        left += [f"{page}: {u}" for u in LOADS.findall(text)]
    return left


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(next(ln for ln in __doc__.splitlines() if ln.startswith("Usage")), file=sys.stderr)
        return 2
    left = make_offline(Path(argv[0]))
    for line in left:
        print(f"still loaded from the network: {line}", file=sys.stderr)
    if not left:
        print(f"{argv[0]}: every script and style is local (vendor/)")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
