"""Build the docs site from the executed notebooks of the last green run.

    .venv/bin/python docs/build.py [--run runs/<run-id>] [--out _site]

Quarto (what `nbdev_docs` renders with) cannot be installed here, so the site is rendered by
Sphinx + MyST-NB. nbdev's own processors prepare every notebook first (`#| hide` cells dropped,
`show_doc` added for exported symbols, front matter, links to symbols), and the Quarto cell options
they leave (`#| echo: false`, `#| output: asis`...) are translated to MyST-NB's cell tags.
`show_doc` is rendered here from the installed modules (docs/showdoc.py); nbdev's links to its
`doc_host` become links inside this site. Every warning goes to `_build/docs.log`; the terminal gets
a short summary. Nothing is written outside `_build/` and `--out`."""
from __future__ import annotations
import argparse, contextlib, html, json, os, re, shutil, subprocess, sys, time, warnings
from pathlib import Path

import nbformat, yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(DOCS))

import showdoc  # noqa: E402  (docs/showdoc.py)

ALLOWED_KEYS = {"cell_type", "execution_count", "id", "metadata", "outputs", "source", "attachments"}
QUARTO_TO_TAGS = {("echo", "false"): "remove-input", ("include", "false"): "remove-cell",
                  ("output", "false"): "remove-output", ("eval", "false"): "remove-output"}
# Lines a library prints while it starts, not part of any lesson: py4j's callback server, Spark's log4j banner
NOISE = re.compile(r"^(?:Python Callback server started!"
                   r"|Setting default log level to \"\w+\"\."
                   r"|To adjust logging level use sc\.setLogLevel.*"
                   r"|\d\d/\d\d/\d\d \d\d:\d\d:\d\d (?:WARN|INFO) \w+: .*"
                   r"|\[IPKernelApp\] WARNING .*)\n?", re.M)
LOG = ROOT/"_build"/"docs.log"
LONG_OUTPUT = 25   # an output longer than this many lines is collapsed (its first line says how long it is)


def last_green_run(runs: Path) -> Path:
    "The newest run folder whose summary says the whole series passed."
    for d in sorted((p for p in runs.glob("*") if (p/"summary.md").exists()), reverse=True):
        if "status: **passed**" in (d/"summary.md").read_text(): return d
    raise SystemExit(f"no green run under {runs}: run `make run` first (the site shows a real run's outputs).")


def guide_notebooks() -> list[Path]:
    "The guide pages in nbs/: notebooks that are neither a stage nor the index (e.g. aws_studio)."
    from ml_lifecycle.platform.runner import stage_notebooks
    stages = {p.name for p in stage_notebooks()}
    return sorted(p for p in (ROOT/"nbs").glob("*.ipynb") if p.name not in stages and p.name != "index.ipynb")


def execute_platform(run: Path):
    """Execute the platform and guide notebooks into `run/platform` and `run/guides` when the run has not
    done it yet. A notebook that fails leaves nothing there (its executed copy goes to `run/failed/`), so
    the next build tries again instead of showing the failure."""
    from ml_lifecycle.platform.runner import run_notebook, NotebookFailed
    todo = [(nb, run/"platform"/nb.name) for nb in sorted((ROOT/"nbs"/"platform").glob("*.ipynb"))]
    todo += [(nb, run/"guides"/nb.name) for nb in guide_notebooks()]
    for nb, out in todo:
        if out.exists(): continue
        part = out.with_name(f".{out.stem}.partial.ipynb")
        try: run_notebook(nb, part)
        except NotebookFailed as e:
            failed = run/"failed"/out.relative_to(run); failed.parent.mkdir(parents=True, exist_ok=True)
            part.replace(failed)
            raise SystemExit(f"{e}\n(the docs show the notebooks of a green run: fix {nb.relative_to(ROOT)} and build again)")
        part.replace(out)


class DocsFilter:
    "nbdev's doc processors, less `exec_show_docs` (its re-run of every exported cell): `show_doc` is rendered here."
    def __call__(self, nb):
        from nbdev.processors import FilterDefaults, exec_show_docs
        from nbdev.process import NBProcessor
        procs = [p for p in FilterDefaults().procs() if p is not exec_show_docs]
        return NBProcessor(nb=nb, procs=procs).process()


def _default_exp(nb) -> str | None:
    for c in nb.cells:
        if c.cell_type == "code" and (m := re.search(r"^#\|\s*default_exp\s+(\S+)", c.source, re.M)): return m[1]


def _modidx() -> tuple[str, dict]:
    "nbdev's link prefix (`doc_host` + `doc_baseurl`) and its map of pages to symbols."
    from ml_lifecycle import _modidx
    s = _modidx.d["settings"]
    prefix = s["doc_host"].rstrip("/") + "/" + s["doc_baseurl"].strip("/")
    url2name = {}
    for mod, syms in _modidx.d["syms"].items():
        for full, (url, _) in syms.items(): url2name[url] = full
    return prefix.rstrip("/") + "/", url2name


def nbdev_page(nb_rel: str) -> str:
    "The page nbdev gives a notebook (`platform/01_storage` → `platform/storage`)."
    *d, stem = nb_rel.split("/")
    return "/".join([*d, re.sub(r"^\d+[a-z]?_", "", stem)])


def _figure_alt(cell, heading: str | None) -> str:
    "A figure's title from its cell (suptitle, set_title, title=), else the section it is in."
    for pat in (r"suptitle\(\s*f?(['\"])(.+?)\1", r"set_title\(\s*f?(['\"])(.+?)\1", r"\btitle\s*=\s*f?(['\"])(.+?)\1"):
        if (m := re.search(pat, cell.source)):
            t = re.sub(r"\{[^}]*\}", "…", m[2]).replace("\\n", " ").strip()
            if len(t) > 3: return t
    return f"Figure: {heading}" if heading else "Figure"


def is_checks_only(source: str) -> bool:
    """A cell of checks: it ends with a check (an `assert` or a call of a `test_*` function, fastcore.test, perhaps
    inside an `if`), and
    everything else in it only prepares those checks (assignments, imports, loops; no bare expression, so it shows nothing)."""
    import ast
    try: body = compile(source, "<cell>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT).body  # IPython runs `await`
    except SyntaxError: return False
    is_check = lambda n: isinstance(n, ast.Assert) or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
                                                       and isinstance(n.value.func, ast.Name) and n.value.func.id.startswith("test_"))
    shows = lambda n: isinstance(n, ast.Expr) and not is_check(n)
    def ends_with_check(n):  # a check, or an `if` (say, `if spark:` for local-mode-only checks) whose branches end with one
        return is_check(n) or (isinstance(n, ast.If) and ends_with_check(n.body[-1])
                               and (not n.orelse or ends_with_check(n.orelse[-1])))
    return bool(body) and ends_with_check(body[-1]) and not any(shows(n) for n in ast.walk(ast.Module(body=body, type_ignores=[]))
                                                                if isinstance(n, ast.stmt))


def output_lines(c) -> int:
    "How many lines a cell's text outputs take (streams and plain text; an HTML table counts its rows)."
    n = 0
    for o in c.get("outputs", []):
        data = o.get("data", {})
        if o.get("output_type") == "stream": n += "".join(o.get("text", "")).count("\n")
        elif "image/png" in data: continue
        elif "text/html" in data: n += "".join(data["text/html"]).count("<tr")
        elif "text/plain" in data: n += "".join(data["text/plain"]).count("\n") + 1
    return n


def _png_width(b64: str) -> int:
    import base64
    head = base64.b64decode("".join(b64)[:64])
    return int.from_bytes(head[16:20], "big") if head[:8] == b"\x89PNG\r\n\x1a\n" else 0


class Processor:
    "Turns the run's executed notebooks into MyST-NB sources: nbdev's processors, `show_doc`, figures, noise."
    def __init__(self):
        self.fallback = showdoc.library_namespace()
        self.documented = showdoc.documented_names()
        self.anchors: dict[str, str] = {}   # nbdev page#anchor → our page#anchor of the show_doc that documents it
        self.unresolved: list[str] = []

    def process(self, src: Path, dst: Path, page: str, source_nb: Path | None):
        "Apply nbdev's doc processors to the executed notebook `src`, then adapt it for MyST-NB."
        from nbdev.serve_drv import exec_nb
        os.environ["IN_TEST"] = "1"
        exec_nb(src, dst, DocsFilter)
        orig = nbformat.read(source_nb or src, as_version=4)
        modname = _default_exp(orig)
        module_ns = {}
        if modname:
            import importlib
            module_ns = vars(importlib.import_module(f"ml_lifecycle.{modname}"))
        nb = nbformat.read(dst, as_version=4)
        depth = "../" * page.count("/")
        cells, heading = [], None
        for c in nb.cells:
            for k in [k for k in c if k not in ALLOWED_KEYS]: del c[k]   # nbdev's bookkeeping (has_sd, ...)
            if c.cell_type == "raw" and c.source.startswith("---"):   # front matter → title + summary
                fm = yaml.safe_load(c.source.strip().strip("-")) or {}
                md = f"# {fm.get('title', dst.stem)}\n\n" + (f"> {fm['description']}\n" if fm.get("description") else "")
                cells.append(nbformat.v4.new_markdown_cell(md)); continue
            if c.cell_type == "markdown":
                if "AUTOGENERATED" in c.source: continue
                if (hs := re.findall(r"^#{1,3} (.+)$", c.source, re.M)): heading = hs[-1].strip()
            if "injected-parameters" in c.metadata.get("tags", []): continue   # the run's overrides, not the lesson
            if c.cell_type == "code":
                lines, tags = c.source.splitlines(), set(c.metadata.get("tags", []))
                while lines and (m := re.match(r"^#\|\s*([\w-]+)\s*:\s*(\S+)", lines[0])):
                    if (t := QUARTO_TO_TAGS.get((m[1], m[2].lower()))): tags.add(t)
                    lines.pop(0)
                c.source = "\n".join(l for l in lines if not re.match(r"^#\|", l))
                c.metadata["tags"] = sorted(tags)
                if (calls := showdoc.show_doc_calls(c.source)):
                    blocks = [b for b in (self._show_doc(e, n, module_ns, page, depth) for e, n in calls) if b]
                    if not blocks: continue
                    c.outputs = [nbformat.v4.new_output("display_data", data={"text/html": "\n".join(blocks)})]
                    c.metadata["tags"] = sorted(tags | {"remove-input"})
                self._clean_outputs(c, heading)
                if not c.source.strip() and not c.get("outputs"): continue
                self._collapse(c)
            cells.append(c)
        nb.cells = cells
        nbformat.write(nb, dst)

    def _show_doc(self, expr: str, name: str | None, module_ns: dict, page: str, depth: str) -> str:
        try: obj = showdoc.resolve(expr, module_ns, self.fallback)
        except Exception as e:
            self.unresolved.append(f"{page}: show_doc({expr}): {type(e).__name__}: {e}"); return ""
        name = name or expr
        href = None
        if (where := showdoc.source_page(obj)):
            href = f"{depth}_modules/{where[0].replace('.', '/')}.html#{where[1]}"
        self.anchors.setdefault(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', name)}",
                                f"{page}.html#{showdoc.anchor(name)}")
        return showdoc.render(obj, name, href)

    @staticmethod
    def _collapse(c):
        "What a reader opens only when they want it: the parameters cell, cells of checks only, and long outputs."
        tags, prompt = set(c.metadata.get("tags", [])), None
        if any("ml-sig" in "".join(o.get("data", {}).get("text/html", "")) for o in c.get("outputs", [])): return   # show_doc
        if "parameters" in tags: tags.add("hide-input"); prompt = "Show the parameters (papermill's parameters cell)"
        elif is_checks_only(c.source): tags.add("hide-input"); prompt = "Show the checks"
        if (n := output_lines(c)) > LONG_OUTPUT:
            tags.add("hide-output"); prompt = prompt or f"Show the output ({n} lines)"
        if prompt:
            c.metadata["tags"] = sorted(tags)
            c.metadata.setdefault("mystnb", {}).update(code_prompt_show=prompt, code_prompt_hide="Hide")

    @staticmethod
    def _clean_outputs(c, heading):
        outs = []
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                o["text"] = NOISE.sub("", "".join(o["text"]))
                if not o["text"].strip(): continue
            data = o.get("data", {})
            if (md := data.get("text/markdown")):     # a markdown output opening with a rule MyST cannot place
                data["text/markdown"] = re.sub(r"^\s*---\s*\n", "", "".join(md))
            if (png := data.get("image/png")):
                opts = c.metadata.setdefault("mystnb", {}).setdefault("image", {})
                opts["alt"] = _figure_alt(c, heading)
                panels = re.search(r"with (\d+) Axes", "".join(data.get("text/plain", "")))
                if _png_width(png) >= 1000 or (panels and int(panels[1]) >= 2): opts["classes"] = "ml-wide-figure"
            outs.append(o)
        if "outputs" in c: c.outputs = outs

    def link(self, dst: Path, page: str, prefix: str, url2name: dict, pages: dict):
        """nbdev's links to `doc_host` → links inside this site: the stage page that documents the symbol,
        else its entry in the API reference, else the page of its notebook."""
        depth = "../" * page.count("/")
        def target(url: str) -> str:
            rel = url[len(prefix):]
            full = url2name.get(rel)
            if full and full in self.anchors: return depth + self.anchors[full]
            if full and full in self.documented: return f"{depth}api.html#{full}"
            p = pages.get(rel.partition("#")[0].removesuffix(".html"), "index")   # a private name: its notebook's page
            return f"{depth}{p}.html"
        md_link = re.compile(r"\[`([^`\]]+)`\]\((" + re.escape(prefix) + r"[^)\s]*)\)")
        any_link = re.compile(r"\[([^\]]+)\]\((" + re.escape(prefix) + r"[^)\s]*)\)")
        nb = nbformat.read(dst, as_version=4)
        for c in nb.cells:
            if c.cell_type == "markdown":
                c.source = md_link.sub(lambda m: f'<a class="reference internal" href="{html.escape(target(m[2]))}">'
                                                 f'<code class="docutils literal notranslate">{html.escape(m[1])}</code></a>', c.source)
                c.source = any_link.sub(lambda m: f"[{m[1]}]({target(m[2])})", c.source)
            for o in c.get("outputs", []):
                for mime in ("text/html", "text/markdown"):
                    if mime in o.get("data", {}):
                        o["data"][mime] = re.sub(re.escape(prefix) + r"[^\"')\s]*", lambda m: target(m[0]), "".join(o["data"][mime]))
        nbformat.write(nb, dst)


def _download_cell(page: str, has_executed: bool) -> nbformat.NotebookNode:
    depth = "../" * page.count("/")
    links = f'<a href="{depth}notebooks/{page}.ipynb" download>{page.split("/")[-1]}.ipynb</a>'
    if has_executed: links += f' · <a href="{depth}notebooks/executed/{page}.ipynb" download>with the outputs shown here</a>'
    return nbformat.v4.new_markdown_cell(f'<p class="ml-download">Download the notebook: {links}</p>')


def _stage_seconds(run: Path) -> dict[str, float]:
    "Each stage's wall time in the run, from its summary.md table (`| 01_validate.ipynb | local | ok | 37.6 | ...`)."
    rows = re.findall(r"^\| (\S+)\.ipynb \| [^|]* \| (\w+) \| ([\d.]+) \|", (run/"summary.md").read_text(), re.M)
    return {stage: float(secs) for stage, status, secs in rows if status == "ok"}


def aws_services() -> dict[str, list[str]]:
    "Each stage's AWS services, from the glossary page's `GLOSSARY` table (one source for the page and the cards)."
    import ast
    nb = nbformat.read(ROOT/"nbs"/"glossary.ipynb", as_version=4)
    for c in nb.cells:
        for node in ast.parse(c.source if c.cell_type == "code" else "").body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "GLOSSARY" for t in node.targets):
                out = {}
                for stage, _, _, aws, _, _ in ast.literal_eval(node.value):
                    if aws not in out.setdefault(stage.replace(" ", "_"), []): out[stage.replace(" ", "_")].append(aws)
                return out
    raise SystemExit("nbs/glossary.ipynb defines no GLOSSARY table")


def _stage_card(flow: dict, seconds: dict, aws: dict) -> nbformat.NotebookNode:
    "What a stage page's reader should know first: its AWS counterpart, what it reads and moves in the lake (`lake_flow`), how long it took."
    reads = [f"<code>{p}</code> ({w})" for p, w in flow["reads"].items()]
    parts = [f"<b>on AWS</b> {html.escape('; '.join(aws.get(flow['stage'], [])) or 'nothing to run: the notebook only')}",
             f"<b>reads</b> {', '.join(reads) or 'the source data only'}",
             f"<b>moves</b> {', '.join(f'<code>{p}</code>' for p in flow['writes']) or 'no pointer (its outputs are reports and figures)'}"]
    if flow["stage"] in seconds: parts.append(f"<b>ran</b> {seconds[flow['stage']]:.0f} s in the run shown here")
    return nbformat.v4.new_markdown_cell('<p class="ml-stage-card">' + " · ".join(parts) +
                                         ' (<a href="glossary.html">the lifecycle at a glance</a>)</p>')


def _next_card(flows: list[dict], stage: str, pages: list[str]) -> nbformat.NotebookNode:
    "The line that ends a stage page: what the next stage reads from the lake, and who moved it."
    i = next(i for i, f in enumerate(flows) if f["stage"] == stage)
    if i + 1 == len(flows):
        text = '<b>Next:</b> this is the last stage; its alarms start the next turn of the lifecycle.'
        if "cleanup" in pages: text += ' To stop what is billed by the hour, see <a href="cleanup.html">cleaning up</a>.'
    else:
        nxt = flows[i + 1]
        reads = ", ".join(f"<code>{p}</code> ({'moved here' if w == stage else 'from ' + w})" for p, w in nxt["reads"].items())
        text = f'<b>Next:</b> <a href="{nxt["stage"]}.html">{nxt["stage"]}</a> reads {reads or "the source data only"} from the lake.'
    return nbformat.v4.new_markdown_cell(f'<p class="ml-next-card">{text}</p>')


def _modules_in_order(stage_pages: list[str]) -> list[tuple[str, str | None]]:
    "The exported modules in lifecycle order, each with the page of the notebook that writes it."
    found = []
    for m in sorted((ROOT/"ml_lifecycle").rglob("*.py")):
        if m.name.startswith("_"): continue
        head = m.read_text()[:400]
        nb = re.search(r"File to edit: (?:\.\./)+nbs/(\S+?)\.ipynb", head)
        found.append((m.relative_to(ROOT).with_suffix("").as_posix().replace("/", "."), nb[1] if nb else None))
    order = {p: i for i, p in enumerate(stage_pages)}
    return sorted(found, key=lambda t: (t[1] not in order, order.get(t[1], 0), t[1] or "", t[0]))


def api_page(stage_pages: list[str], titles: dict[str, str]) -> str:
    out = ["# API reference\n",
           "Every function and class the notebooks export, module by module: its signature, what it returns, "
           "and each parameter with its type, default and the comment beside it in the notebook. "
           "Each module's lesson is the page of the notebook that writes it.\n"]
    for mod, page in _modules_in_order(stage_pages):
        out.append(f"## `{mod}`\n")
        if page: out.append(f"Written by {{doc}}`{titles.get(page, page)} <{page}>` (`nbs/{page}.ipynb`).\n")
        out.append(f"```{{eval-rst}}\n.. automodule:: {mod}\n   :members:\n   :undoc-members:\n```\n")
    return "\n".join(out)


def _title(nb_path: Path) -> str:
    cells = nbformat.read(nb_path, as_version=4).cells
    return next((l[2:].strip() for c in cells if c.cell_type == "markdown" for l in c.source.splitlines() if l.startswith("# ")),
                nb_path.stem)


def write_sources(run: Path, src: Path) -> tuple[list[str], dict[str, Path]]:
    """Lay out the Sphinx source folder: index, stage pages, platform pages, API reference.
    Returns the pages and, for each, the executed notebook it was made from."""
    from ml_lifecycle.platform.runner import stage_notebooks
    if src.exists(): shutil.rmtree(src)
    (src/"platform").mkdir(parents=True)
    stages = stage_notebooks(run)
    platform = sorted((run/"platform").glob("*.ipynb"))
    guides = sorted((run/"guides").glob("*.ipynb"))
    jobs = [(ROOT/"nbs"/"index.ipynb", "index", ROOT/"nbs"/"index.ipynb", False)]
    jobs += [(p, p.stem, ROOT/"nbs"/p.name, True) for p in stages]
    jobs += [(p, p.stem, ROOT/"nbs"/p.name, True) for p in guides]
    jobs += [(p, f"platform/{p.stem}", ROOT/"nbs"/"platform"/p.name, True) for p in platform]
    proc = Processor()
    for executed, page, source, has_exec in jobs:
        proc.process(executed, src/f"{page}.ipynb", page, source if source.exists() else None)
    prefix, url2name = _modidx()
    pages = {nbdev_page(page): page for _, page, _, _ in jobs}
    for _, page, _, _ in jobs: proc.link(src/f"{page}.ipynb", page, prefix, url2name, pages)
    for msg in proc.unresolved: print(f"WARNING: {msg}")
    from ml_lifecycle.platform.runner import lake_flow
    flows = lake_flow([ROOT/"nbs"/p.name for p in stages])
    seconds, flow, aws = _stage_seconds(run), {f["stage"]: f for f in flows}, aws_services()
    all_pages = [page for _, page, _, _ in jobs]
    for _, page, source, has_exec in jobs:   # the download link under each page's title; a stage's card under it
        if not source.exists(): continue
        nb = nbformat.read(src/f"{page}.ipynb", as_version=4)
        at = next((i + 1 for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), 0)
        if page in flow:
            nb.cells.insert(at, _stage_card(flow[page], seconds, aws))
            nb.cells.append(_next_card(flows, page, all_pages))
        nb.cells.insert(at, _download_cell(page, has_exec))
        nbformat.write(nb, src/f"{page}.ipynb")
    titles = {p.stem: _title(src/f"{p.stem}.ipynb") for p in stages}
    (src/"api.md").write_text(api_page([p.stem for p in stages], titles))
    toc = lambda caption, names: (f"\n```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n" + "\n".join(names) + "\n```\n")
    nb = nbformat.read(src/"index.ipynb", as_version=4)
    for c in nb.cells:   # the README's link to the built site is this very page here
        if c.cell_type == "markdown": c.source = (c.source.replace("[`_site/index.html`](_site/index.html)", "`_site/index.html` (this site)")
                                                  .replace("](nbs/", "]("))   # README links into nbs/; the site has the pages at its root
    nb.cells.append(nbformat.v4.new_markdown_cell(
        toc("The lifecycle", [p.stem for p in stages]) + (toc("Guides", [p.stem for p in guides]) if guides else "") +
        toc("Platform", [f"platform/{p.stem}" for p in platform]) +
        toc("Reference", ["api"]) + f"\n<small>Built from run `{run.name}`.</small>\n"))
    nbformat.write(nb, src/"index.ipynb")
    return [page for _, page, _, _ in jobs] + ["api"], {page: (ex if he else None, s) for ex, page, s, he in jobs}


def copy_notebooks(notebooks: dict, out: Path):
    "Each page's notebook for download: the source from nbs/, and the run's executed copy (less papermill's injected cell)."
    for page, (executed, source) in notebooks.items():
        if source.exists():
            (out/"notebooks"/f"{page}.ipynb").parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, out/"notebooks"/f"{page}.ipynb")
        if executed is not None:
            nb = nbformat.read(executed, as_version=4)
            nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
            dst = out/"notebooks"/"executed"/f"{page}.ipynb"; dst.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dst)


@contextlib.contextmanager
def output_to_log(path: Path):
    "While inside, everything this process and its children print goes to `path`; yields a stream on the terminal."
    path.parent.mkdir(parents=True, exist_ok=True)
    for s in (sys.stdout, sys.stderr): s.flush()
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    saved = [os.dup(1), os.dup(2)]
    with open(path, "w") as f:
        os.dup2(f.fileno(), 1); os.dup2(f.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                yield terminal
        finally:
            for s in (sys.stdout, sys.stderr): s.flush()
            for fd, old in zip((1, 2), saved): os.dup2(old, fd); os.close(old)
            terminal.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="run folder (default: the newest green run in runs/)")
    ap.add_argument("--out", type=Path, default=ROOT/"_site", help="where the HTML goes")
    ap.add_argument("--no-exec", action="store_true", help="do not execute missing platform notebooks")
    a = ap.parse_args(argv)
    run = (a.run or last_green_run(ROOT/"runs")).resolve()
    out = a.out.resolve()
    if out in (ROOT, *ROOT.parents) or out == Path.home(): raise SystemExit(f"--out {out} would replace a folder that holds the project")
    t0 = time.time()
    print(f"[docs] building from run {run.name}; details in {LOG.relative_to(ROOT)}")
    with output_to_log(LOG) as terminal:
        try:
            if not a.no_exec:
                terminal.write("[docs] executing the platform and guide notebooks the run lacks\n")
                execute_platform(run)
            src, html_dir = ROOT/"_build"/"docs_src", ROOT/"_build"/"html"
            terminal.write("[docs] preparing the pages (nbdev processors, show_doc)\n")
            pages, notebooks = write_sources(run, src)
            terminal.write(f"[docs] rendering {len(pages)} pages with Sphinx\n")
            if html_dir.exists(): shutil.rmtree(html_dir)
            # Sphinx and MyST-NB write next to the HTML folder (jupyter_execute/): keep it under _build/
            cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(DOCS), "-j", "1", str(src), str(html_dir)]
            rc = subprocess.run(cmd, stdout=sys.stdout, stderr=sys.stderr).returncode
            if rc: raise SystemExit(f"sphinx failed (exit {rc})")
            if out.exists(): shutil.rmtree(out)
            shutil.copytree(html_dir, out)
            copy_notebooks(notebooks, out)
        except SystemExit as e:
            terminal.write(f"[docs] FAILED: {e}\n[docs] see {LOG}\n"); raise SystemExit(1)
    log = LOG.read_text(errors="replace")
    n_warn = len(re.findall(r"WARNING|ERROR|Warning:", log))
    print(f"[docs] {len(pages)} pages in {time.time() - t0:.0f} s; {n_warn} warning(s) in {LOG.relative_to(ROOT)}")
    print(f"docs site: {out/'index.html'}  (from run {run.name})")


if __name__ == "__main__": main()
