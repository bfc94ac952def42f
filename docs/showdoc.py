"""`show_doc` for the docs site: an exported function's or class's signature, docstring and documented
parameters as HTML, rendered in this process from the installed module.

nbdev renders `show_doc` by re-running every exported cell of a notebook in a kernel; the notebook's
module holds the same code (`nbdev_export` wrote it), so importing it gives the same objects without
re-running anything. The parameter table reads the comments beside each parameter (fastcore's
docments), as nbdev's own `show_doc` does."""
from __future__ import annotations
import ast, functools, html, importlib, inspect, pkgutil, re

from fastcore.docments import docments
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

_md = MarkdownIt("commonmark", {"html": False})   # a docment's `<script>` is text, not HTML
P = inspect.Parameter


def anchor(name: str) -> str:
    "The HTML id nbdev gives `name`'s entry (`Lake.get` → `lake.get`), so nbdev's links land on it."
    return name.lower()


def _anno(a) -> str:
    return a if isinstance(a, str) else inspect.formatannotation(a)


def _default(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def signature(obj, name: str) -> str:
    "`name(params) -> returns` as a reader writes the call; one parameter a line when it is long."
    if isinstance(obj, (property, functools.cached_property)):
        f = obj.fget if isinstance(obj, property) else obj.func
        ret = inspect.signature(f).return_annotation if f else P.empty
        return f"property {name}" + (f": {_anno(ret)}" if ret is not P.empty else "")
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return f"class {name}" if inspect.isclass(obj) else name
    params = list(sig.parameters.values())
    if "." in name and params and params[0].name in ("self", "cls") and not inspect.isclass(obj): params = params[1:]
    parts, star_done = [], False
    for i, p in enumerate(params):
        if p.kind == P.KEYWORD_ONLY and not star_done: parts.append("*"); star_done = True
        if p.kind == P.VAR_POSITIONAL: star_done = True
        s = {P.VAR_POSITIONAL: "*", P.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not P.empty: s += f": {_anno(p.annotation)}"
        if p.default is not P.empty: s += (" = " if p.annotation is not P.empty else "=") + _default(p.default)
        parts.append(s)
        if p.kind == P.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind != P.POSITIONAL_ONLY): parts.append("/")
    ret = "" if inspect.isclass(obj) or sig.return_annotation is P.empty else f" -> {_anno(sig.return_annotation)}"
    head = f"class {name}" if inspect.isclass(obj) else name
    one = f"{head}({', '.join(parts)}){ret}"
    if len(one) <= 78 or not parts: return one
    return f"{head}(\n" + "".join(f"    {s},\n" for s in parts) + f"){ret}"


def _doc_table(obj) -> str:
    "The parameters with their type, default and comment, when at least one has a comment."
    if isinstance(obj, (property, functools.cached_property)): return ""
    try: d = docments(obj, full=True)
    except Exception: return ""
    rows = [(k, v) for k, v in d.items() if k not in ("self", "cls")]
    if not any(v.get("docment") for _, v in rows): return ""
    cell = lambda s: html.escape(str(s)) if s not in (None, inspect._empty) else ""
    def code(s): return f"<code>{cell(s)}</code>" if cell(s) else ""
    body = []
    for k, v in rows:
        anno = v.get("anno"); anno = _anno(anno) if anno not in (None, inspect._empty) else None
        default = v.get("default"); default = _default(default) if default is not inspect._empty else None
        doc = _md.renderInline(v.get("docment") or "")
        label = "<em>returns</em>" if k == "return" else code(k)
        body.append(f"<tr><td>{label}</td><td>{code(anno)}</td><td>{code(default)}</td><td>{doc}</td></tr>")
    return ('<div class="ml-table-scroll"><table class="ml-params"><thead><tr><th>Parameter</th><th>Type</th>'
            '<th>Default</th><th>Details</th></tr></thead><tbody>' + "".join(body) + "</tbody></table></div>")


def render(obj, name: str, source_href: str | None = None) -> str:
    "The HTML block of `obj`: an anchored title, its signature, its docstring and its parameter table."
    sig = highlight(signature(obj, name), PythonLexer(), HtmlFormatter(nowrap=True))
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and doc == inspect.getdoc(object): doc = ""
    src = f' <a class="ml-sig-source" href="{html.escape(source_href)}">[source]</a>' if source_href else ""
    return (f'<div class="ml-sig" id="{html.escape(anchor(name))}">\n'
            f'<p class="ml-sig-name"><code>{html.escape(name)}</code>{src}</p>\n'
            f'<div class="highlight-python notranslate"><div class="highlight"><pre>{sig}</pre></div></div>\n'
            + (f'<div class="ml-sig-doc">{_md.render(doc)}</div>\n' if doc else "") + _doc_table(obj) + "</div>")


def show_doc_calls(source: str) -> list[tuple[str, str | None]]:
    "The `(expression, name=)` of each `show_doc(...)` in a cell's source."
    try: tree = ast.parse(source)
    except SyntaxError: return []
    out = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "show_doc":
            call = node.value
            if not call.args: continue
            name = next((k.value.value for k in call.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)), None)
            out.append((ast.unparse(call.args[0]), name))
    return out


def library_namespace(package: str = "ml_lifecycle") -> dict:
    "Every name the package's modules export (`__all__`), for `show_doc` of a name the notebook imported."
    ns, pkg = {}, importlib.import_module(package)
    for m in pkgutil.walk_packages(pkg.__path__, package + "."):
        if m.name.split(".")[-1].startswith("_"): continue
        try: mod = importlib.import_module(m.name)
        except Exception: continue
        for k in getattr(mod, "__all__", []):
            if hasattr(mod, k): ns.setdefault(k, getattr(mod, k))
    return ns


def resolve(expr: str, module_ns: dict, fallback: dict):
    "Evaluate a `show_doc` argument (a name or dotted attribute) in the notebook's module."
    return eval(expr, {"__builtins__": {}}, {**fallback, **module_ns})


def source_page(obj) -> tuple[str, str] | None:
    "The module and the qualified name `sphinx.ext.viewcode` files `obj`'s source under."
    if isinstance(obj, property): obj = obj.fget
    if isinstance(obj, functools.cached_property): obj = obj.func
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not mod or not qual or not mod.startswith("ml_lifecycle") or "<locals>" in qual: return None
    return mod, qual


def documented_names(package: str = "ml_lifecycle") -> set[str]:
    "The full names the API page documents (autodoc, `:members:`): each module's `__all__`, and its classes' public members."
    out, pkg = set(), importlib.import_module(package)
    for m in pkgutil.walk_packages(pkg.__path__, package + "."):
        if m.name.split(".")[-1].startswith("_"): continue
        try: mod = importlib.import_module(m.name)
        except Exception: continue
        for k in getattr(mod, "__all__", []):
            obj = getattr(mod, k, None)
            out.add(f"{m.name}.{k}")
            if inspect.isclass(obj) and obj.__module__ == m.name:
                out |= {f"{m.name}.{k}.{a}" for a in vars(obj) if not a.startswith("_")}
    return out
