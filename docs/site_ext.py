"""Sphinx extension of the docs site (docs/conf.py loads it).

- API reference: autodoc shows each parameter with the comment beside it in the notebook (fastcore's
  docments), the way nbdev's `show_doc` does.
- Figures: every image of a page links to its file (click to see it full size).
- MathJax: served from the site itself, copied from the jupyter-server-mathjax wheel into
  `_static/mathjax` (conf.py's `mathjax_path` points there)."""
from __future__ import annotations
import inspect, re, shutil
from pathlib import Path


def _escape_bars(lines):
    "`|x|` (an absolute value in Markdown) is not a reST substitution reference."
    for i, l in enumerate(lines):
        if "|" in l: lines[i] = re.sub(r"(?<![\\`])\|(?=[^|`\n]+\|)", r"\\|", l)


def add_docments(app, what, name, obj, options, lines):
    "Append `:param x: comment` for each parameter whose comment the docstring lacks."
    try:
        if what not in ("function", "method", "class"): return
        from fastcore.docments import docments
        target = obj.__init__ if inspect.isclass(obj) else obj
        if inspect.isclass(obj) and target is object.__init__: return
        try: d = docments(target, full=True)
        except Exception: return
        have = "\n".join(lines)
        extra = []
        for k, v in d.items():
            doc = (v or {}).get("docment")
            if not doc or k in ("self", "cls"): continue
            doc = " ".join(doc.split())
            if k == "return":
                if ":returns:" not in have and ":return:" not in have: extra.append(f":returns: {doc}")
            elif f":param {k}:" not in have: extra.append(f":param {k}: {doc}")
        if extra:
            if lines and lines[-1].strip(): lines.append("")
            lines.extend(extra)
    finally:
        _escape_bars(lines)


_A_OR_IMG = re.compile(r"(<a\b[^>]*>.*?</a>)|(<img\b[^>]*>)", re.S)


def _link_image(m):
    if m[1]: return m[1]
    img = m[2]
    src = re.search(r'\bsrc="([^"]+)"', img)
    if not src or src[1].startswith("data:"): return img
    return f'<a class="ml-image-link reference external" href="{src[1]}" title="Open the full-size image">{img}</a>'


def link_images(app, pagename, templatename, context, doctree):
    if "body" in context: context["body"] = _A_OR_IMG.sub(_link_image, context["body"])


def copy_mathjax(app, exception):
    if exception or app.builder.format != "html": return
    import jupyter_server_mathjax
    src = Path(jupyter_server_mathjax.__file__).parent/"static"
    shutil.copytree(src, Path(app.outdir)/"_static"/"mathjax", dirs_exist_ok=True)


def drop_missing_source_anchors(app, exception):
    "A [source] link whose object `viewcode` did not anchor (a method added by `@patch`) goes to the module's page."
    if exception or app.builder.format != "html": return
    out, ids = Path(app.outdir), {}
    def has(target: Path, frag: str) -> bool:
        if target not in ids: ids[target] = set(re.findall(r'id="([^"]+)"', target.read_text())) if target.exists() else set()
        return frag in ids[target]
    for page in out.rglob("*.html"):
        text = page.read_text()
        if "ml-sig-source" not in text: continue
        def fix(m):
            href, frag = m[2].split("#", 1) if "#" in m[2] else (m[2], "")
            return m[0] if not frag or has((page.parent/href).resolve(), frag) else f'{m[1]}"{href}"'
        new = re.sub(r'(<a class="ml-sig-source" href=)"([^"]+)"', fix, text)
        if new != text: page.write_text(new)


def setup(app):
    app.connect("autodoc-process-docstring", add_docments)
    app.connect("html-page-context", link_images)
    app.connect("build-finished", copy_mathjax)
    app.connect("build-finished", drop_missing_source_anchors)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
