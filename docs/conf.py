# Sphinx configuration of the docs site, built by docs/build.py from the executed notebooks of
# the last green run (see the README). nbs/_quarto.yml stays for `nbdev_docs` wherever Quarto exists.
import configparser, pathlib

_cfg = configparser.ConfigParser(); _cfg.read(pathlib.Path(__file__).parents[1]/"settings.ini")
project = _cfg["DEFAULT"]["lib_name"]
author = _cfg["DEFAULT"]["author"]
copyright = _cfg["DEFAULT"]["copyright"]
release = _cfg["DEFAULT"]["version"]

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
nb_execution_mode = "off"            # pages show the outputs of the real run, never re-executed
nb_output_stderr = "remove"          # kernel warnings are not content
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
html_theme = "furo"
html_title = "ml_lifecycle"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type", "misc.highlighting_failure", "myst.header"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
