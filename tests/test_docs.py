"""The documentation runs as written: every python block of every page in
docs/ and of README.md runs, in order, in one namespace per page, and every
output a page shows is what its code prints (tests/docs_check.py states the
convention and the float tolerance; ``python -m tests.docs_check --update
PAGE`` regenerates the shown outputs)."""

import re

import pytest

from tests import docs_check
from tests.docs_check import DOCS, README, compare, page_name

# Each page runs once per session (its blocks share one namespace).
_RUNS = {}


def _runs(page):
    if page not in _RUNS:
        _RUNS[page] = docs_check.run_page(docs_check.ROOT / page)
    return _RUNS[page]


PAGES = [page_name(p) for p in docs_check.pages()]
# Pages whose fits take more than 5 s (measured, one idle core): location
# scale models with quadrature and profile intervals (about 70 s), the
# README (13 s), Stata's MixedLM fit of the expanded data (8 s).
SLOW_PAGES = {"docs/location_scale.rst", "README.md", "docs/stata.rst"}


@pytest.mark.parametrize("page", [
    pytest.param(page, marks=pytest.mark.slow_docs) if page in SLOW_PAGES
    else page for page in PAGES])
def test_page_runs_as_written(page):
    runs = _runs(page)
    found = docs_check.problems(docs_check.ROOT / page, runs)
    assert not found, "\n".join(found) + (
        f"\n(regenerate the shown outputs: python -m tests.docs_check --update {page})")


# Languages of code blocks: python runs, text shows output, the others are
# shell commands or another program's input that the pages do not run.
LANGUAGES = {"python", "text", "bash", "stata", "r"}


def unchecked_code(path):
    """Why code on a page would escape the check (empty when it cannot):
    another spelling of a python block (``.. code::``, ``pycon``, a ``>>>``
    session, python in a ``::`` literal block), or a page with python blocks
    that the tests do not run."""
    text = path.read_text()
    name = page_name(path)
    found = []
    if re.search(r"^\s*\.\. (code|sourcecode|doctest|ipython|jupyter-execute|"
                 r"testcode)::", text, re.M):
        found.append(f"{name}: a code directive other than code-block")
    if re.search(r"^\s*>>>", text, re.M):
        found.append(f"{name}: a >>> session (write python + text blocks)")
    blocks = docs_check.page_blocks(path)
    languages = {b.language for b in blocks} - LANGUAGES
    if languages:
        found.append(f"{name}: code blocks in {sorted(languages)}")
    fenced = len(re.findall(r"^\s*(\.\. code-block:: python|```python)\s*$",
                            text, re.M))
    if fenced != sum(b.language == "python" for b in blocks):
        found.append(f"{name}: python blocks the parser does not find")
    if fenced and name not in PAGES:
        found.append(f"{name} has python blocks but is not checked")
    for match in re.finditer(r"::\n\n((?:   .*\n|\n)+)", text):
        if re.search(r"^\s*(import |from \w+ import|print\()", match.group(1),
                     re.M):
            found.append(f"{name}: python in a literal block")
    return found


def test_every_page_with_code_is_checked():
    """A page added to docs/ is checked: all its python runs."""
    found = [m for p in docs_check.all_pages() for m in unchecked_code(p)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("text", [
    ".. code-block:: pycon\n\n   1 + 1\n",
    ".. code:: python\n\n   x = 1\n",
    "Example:\n\n   >>> x = 1\n",
    "Run::\n\n   import numpy as np\n   print(np.pi)\n",
])
def test_unchecked_code_is_found(tmp_path, text):
    page = tmp_path / "new_page.rst"
    page.write_text("Title\n=====\n\n" + text)
    assert unchecked_code(page)


def test_new_page_is_checked(monkeypatch, tmp_path):
    """pages() finds a new page with a python block (also in a folder)."""
    (tmp_path / "guide").mkdir()
    page = tmp_path / "guide" / "new.rst"
    page.write_text("New\n===\n\n.. code-block:: python\n\n   x = 1\n")
    monkeypatch.setattr(docs_check, "DOCS", tmp_path)
    assert page in docs_check.pages()
    assert unchecked_code(page) == [f"{page} has python blocks but is not checked"]


def test_blocks_are_found():
    rst = (".. code-block:: python\n\n   x = 1\n\n   y = 2\n\nprose\n\n"
           ".. code-block:: text\n   :caption: out\n\n   1\n")
    blocks = docs_check.rst_blocks(rst)
    assert [(b.language, b.code) for b in blocks] == [
        ("python", "x = 1\n\ny = 2"), ("text", "1")]
    md = "text\n```python\nprint(1)\n```\n\n```text\n1\n```\n"
    assert [(b.language, b.code) for b in docs_check.markdown_blocks(md)] == [
        ("python", "print(1)"), ("text", "1")]


@pytest.mark.parametrize("shown, printed, agree", [
    ("x  13.347", "x  13.347", True),
    ("x  13.347", "x  13.348", True),          # a rounding flip of the last digit
    ("x  13.347", "x  13.349", False),         # a real change
    ("-0.000  1.0", "0.000  1.0", True),       # signed zero changes the width
    ("p=0.006355672549949144", "p=0.006355672549951", True),   # RTOL on a repr
    ("p=0.006355672549949144", "p=0.006356672549949144", False),
    ("1.5e-03", "1.6e-03", True),
    ("1.5e-03", "1.7e-03", False),
    ("No. Groups: 160", "No. Groups: 161", False),   # integers are exact
    ("var(school)  8.091", "var(class)  8.091", False),
    ("a\nb", "a", False),
    ("float64", "float32", False),
])
def test_compare(shown, printed, agree):
    assert (compare(shown, printed) is None) == agree


def test_update_rewrites_outputs(tmp_path):
    page = tmp_path / "page.rst"
    page.write_text("Title\n\n.. code-block:: python\n\n   print(1.25)\n\n"
                    "prints\n\n.. code-block:: text\n\n   7.5\n\n"
                    ".. code-block:: python\n\n   print('a')\n   x = 2\n\nend\n")
    runs = docs_check.run_page(page)
    assert len(docs_check.problems(page, runs)) == 2
    assert docs_check.update(page, runs) == 2
    text = page.read_text()
    assert "   1.25\n" in text and "7.5" not in text
    assert text.count(".. code-block:: text") == 2 and text.endswith("end\n")
    assert docs_check.problems(page, docs_check.run_page(page)) == []
    md = tmp_path / "README.md"
    md.write_text("# x\n\n```python\nprint(3)\n```\n\nend\n")
    assert docs_check.update(md, docs_check.run_page(md)) == 1
    assert "```python\nprint(3)\n```\n\n```text\n3\n```\n\nend" in md.read_text()
    assert docs_check.problems(md, docs_check.run_page(md)) == []


def test_failures_are_reported_and_warning_filters_restored(tmp_path):
    """A block that raises is reported (the later blocks do not run), and a
    page's warning filters do not leak into the suite."""
    import warnings
    page = tmp_path / "page.rst"
    page.write_text(".. code-block:: python\n\n   import warnings\n"
                    "   warnings.simplefilter('error')\n   warnings.warn('w')\n\n"
                    ".. code-block:: python\n\n   print(1)\n")
    before = list(warnings.filters)
    runs = docs_check.run_page(page)
    assert warnings.filters == before
    assert len(runs) == 1 and "UserWarning: w" in runs[0].error
    assert "raises" in docs_check.problems(page, runs)[0]


def test_slow_pages_exist():
    assert SLOW_PAGES <= set(PAGES)
