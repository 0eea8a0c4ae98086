"""Sphinx configuration for statsmodels-hetmixed.

Builds without network access: no intersphinx, no remote themes.  Formulas
use MathJax, which the browser loads when the pages are viewed.
"""

import os
import sys

# Document the package in this source tree, installed or not.
sys.path.insert(0, os.path.abspath(".."))

import statsmodels_hetmixed  # noqa: E402

project = "statsmodels-hetmixed"
author = "statsmodels-hetmixed developers"
copyright = "the statsmodels-hetmixed developers"
version = statsmodels_hetmixed.__version__
release = version

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
]

exclude_patterns = ["_build"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
language = "en"

# autodoc / numpydoc
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_inherit_docstrings = False
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Do not turn unresolvable references to statsmodels / numpy objects into
# warnings: the docs are built without intersphinx.
nitpicky = False

html_theme = "alabaster"
html_title = f"statsmodels-hetmixed {release}"
html_static_path = []
pygments_style = "sphinx"
