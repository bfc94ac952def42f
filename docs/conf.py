# Sphinx configuration of the docs site, built by docs/build.py from the executed notebooks of
# the last green run (see the README). nbs/_quarto.yml stays for `nbdev_docs` wherever Quarto exists.
import configparser, pathlib, sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))   # site_ext.py
_cfg = configparser.ConfigParser(); _cfg.read(pathlib.Path(__file__).parents[1]/"settings.ini")
project = _cfg["DEFAULT"]["lib_name"]
author = _cfg["DEFAULT"]["author"]
copyright = _cfg["DEFAULT"]["copyright"]
release = _cfg["DEFAULT"]["version"]

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode",
              "sphinx_copybutton", "site_ext"]
nb_execution_mode = "off"            # pages show the outputs of the real run, never re-executed
nb_output_stderr = "remove"          # kernel warnings are not content
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
html_theme = "furo"
html_title = "ml_lifecycle"
html_static_path = ["_static"]
html_css_files = ["site.css"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type", "misc.highlighting_failure", "myst.header"]

# API reference: autodoc of the exported modules; site_ext adds each parameter's docments comment
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
add_module_names = False
default_role = "code"                # `name` in a docstring is code, as in the notebooks' Markdown
autodoc_mock_imports = []

# Math: MathJax 2.7 from the jupyter-server-mathjax wheel, copied into _static/mathjax by site_ext (no CDN)
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True,
                "processClass": "math|output_area", "ignoreClass": "document"},
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None},
    "menuSettings": {"zoom": "Click"},
}

# Copy buttons: the prompt-free code of cells and signatures
copybutton_exclude = ".linenos, .gp, .go"
