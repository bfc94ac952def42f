"""Sphinx extension of the docs site (docs/conf.py loads it).

- API reference: autodoc shows each parameter with the comment beside it in the notebook (fastcore's
  docments), the way nbdev's `show_doc` does.
- Figures: every image of a page links to its file (click to see it full size).
- MathJax: served from the site itself, copied from the jupyter-server-mathjax wheel into
  `_static/mathjax` (conf.py's `mathjax_path` points there)."""
from __future__ import annotations
import inspect, re, shutil
from pathlib import Path


def add_docments(app, what, name, obj, options, lines):
    "Append `:param x: comment` for each parameter whose comment the docstring lacks."
    for i, l in enumerate(lines):   # `|x|` (an absolute value in Markdown) is not a reST substitution
        lines[i] = re.sub(r"(?<![\\`])\|(?=[^|`\n]+\|)", r"\\|", l) if "|" in l else l
    if what not in ("function", "method", "class"): return
    try:
        from fastcore.docments import docments
        target = obj.__init__ if inspect.isclass(obj) else obj
        if inspect.isclass(obj) and target is object.__init__: return
        d = docments(target, full=True)
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


def setup(app):
    app.connect("autodoc-process-docstring", add_docments)
    app.connect("html-page-context", link_images)
    app.connect("build-finished", copy_mathjax)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
