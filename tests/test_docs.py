"""The docs site: built from the executed notebooks of a green run, checked in headless Chromium.

Every page opens at 1400 px and 400 px without scrolling sideways, has its title, loads its figures
(each one linked to its file, with alt text), has links that resolve inside the site (none to the
placeholder or published doc host), loads nothing from outside 127.0.0.1, shows no raw reST, no Python
traceback and no library noise. The API page and the stage pages show the exported signatures. A stage
page reads in a learner's order: its card (AWS counterpart, lake hand-overs, runtime), the introduction,
the parameters collapsed, checks and long outputs collapsed, a recap and the line naming what the next
stage reads; multi-panel figures are at least 600 px wide.

`ML_LIFECYCLE_DOCS_RUN=runs/<run-id>` builds from that existing green run instead of running the
series (the `series` fixture); `ML_LIFECYCLE_DOCS_SITE=<folder>` checks a site built already (no build,
so the build's own test is skipped)."""
import configparser, functools, http.server, inspect, os, re, shutil, subprocess, sys, threading, time
from pathlib import Path
from urllib.parse import urljoin, urlparse, unquote

import nbformat, pytest, requests

from conftest import DOCS_EXECUTED
from ml_lifecycle.platform.config import project_root
from ml_lifecycle.platform.runner import stage_notebooks

pytestmark = pytest.mark.notebooks
ROOT = project_root()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]   # nothing outside loopback resolves
WIDTHS = (1400, 400)
PLACEHOLDER = "example.github.io"
LONG_SHOWN = 40   # lines: an output longer than this is collapsed by the build (docs/build.py LONG_OUTPUT, plus wrapping)
needs_chromium = pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (make test installs it)")


def _doc_host() -> str:
    c = configparser.ConfigParser(); c.read(ROOT/"settings.ini")
    return c["DEFAULT"]["doc_host"].rstrip("/") + "/" + c["DEFAULT"]["doc_baseurl"].strip("/")


def _git_status() -> set[str]:
    if not (ROOT/".git").exists(): return set()
    return set(subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                              capture_output=True, text=True).stdout.splitlines())


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


@pytest.fixture(scope="module")
def site(request, tmp_path_factory):
    "The site built by docs/build.py, served on 127.0.0.1; from `$ML_LIFECYCLE_DOCS_RUN` when set, else from the series run."
    if (built := os.environ.get("ML_LIFECYCLE_DOCS_SITE")):
        out, build, seconds, before = Path(built).resolve(), None, 0.0, set()
    elif (run := os.environ.get("ML_LIFECYCLE_DOCS_RUN")):
        run_dir = Path(run).resolve()
        if not (run_dir/"summary.md").exists(): pytest.fail(f"ML_LIFECYCLE_DOCS_RUN={run}: no summary.md there")
    else:
        series = request.getfixturevalue("series")
        if not series.ok: pytest.skip(f"no green run to build from: {series.error}")
        run_dir = series.run_dir
    if not built:
        out = tmp_path_factory.mktemp("site")
        before, t0 = _git_status(), time.time()
        lake = tmp_path_factory.mktemp("docs-lake")  # the platform notebooks' demo lake: never the repo's
        build = subprocess.run([sys.executable, str(ROOT/"docs"/"build.py"), "--run", str(run_dir), "--out", str(out)],
                               capture_output=True, text=True, env={**os.environ, "ML_LIFECYCLE_LAKE": str(lake)})
        seconds = time.time() - t0
        assert build.returncode == 0, build.stdout + build.stderr
        request.config.stash[DOCS_EXECUTED] = run_dir
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield {"out": out, "base": f"http://127.0.0.1:{srv.server_port}/", "build": build, "seconds": seconds,
           "git_before": before, "git_after": _git_status() if build else set()}
    srv.shutdown()


def _title(nb: Path) -> str:
    "The H1 title of a notebook (its first markdown line starting with '# ')."
    cells = nbformat.read(nb, as_version=4).cells
    return next(l[2:].strip() for c in cells if c.cell_type == "markdown" for l in c.source.splitlines() if l.startswith("# "))


def _pages():
    stages = [p.stem for p in stage_notebooks()]
    platform = sorted(p.stem for p in (ROOT/"nbs"/"platform").glob("*.ipynb"))
    guides = sorted(p.stem for p in (ROOT/"nbs").glob("*.ipynb") if p.stem not in stages and p.stem != "index")
    return ["index", *stages, *guides, *[f"platform/{p}" for p in platform], "api"]


# What one page shows, read in the browser (one pass over every page at each width, shared by the tests below)
PAGE_FACTS = """(LONG) => {
  const W = window.innerWidth, art = document.querySelector('article') || document.body;
  const scrolls = el => { for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX; if (o === 'auto' || o === 'scroll') return true; } return false; };
  const shown = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const wide = [...art.querySelectorAll('*')].filter(el => shown(el) && el.getBoundingClientRect().right > W + 1 && !scrolls(el)).map(name);
  const cut = [...art.querySelectorAll('pre, code, table, img')].filter(el => {
      if (!shown(el)) return false;
      for (let a = el; a && a !== document.body; a = a.parentElement) {
        const o = getComputedStyle(a).overflowX;
        if (o === 'auto' || o === 'scroll') return false;
        if ((o === 'hidden' || o === 'clip') && a.scrollWidth > a.clientWidth + 1) return true; }
      return false; }).map(name);
  const abs = u => new URL(u, location.href).href;
  const assets = [...document.querySelectorAll('script[src]')].map(e => abs(e.getAttribute('src')))
      .concat([...document.querySelectorAll('link[href]')].filter(e => /stylesheet|icon|preload|font|manifest/.test(e.rel)).map(e => abs(e.getAttribute('href'))))
      .concat([...document.querySelectorAll('img[src], source[src], iframe[src], video[src], audio[src]')].map(e => abs(e.getAttribute('src'))));
  const imgs = [...document.images].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0, alt: i.getAttribute('alt') || '',
      link: i.closest('a') ? i.closest('a').href : null, output: !!i.closest('.cell_output'),
      panels: i.classList.contains('ml-wide-figure'), width: i.getBoundingClientRect().width}));
  const before = (a, b) => !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
  const hidden = [...art.querySelectorAll('details.hide')];
  const params = hidden.find(d => /^\\s*mode = /m.test(d.textContent));
  const prose = [...art.querySelectorAll('p')].filter(q => !q.closest('blockquote, details, .cell_output, .ml-stage-card, .ml-download')
      && !q.matches('.ml-stage-card, .ml-download, .ml-next-card') && q.innerText.trim().split(/\\s+/).length >= 12);
  return {docWidth: document.documentElement.scrollWidth, W, wide: wide.slice(0, 8), cut: cut.slice(0, 8), assets,
          links: [...document.querySelectorAll('a[href]')].map(a => a.href), imgs,
          h1: (document.querySelector('h1') || {innerText: ''}).innerText.trim(),
          text: art.innerText,
          errors: document.querySelectorAll('.output.traceback, .output.error').length,
          codeCells: document.querySelectorAll('div.cell_input div.highlight pre').length,
          copyButtons: document.querySelectorAll('button.copybtn').length,
          mathSpans: document.querySelectorAll('span.math, div.math').length,
          mathRendered: document.querySelectorAll('.MathJax, .MathJax_Display, .MathJax_CHTML, mjx-container').length,
          sigs: [...document.querySelectorAll('div.ml-sig')].map(d => ({id: d.id, sig: (d.querySelector('pre') || {innerText: ''}).innerText})),
          download: [...document.querySelectorAll('p.ml-download a[href]')].map(a => a.href),
          params: params ? {open: params.open, proseBefore: prose.filter(q => before(q, params)).length} : null,
          shownCode: [...art.querySelectorAll('div.cell_input pre')].filter(shown).map(e => e.innerText),
          longShown: [...art.querySelectorAll('div.cell_output')].filter(e => shown(e) && !e.querySelector('div.ml-sig')).map(e => e.innerText.split('\\n').length)
                         .filter(n => n > LONG),
          card: (art.querySelector('p.ml-stage-card') || {innerText: ''}).innerText,
          next: (art.querySelector('p.ml-next-card') || {innerText: ''}).innerText,
          recapThenNext: [...art.querySelectorAll('h2')].some(h => /^Recap/.test(h.innerText) &&
                         art.querySelector('p.ml-next-card') && before(h, art.querySelector('p.ml-next-card')))};
}"""


@pytest.fixture(scope="module")
def browsed(site):
    "Every page opened in headless Chromium at each width: the facts PAGE_FACTS reads, and every request the page made."
    from playwright.sync_api import sync_playwright
    if not CHROMIUM: pytest.skip("needs Debian's chromium (make test installs it)")
    base, facts, t0 = site["base"], {}, time.time()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        for width in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": 900})
            requested = []
            def route(r, _request=None):
                requested.append(r.request.url)
                if urlparse(r.request.url).hostname == "127.0.0.1": r.continue_()
                else: r.abort()
            page.route("**/*", route)
            for p in _pages():
                requested.clear()
                url = urljoin(base, f"{p}.html")
                resp = page.goto(url, wait_until="load")
                f = {"status": resp.status if resp else None}
                if resp and resp.ok:
                    if page.locator("span.math, div.math").count():   # MathJax typesets after load
                        try: page.wait_for_selector(".MathJax, .MathJax_Display, .MathJax_CHTML", timeout=20000)
                        except Exception: pass
                        page.wait_for_timeout(300)
                    f.update(page.evaluate(PAGE_FACTS, LONG_SHOWN))
                f["requests"] = list(requested)
                facts[(p, width)] = f
            page.close()
        browser.close()
    site["browse_seconds"] = time.time() - t0
    return facts


def _problems(browsed, check):
    out = []
    for (p, w), f in browsed.items():
        if f.get("status") != 200: out.append(f"{p} @{w}px: HTTP {f.get('status')}")
        else: out += [f"{p} @{w}px: {m}" for m in check(p, w, f)]
    return out


@needs_chromium
def test_pages_open_with_their_titles(browsed):
    def check(p, w, f):
        if w != WIDTHS[0]: return
        if p[:2].isdigit():
            want = _title(ROOT/"nbs"/f"{p}.ipynb")
            if f["h1"].rstrip("#¶ ").strip() != want: yield f"title {f['h1']!r}, expected {want!r}"
        elif not f["h1"]: yield "no title"
        # an error output of the run (MyST-NB renders those as `.output.traceback`); a job log that a
        # lesson prints on purpose (03_sagemaker_local's failing-script demo) is a stream, not an error
        if f["errors"]: yield f"shows {f['errors']} Python traceback(s) from the run"
    assert not (problems := _problems(browsed, check)), "\n".join(problems)


@needs_chromium
def test_no_page_scrolls_sideways(browsed):
    "At 1400 px and 400 px the document is no wider than the window; what is wider scrolls in its own box, nothing is cut off."
    def check(p, w, f):
        if f["docWidth"] > f["W"] + 1: yield f"document is {f['docWidth']} px wide in a {f['W']} px window: {f['wide']}"
        elif f["wide"]: yield f"elements past the window's right edge: {f['wide']}"
        if f["cut"]: yield f"content cut off by a box that hides overflow: {f['cut']}"
    assert not (problems := _problems(browsed, check)), "\n".join(problems)


@needs_chromium
def test_nothing_loads_from_outside(browsed):
    "Scripts, styles, fonts, images and MathJax come from the site itself: no request leaves 127.0.0.1."
    def check(p, w, f):
        if (out := sorted({u for u in f["requests"] if urlparse(u).hostname != "127.0.0.1"})): yield f"requests {out}"
        if (out := sorted({u for u in f["assets"] if urlparse(u).hostname != "127.0.0.1"})): yield f"external assets {out}"
    assert not (problems := _problems(browsed, check)), "\n".join(problems)


@needs_chromium
def test_links_stay_in_the_site(browsed, site):
    "No link to the placeholder host or to doc_host (the site's links are its own); every local link and anchor resolves."
    host, base = _doc_host(), site["base"]
    targets = {}
    def check(p, w, f):
        if w != WIDTHS[0]: return
        if (bad := [u for u in f["links"] if PLACEHOLDER in u or u.startswith(host + "/")]):
            yield f"{len(bad)} link(s) to the doc host, e.g. {bad[:3]}"
        for u in f["links"]:
            if urlparse(u).netloc == urlparse(base).netloc: targets.setdefault(u, p)
    problems = _problems(browsed, check)
    pages_html = {}
    for u, p in targets.items():
        doc, _, frag = u.partition("#")
        if doc not in pages_html:
            r = requests.get(doc, timeout=10)
            pages_html[doc] = r.text if r.status_code == 200 else None
            if r.status_code != 200: problems.append(f"{p}: dead link {u} (HTTP {r.status_code})")
        html = pages_html[doc]
        if html and frag and doc.endswith(".html") and f'id="{unquote(frag)}"' not in html:
            problems.append(f"{p}: link {u}: no element with that id")
    assert not problems, "\n".join(problems[:40]) + (f"\n... {len(problems) - 40} more" if len(problems) > 40 else "")
    assert len(pages_html) >= len(_pages())


@needs_chromium
def test_figures_load_link_to_their_file_and_have_alt_text(browsed):
    def check(p, w, f):
        for i in f["imgs"]:
            if not i["ok"]: yield f"broken image {i['src']}"
            if not i["output"]: continue
            if i["link"] != i["src"]: yield f"figure {i['src']} does not link to its file (link {i['link']})"
            if not i["alt"] or re.search(r"[0-9a-f]{16}|jupyter_execute|\.png$", i["alt"]): yield f"figure {i['src']} has alt {i['alt']!r}"
    assert not (problems := _problems(browsed, check)), "\n".join(problems)


@needs_chromium
def test_no_raw_rest_no_noise(browsed):
    "Generated reST is rendered, not shown as text; py4j's and Spark's start-up lines are not outputs; math is typeset."
    def check(p, w, f):
        if w != WIDTHS[0]: return
        for pat in (r"^\s*\.\. (py:|auto)\w*::", r"^\s*:module: ml_lifecycle", "Callback server started", "Setting default log level"):
            if (m := re.search(pat, f["text"], re.M)): yield f"shows {m[0].strip()!r}"
        if f["mathSpans"] and not f["mathRendered"]: yield f"{f['mathSpans']} math element(s), none typeset by MathJax"
        if f["mathSpans"] and re.search(r"\\\(|\\\[", f["text"]): yield "shows raw \\( ... \\) math"
    assert not (problems := _problems(browsed, check)), "\n".join(problems)


@needs_chromium
def test_copy_buttons_and_notebook_downloads(browsed):
    "Code cells have a copy button; each notebook page links its notebook, and the link downloads it."
    def check(p, w, f):
        if w != WIDTHS[0]: return
        if f["codeCells"] and f["copyButtons"] < f["codeCells"]: yield f"{f['codeCells']} code cells, {f['copyButtons']} copy buttons"
        if p != "api":
            if not f["download"]: yield "no link to its notebook"
            for u in f["download"]:
                r = requests.get(u, timeout=10)
                if r.status_code != 200 or '"cells"' not in r.text: yield f"notebook link {u}: HTTP {r.status_code}"
    assert not (problems := _problems(browsed, check)), "\n".join(problems)


@needs_chromium
def test_signatures_on_api_and_stage_pages(browsed):
    "The API page lists every exported function with its parameters; stage pages show the signatures of what they export."
    import importlib
    api = browsed[("api", WIDTHS[0])]
    assert api.get("status") == 200
    from ml_lifecycle.platform.deployment import approved_model
    params = ", ".join(inspect.signature(approved_model).parameters)
    assert f"approved_model({params})" in api["text"], "approved_model's signature is not on the API page"
    missing = []
    for m in sorted((ROOT/"ml_lifecycle").rglob("*.py")):
        if m.name.startswith("_"): continue
        modname = m.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name, None)
            if inspect.isfunction(obj) and obj.__module__ == modname and f"{name}(" not in api["text"]: missing.append(f"{modname}.{name}")
    assert not missing, f"exported functions missing from the API page: {missing}"
    ingest = browsed[("00_ingest", WIDTHS[0])]
    sigs = {s["id"]: s["sig"] for s in ingest["sigs"]}
    assert "drop_missing_target" in sigs and "drop_missing_target(" in sigs["drop_missing_target"] and "target: str" in sigs["drop_missing_target"], sigs
    empty = [f"{p}#{s['id']}" for (p, w), f in browsed.items() if w == WIDTHS[0] for s in f.get("sigs", []) if "(" not in s["sig"] and not s["sig"].startswith(("class ", "property "))]
    assert not empty, f"show_doc blocks without a signature: {empty}"
    stages_without = [p for p in [p.stem for p in stage_notebooks()] if not browsed[(p, WIDTHS[0])].get("sigs")]
    assert not stages_without, f"stage pages that show no exported signature: {stages_without}"


def test_build_is_quiet_and_leaves_the_repo_clean(site):
    "The build prints a short summary (details in _build/docs.log) and writes nothing into the repository outside _build/."
    if site["build"] is None: pytest.skip("ML_LIFECYCLE_DOCS_SITE: a site built already")
    lines = site["build"].stdout.strip().splitlines() + site["build"].stderr.strip().splitlines()
    assert len(lines) <= 10, "\n".join(lines)
    assert not (ROOT/"jupyter_execute").exists()
    assert site["git_after"] <= site["git_before"], f"the build changed the repository: {sorted(site['git_after'] - site['git_before'])}"


def test_stage_pages_show_figures(site):
    "Learners see plots of the real run: the data and model stages carry figures."
    out = site["out"]
    with_images = [p for p in _pages() if "<img" in (out/f"{p}.html").read_text()]
    assert {"02_explore", "06_evaluate"} <= set(with_images), with_images


@needs_chromium
def test_multi_panel_figures_are_readable(browsed):
    "A figure of several panels is shown at least 600 px wide in a 1400 px window (at 400 px it scrolls in its own box)."
    def check(p, w, f):
        if w != WIDTHS[0]: return
        for i in f["imgs"]:
            if i["panels"] and i["width"] < 600: yield f"multi-panel figure {i['src']} shown {i['width']:.0f} px wide"
    assert not (problems := _problems(browsed, check)), "\n".join(problems)
    assert any(i["panels"] for f in browsed.values() for i in f.get("imgs", [])), "no figure is marked multi-panel"


def _checks_only_cells(page: str) -> list[str]:
    "The source of each cell of `page`'s notebook that holds checks only (the build collapses those)."
    sys.path.insert(0, str(ROOT/"docs"))
    from build import is_checks_only
    nb = ROOT/"nbs"/f"{page}.ipynb"
    if not nb.exists(): return []
    return [c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code" and is_checks_only(c.source)]


@needs_chromium
def test_reading_order_of_stage_pages(browsed):
    """A stage page opens with what it teaches, its AWS counterpart and its runtime, then its introduction before
    the (collapsed) parameters; checks and long outputs are collapsed; it ends with a recap and what the next stage reads."""
    norm = lambda t: re.sub(r"\s+", "", t)
    def check(p, w, f):
        if w != WIDTHS[0]: return
        if p in stage_pages:
            for want in ("on AWS", "reads", "ran"):
                if want not in f["card"]: yield f"stage card lacks {want!r}: {f['card']!r}"
            if not f["recapThenNext"]: yield "no 'Recap' section followed by the next-stage line"
            if not f["next"].startswith("Next:"): yield f"next-stage line {f['next']!r}"
        if f["params"] is not None:
            if f["params"]["open"]: yield "the parameters cell is open"
            if p in stage_pages and f["params"]["proseBefore"] < 1: yield "the parameters come before any introduction"
        elif p in stage_pages and p != "04a_xgb_train_script": yield "no collapsed parameters cell"
        shown = {norm(t) for t in f["shownCode"]}
        if (open_checks := [c.splitlines()[0] for c in _checks_only_cells(p) if norm(c) in shown]):
            yield f"{len(open_checks)} cell(s) of checks shown open, e.g. {open_checks[:2]}"
        if f["longShown"]: yield f"outputs of {f['longShown']} lines shown open"
    stage_pages = {f["stage"] for f in __import__("ml_lifecycle.platform.runner", fromlist=["lake_flow"]).lake_flow()}
    assert not (problems := _problems(browsed, check)), "\n".join(problems)
