"""Sphinx configuration for the Baseplate documentation."""

import sys
from pathlib import Path

from sphinx.ext import intersphinx

sys.path.insert(0, str(Path(__file__).parent))

import local_inventories  # found through the line above

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
exclude_patterns = ["_build"]
html_theme = "alabaster"
# Alabaster's fixed 940 px page clips code blocks on a 1280 px screen: the page
# takes the window's width instead, and the sidebar room for module names.
html_theme_options = {"page_width": "auto", "body_max_width": "none", "sidebar_width": "300px"}
html_static_path = ["_static"]
html_css_files = ["wide.css"]

# Every cross-reference must resolve: to these pages, to Python's
# documentation, or to a project listed in local_inventories.py. The build
# never uses the network: the inventories are local files.
nitpicky = True
intersphinx_mapping = {"python": local_inventories.python_inventory()}

nitpick_ignore = [
    # Type variables stand for any type; there is nothing to link to.
    ("py:class", "T"),
    ("py:class", "_T"),
    ("py:class", "baseplate.config._T"),
    ("py:class", "baseplate.config._U"),
    # Python's documentation names the enum of address families but does not
    # describe it as an object.
    ("py:class", "socket.AddressFamily"),
    # redis-py's published documentation leaves this pool out.
    ("py:class", "redis.BlockingConnectionPool"),
    ("py:class", "redis.connection.BlockingConnectionPool"),
    # The CQL mapper has no published documentation, only its source.
    ("py:class", "cqlmapper.connection.Connection"),
]
nitpick_ignore_regex = [
    # Apache Thrift's Python library publishes no API reference.
    ("py:.*", r"thrift\..*"),
]


def _resolve_as_imported(app, env, node, contnode):
    """Resolve a type that a class's signature names as its module imported it.

    Sphinx evaluates the string annotations of functions, but not those of a
    class's constructor under ``from __future__ import annotations``, so a
    parameter typed ``SpanProcessor`` reaches the docs as that bare name.
    Look the name up in the module whose object is documented, and ask the
    inventories again with the full name of what it imported.
    """
    if node.get("refdomain") != "py":
        return None
    found = sys.modules.get(node.get("py:module") or "")
    for part in node["reftarget"].split("."):
        found = getattr(found, part, None)
    if not isinstance(found, type) or found.__module__.split(".")[0] in ("baseplate", "bridge"):
        return None
    retry = node.deepcopy()
    retry["reftarget"] = f"{found.__module__}.{found.__qualname__}"
    return intersphinx.missing_reference(app, env, retry, contnode)


def _add_local_inventories(app, config):
    """Write the generated inventories into this build's doctree folder."""
    directory = Path(app.doctreedir) / "inventories"
    config.intersphinx_mapping.update(local_inventories.write_inventories(directory))


def setup(app):
    # Before intersphinx reads intersphinx_mapping (at config-inited too).
    app.connect("config-inited", _add_local_inventories, priority=100)
    app.connect("missing-reference", _resolve_as_imported)
