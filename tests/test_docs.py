"""Documentation pages whose code must run as written: every python block
of the page runs, in order, in one namespace, and a ``text`` block that
follows a python block is what that block prints."""

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Pages checked here (the other pages' examples need minutes of fits or
# print long floats; see the summary/docs issue).
PAGES = ["adding_a_structure.rst", "predictions.rst", "score_test.rst",
         "small_sample.rst", "robust.rst", "moving_from_mixedlm.rst"]


def code_blocks(text):
    """(language, code) of each ``.. code-block::`` directive, in order."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"\.\. code-block:: (\w+)\s*$", lines[i])
        i += 1
        if not match:
            continue
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
            body.append(lines[i][3:])
            i += 1
        blocks.append((match.group(1), "\n".join(body).strip("\n")))
    return blocks


def test_code_blocks_are_found():
    blocks = code_blocks(".. code-block:: python\n\n   x = 1\n   y = 2\n\ntext\n"
                         ".. code-block:: text\n\n   1\n")
    assert blocks == [("python", "x = 1\ny = 2"), ("text", "1")]


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_as_written(page):
    namespace = {"__name__": "__docs__"}
    printed = None
    for language, code in code_blocks((DOCS / page).read_text()):
        if language == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{page}", "exec"), namespace)  # noqa: S102
            printed = out.getvalue()
        elif language == "text" and printed is not None:
            assert printed.strip() == code.strip(), f"{page}: output differs"
            printed = None
