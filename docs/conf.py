"""Sphinx configuration for the Baseplate documentation."""

project = "Baseplate"
author = "The Baseplate developers"
copyright = "2026, The Baseplate developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
