"""Look at the built documentation site the way a reader does: screenshots and cut-off content.

Builds nothing itself: ``scripts/screenshots.sh`` builds the site with ``mkdocs build --strict``
and then runs this with the site directory. For every page of the site it

* takes a full-page screenshot in headless Chromium at 1280 px wide (``<out>/<page>.png``),
  as the page first shows (collapsed blocks closed, the first tab of each tab group);
* reports what a reader at that width cannot see or read whole:

  - a code block whose longest line is wider than the block (the reader must scroll it);
  - a table wider than the text column;
  - inline code in a table cell that the browser broke in the middle of a word;
  - a picture shown at less than half its own width without a link to the full-size file.

It prints one line per page (height in screens of 900 px, and the problems found) and exits 1
if any page has a problem, so it can serve as a check. Chromium comes from Debian's
``chromium`` package, driven through Playwright (``pip install playwright``) with
``executable_path``; no browser is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import sys
import threading
from pathlib import Path
from typing import Any

WIDTH = 1280
SCREEN = 900

# Runs in the page; returns the problems a reader would meet, as plain strings. Collapsed
# blocks are opened and every tab of a tabbed block is shown first, so that what a reader
# only sees after a click is checked too.
_PROBLEMS_JS = r"""
() => {
  for (const d of document.querySelectorAll('details')) d.open = true;
  const style = document.createElement('style');
  style.textContent = '.tabbed-block { display: block !important; }';
  document.head.appendChild(style);
  const out = [];
  const short = (s) => s.length > 90 ? s.slice(0, 87) + '...' : s;
  for (const pre of document.querySelectorAll('.md-content pre')) {
    const code = pre.querySelector('code') || pre;
    if (code.scrollWidth > code.clientWidth + 1) {
      const lines = code.innerText.split('\n');
      const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
      out.push(`code block cut off (${code.scrollWidth} px in ${code.clientWidth} px, ` +
               `${longest.length} chars): ${short(longest.trim())}`);
    }
  }
  for (const table of document.querySelectorAll('.md-content table')) {
    const box = table.closest('.md-typeset__scrollwrap') || table.parentElement;
    if (table.scrollWidth > box.clientWidth + 1) {
      const head = Array.from(table.querySelectorAll('th')).map((th) => th.innerText).join(' | ');
      out.push(`table wider than the column (${table.scrollWidth} px in ${box.clientWidth} px): ` +
               short(head));
    }
  }
  for (const code of document.querySelectorAll('.md-content td code, .md-content th code')) {
    const text = code.innerText;
    if (code.getClientRects().length > 1 && !/[\s\-\/,.(]/.test(text)) {
      out.push(`inline code broken mid-word in a table: ${short(text)}`);
    }
  }
  for (const img of document.querySelectorAll('.md-content img')) {
    if (img.naturalWidth > 2 * img.clientWidth && !img.closest('a')) {
      out.push(`picture shown at ${img.clientWidth} of ${img.naturalWidth} px with no link ` +
               `to the full size: ${img.getAttribute('src')}`);
    }
  }
  return out;
}
"""


def pages(site: Path) -> list[Path]:
    """The HTML pages of a built mkdocs site (``use_directory_urls``), home page first."""
    found = sorted(p for p in site.rglob("index.html") if not {"assets", "search"} & set(p.parts))
    return sorted(found, key=lambda p: (p.parent != site, str(p)))


def page_name(site: Path, page: Path) -> str:
    rel = page.parent.relative_to(site)
    return "index" if rel == Path() else str(rel).replace("/", "_")


@contextlib.contextmanager
def serve(site: Path) -> Any:
    """A static HTTP server for ``site`` on 127.0.0.1, on a free port, for the block's duration."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def check(site: Path, out: Path, chromium: str) -> int:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    with serve(site) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ],
        )  # fmt: skip
        context = browser.new_context(viewport={"width": WIDTH, "height": SCREEN})
        page = context.new_page()
        for html in pages(site):
            name = page_name(site, html)
            rel = html.parent.relative_to(site).as_posix()
            url = base if rel == "." else f"{base}{rel}/"
            page.goto(url, wait_until="networkidle")
            height = int(page.evaluate("document.documentElement.scrollHeight"))
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            problems: list[str] = page.evaluate(_PROBLEMS_JS)
            print(f"{name}: {height / SCREEN:.1f} screens, {len(problems)} problem(s)")
            for p in problems:
                print(f"    {p}")
            failed += bool(problems)
        browser.close()
    print(f"screenshots in {out}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("site", type=Path, help="a site built by mkdocs build")
    p.add_argument("--out", type=Path, default=Path("build/screenshots"), help="where the PNGs go")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="the browser to drive")
    a = p.parse_args(argv)
    return check(a.site.resolve(), a.out.resolve(), a.chromium)


if __name__ == "__main__":
    sys.exit(main())
