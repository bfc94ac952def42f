"""The docs site: built from the executed notebooks of a green run, checked in headless Chromium.

Every page opens, has its title, loads its figures, has navigation links that resolve, and shows
no Python traceback."""
import functools, http.server, shutil, subprocess, sys, threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import nbformat, pytest, requests

from ml_lifecycle.platform.config import project_root
from ml_lifecycle.platform.runner import stage_notebooks

pytestmark = pytest.mark.notebooks
ROOT = project_root()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def site(series, tmp_path_factory):
    if not series.ok: pytest.skip(f"no green run to build from: {series.error}")
    out = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, str(ROOT/"docs"/"build.py"), "--run", str(series.run_dir), "--out", str(out)], check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{srv.server_port}/"
    srv.shutdown()


def _title(nb: Path) -> str:
    "The H1 title of a notebook (its first markdown line starting with '# ')."
    cells = nbformat.read(nb, as_version=4).cells
    return next(l[2:].strip() for c in cells if c.cell_type == "markdown" for l in c.source.splitlines() if l.startswith("# "))


def _pages(out: Path):
    stages = [p.stem for p in stage_notebooks()]
    platform = sorted(p.stem for p in (ROOT/"nbs"/"platform").glob("*.ipynb"))
    guides = sorted(p.stem for p in (ROOT/"nbs").glob("*.ipynb") if p.stem not in stages and p.stem != "index")
    return ["index", *stages, *guides, *[f"platform/{p}" for p in platform], "api"]


@pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (make test installs it)")
def test_every_page_in_chromium(site):
    from playwright.sync_api import sync_playwright
    out, base = site
    pages = _pages(out)
    for p in pages: assert (out/f"{p}.html").exists(), f"page {p}.html was not built"
    checked_links, problems = set(), []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        page = browser.new_page()
        for p in pages:
            url = urljoin(base, f"{p}.html")
            resp = page.goto(url, wait_until="load")
            assert resp and resp.ok, f"{url}: HTTP {resp and resp.status}"
            h1 = page.locator("h1").first.inner_text().strip()
            if p[:2].isdigit():
                want = _title(ROOT/"nbs"/f"{p}.ipynb")
                if h1.rstrip("#¶ ").strip() != want: problems.append(f"{p}: title {h1!r}, expected {want!r}")
            elif not h1: problems.append(f"{p}: no title")
            broken = page.evaluate("() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
            if broken: problems.append(f"{p}: broken images {broken}")
            # an error output of the run (MyST-NB renders those as `.output.traceback`); a job log that a
            # lesson prints on purpose (03_sagemaker_local's failing-script demo) is a stream, not an error
            errors = page.locator(".output.traceback, .output.error").count()
            if errors: problems.append(f"{p}: shows {errors} Python traceback(s) from the run")
            for href in page.evaluate("() => [...document.querySelectorAll('nav a[href], .toctree-wrapper a[href], a.reference.internal[href]')].map(a => a.href)"):
                target = href.split("#")[0]
                if urlparse(target).netloc != urlparse(base).netloc or target in checked_links: continue
                checked_links.add(target)
                if requests.get(target, timeout=10).status_code != 200: problems.append(f"{p}: dead link {href}")
        browser.close()
    assert not problems, "\n".join(problems)
    assert len(checked_links) >= len(pages)


def test_stage_pages_show_figures(site):
    "Learners see plots of the real run: the data and model stages carry figures."
    out, _ = site
    with_images = [p for p in _pages(out) if "<img" in (out/f"{p}.html").read_text()]
    assert {"02_explore", "06_evaluate"} <= set(with_images), with_images
