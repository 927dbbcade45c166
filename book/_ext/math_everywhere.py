"""Sphinx extension: every page loads MathJax, not only those with equations in their body.

The sidebar shows chapter titles on every page, and a title with math (``\\(UV\\)``) would stay
raw TeX on a page without an equation of its own.
"""


def setup(app):
    app.set_html_assets_policy("always")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
