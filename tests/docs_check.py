"""Run the documentation's code as written and compare what it prints.

Convention (see docs/architecture.rst, "Documentation that runs"):

* Every ``.. code-block:: python`` of a page in ``docs/`` (and every
  ```` ```python ```` block of ``README.md``) runs, in the page's order, in
  one namespace per page, with the repository root as working directory.
* A python block's standard output is shown in the next code block of the
  page when that block is ``.. code-block:: text`` (```` ```text ```` in
  Markdown); prose may stand between the two.  A block that prints must be
  followed by its output, and a ``text`` block after a python block that
  prints nothing is an error: every output shown is what the code prints.
* Outputs are compared line by line.  Text must agree exactly, up to the
  width of runs of spaces (a printed number may change its width, e.g.
  ``-0.000`` and ``0.000``).  Integers must agree exactly.  A number with a
  decimal point (or an exponent) may differ from the shown one by one unit
  in its last printed digit (a rounding flip caused by the BLAS) plus
  ``RTOL`` times its size (full float reprs), no more.
* Warnings are not part of the output (they go to standard error); a page
  that shows one prints it from ``warnings.catch_warnings(record=True)``.

Regenerate the shown outputs of pages from what their code prints now::

    python -m tests.docs_check --update docs/location_scale.rst README.md
    python -m tests.docs_check --update           # every page
    python -m tests.docs_check docs/stata.rst     # check only, with timings

``--update`` rewrites only the outputs that do not match (within the
tolerance above) and inserts a ``text`` block after a python block that
prints but shows nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import re
import sys
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
RTOL = 1e-6

_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")


@dataclasses.dataclass
class Block:
    """A code block: its language, code (indentation removed) and where its
    body lies in the file (``start``/``end`` line indices, ``end``
    exclusive), with the indentation of the body."""

    language: str
    code: str
    start: int
    end: int
    indent: str
    line: int  # 1-based line of the directive or fence, for messages


def rst_blocks(text: str) -> list[Block]:
    """``.. code-block:: LANG`` directives of an rst page, in order."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = re.match(r"(\s*)\.\. code-block:: (\w+)\s*$", lines[i])
        i += 1
        if not match:
            continue
        directive_line = i
        outer = len(match.group(1))
        # options (":caption: ...") then the body, indented more than the
        # directive; blank lines belong to the body until it ends
        while i < len(lines) and re.match(r"\s+:\w[\w-]*:", lines[i]):
            i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        start = i
        end = i
        while i < len(lines) and (not lines[i].strip()
                                  or len(lines[i]) - len(lines[i].lstrip()) > outer):
            i += 1
            if lines[i - 1].strip():
                end = i
        body = lines[start:end]
        indents = [len(s) - len(s.lstrip()) for s in body if s.strip()]
        width = min(indents) if indents else outer + 3
        code = "\n".join(s[width:] for s in body).strip("\n")
        blocks.append(Block(match.group(2), code, start, end, " " * width,
                            directive_line))
        i = end
    return blocks


def markdown_blocks(text: str) -> list[Block]:
    """Fenced ```` ```LANG ```` blocks of a Markdown page, in order."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = re.match(r"```(\w*)\s*$", lines[i])
        i += 1
        if not match:
            continue
        start = i
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        code = "\n".join(lines[start:i]).strip("\n")
        blocks.append(Block(match.group(1), code, start, i, "", start))
        i += 1
    return blocks


def page_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    return markdown_blocks(text) if path.suffix == ".md" else rst_blocks(text)


def all_pages() -> list[Path]:
    """Every documentation page: docs/**/*.rst (not a build) and README.md."""
    found = sorted(p for p in DOCS.rglob("*.rst")
                   if not any(part.startswith("_") for part in
                              p.relative_to(DOCS).parts))
    return found + [README]


def pages() -> list[Path]:
    """Every page with python blocks."""
    return [p for p in all_pages()
            if any(b.language == "python" for b in page_blocks(p))]


def page_name(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclasses.dataclass
class Run:
    """One python block after running it: what it printed, the ``text``
    block that shows its output (if any) and the error it raised."""

    block: Block
    printed: str
    shown: Block | None
    error: str | None
    seconds: float
    cpu_seconds: float


def run_page(path: Path) -> list[Run]:
    """Run the python blocks of a page in order in one namespace.  Stops at
    the first block that raises (later blocks depend on it)."""
    blocks = page_blocks(path)
    namespace = {"__name__": "__docs__"}
    runs = []
    cwd = os.getcwd()
    # a page may change warning filters or matplotlib state: keep them local
    with warnings.catch_warnings():
        os.chdir(ROOT)
        try:
            import matplotlib
            matplotlib.use("Agg")
        except ImportError:  # pragma: no cover - plots are optional
            pass
        try:
            for k, block in enumerate(blocks):
                if block.language != "python":
                    continue
                nxt = blocks[k + 1] if k + 1 < len(blocks) else None
                shown = nxt if nxt is not None and nxt.language == "text" else None
                out = io.StringIO()
                error = None
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    with contextlib.redirect_stdout(out):
                        exec(compile(block.code, f"{page_name(path)}:{block.line}",  # noqa: S102
                                     "exec"), namespace)
                except Exception:  # noqa: BLE001 - reported with the page
                    error = traceback.format_exc(limit=-3)
                runs.append(Run(block, out.getvalue(), shown, error,
                                time.perf_counter() - t0,
                                time.process_time() - c0))
                if error:
                    break
        finally:
            os.chdir(cwd)
            try:
                import matplotlib.pyplot as plt
                plt.close("all")
            except ImportError:  # pragma: no cover
                pass
    return runs


def _unit(token: str) -> float:
    """One unit in the last printed digit of a number token."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def _numbers_agree(shown: str, printed: str) -> bool:
    is_int = not re.search(r"[.eE]", shown) and not re.search(r"[.eE]", printed)
    a, b = float(shown), float(printed)
    if is_int:
        return a == b
    tol = max(_unit(shown), _unit(printed)) + RTOL * max(abs(a), abs(b))
    return abs(a - b) <= tol * (1 + 1e-12)


def _split(line: str) -> tuple[list[str], list[str]]:
    texts = [re.sub(r"\s+", " ", t) for t in _NUMBER.split(line)]
    return texts, _NUMBER.findall(line)


def compare(shown: str, printed: str) -> str | None:
    """``None`` when ``printed`` agrees with ``shown`` under the module's
    rules, else a message naming the first line that differs."""
    a = [s.rstrip() for s in shown.strip("\n").splitlines()]
    b = [s.rstrip() for s in printed.strip("\n").splitlines()]
    for n, (x, y) in enumerate(zip(a, b), 1):
        tx, nx = _split(x)
        ty, ny = _split(y)
        if (tx != ty or len(nx) != len(ny)
                or not all(_numbers_agree(p, q) for p, q in zip(nx, ny))):
            return f"line {n} of the output differs:\n  shown:   {x}\n  printed: {y}"
    if len(a) != len(b):
        return (f"the output has {len(b)} lines, the page shows {len(a)}"
                f" (first extra line: {(b + a)[min(len(a), len(b))]!r})")
    return None


def problems(path: Path, runs: list[Run]) -> list[str]:
    """What is wrong with a page: blocks that raise, outputs that differ,
    outputs not shown, shown outputs of blocks that print nothing."""
    out = []
    name = page_name(path)
    for run in runs:
        where = f"{name}, python block at line {run.block.line}"
        if run.error:
            out.append(f"{where} raises:\n{run.error}")
            continue
        printed = run.printed.strip("\n")
        if run.shown is None:
            if printed:
                out.append(f"{where} prints {len(printed.splitlines())} lines"
                           " that the page does not show (follow it with a"
                           " text block, or print less)")
            continue
        if not printed:
            out.append(f"{where} prints nothing, but the text block at line"
                       f" {run.shown.line} shows output")
            continue
        message = compare(run.shown.code, printed)
        if message:
            out.append(f"{where}: {message}")
    return out


def update(path: Path, runs: list[Run]) -> int:
    """Rewrite the shown outputs of a page that do not match what its code
    prints; return how many blocks were rewritten or inserted."""
    lines = path.read_text().splitlines()
    md = path.suffix == ".md"
    edits = []  # (start, end, new lines), applied bottom-up
    for run in runs:
        if run.error:
            raise RuntimeError(f"{page_name(path)}: cannot update, a block "
                               f"raises:\n{run.error}")
        printed = run.printed.strip("\n")
        if run.shown is not None:
            if not printed:
                raise RuntimeError(
                    f"{page_name(path)}: the python block at line "
                    f"{run.block.line} prints nothing but is followed by a "
                    "text block: remove it by hand")
            if compare(run.shown.code, printed) is None:
                continue
            body = [(run.shown.indent + s).rstrip() for s in printed.splitlines()]
            if run.shown.start == run.shown.end:  # empty block: keep a blank line
                body = body + [""]
            edits.append((run.shown.start, run.shown.end, body))
        elif printed:
            body = [s.rstrip() for s in printed.splitlines()]
            if md:
                new = ["", "```text"] + body + ["```"]
                at = run.block.end + 1  # after the closing fence
            else:
                indent = run.block.indent
                directive = indent[:-3] if len(indent) >= 3 else ""
                new = ["", f"{directive}.. code-block:: text", ""] + \
                    [(indent + s).rstrip() for s in body]
                at = run.block.end
            edits.append((at, at, new))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = new
    if edits:
        path.write_text("\n".join(lines) + "\n")
    return len(edits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.docs_check",
        description="Run the documentation's python blocks and compare what "
                    "they print with the outputs the pages show.")
    parser.add_argument("pages", nargs="*", type=Path,
                        help="pages to check (default: every page)")
    parser.add_argument("--times", action="store_true",
                        help="print each block's wall-clock and CPU seconds")
    parser.add_argument("--update", action="store_true",
                        help="rewrite the shown outputs from what the code prints")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.pages] or pages()
    status = 0
    for path in paths:
        t0, c0 = time.perf_counter(), time.process_time()
        runs = run_page(path)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if args.update:
            try:
                n = update(path, runs)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                status = 1
                continue
            print(f"{page_name(path)}: {n} output(s) rewritten ({seconds:.1f} s)")
            if n:
                continue
        if args.times:
            for run in runs:
                print(f"  line {run.block.line}: {run.seconds:.1f} s"
                      f" ({run.cpu_seconds:.1f} s CPU)")
        found = problems(path, runs)
        slow = max(runs, key=lambda r: r.seconds, default=None)
        print(f"{page_name(path)}: {len(runs)} python blocks, {seconds:.1f} s"
              f" ({cpu:.1f} s CPU)"
              + (f", slowest: line {slow.block.line}, {slow.seconds:.1f} s"
                 f" ({slow.cpu_seconds:.1f} s CPU)" if slow else "")
              + (", OK" if not found else f", {len(found)} problem(s)"))
        for message in found:
            print("  " + message.replace("\n", "\n  "))
        status = status or bool(found)
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
