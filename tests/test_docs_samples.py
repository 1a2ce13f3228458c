"""Every code sample in the documentation runs.

Each page of ``docs/*.md`` and the README runs as one script, in a fresh temporary directory,
in one event loop, its blocks in order and sharing one namespace (so a page can build on an
earlier block, as a reader does):

* a ````python```` block is executed; if it uses ``await``, ``async for`` or ``async with`` at
  top level it is compiled as a coroutine and run in the page's event loop;
* a ````console```` block is a shell transcript: every ``$ asyncwal ...`` line is run with
  :func:`asyncwal.cli.main` and its output must match the lines that follow it (trailing
  spaces ignored; a line ``...`` matches any number of lines). ``2>&1`` merges stderr, and a
  trailing ``; echo "exit $?"`` prints the exit status, as a shell would;
* other blocks (``sh``, ``text``...) are not run. A ``python`` block right after the HTML
  comment ``<!-- not-run -->`` is not run either: for fragments only.

A page must close every log it opens.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import asyncwal
from asyncwal import cli

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
NOT_RUN = "<!-- not-run -->"
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<lang>[\w+-]*)\s*$")
_EXIT = '; echo "exit $?"'


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skipped: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def extract(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    previous = ""  # last non-blank line before the current one
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        start, indent, fence = i, len(m["indent"]), m["fence"]
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        blocks.append(Block(page, start + 1, m["lang"].lower(), "\n".join(body) + "\n", previous == NOT_RUN))
        previous = ""
        i += 1
    return blocks


def _runnable(page: Path) -> bool:
    return any(b.lang in ("python", "py", "console") and not b.skipped for b in extract(page))


def run_python(block: Block, namespace: dict[str, Any], runner: asyncio.Runner) -> None:
    code = compile(block.text, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    if code.co_flags & inspect.CO_COROUTINE:
        runner.run(eval(code, namespace))
    else:
        exec(code, namespace)


def transcript(block: Block) -> Iterator[tuple[str, list[str]]]:
    """``(command, expected output lines)`` of each ``$ `` line of a console block."""
    command: str | None = None
    expected: list[str] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            if command is not None:
                yield command, expected
            command, expected = line[2:].strip(), []
        elif command is None:
            raise AssertionError(f"{block.where}: output before the first $ command: {line!r}")
        else:
            expected.append(line)
    if command is not None:
        yield command, expected


def run_command(command: str, where: str) -> list[str]:
    """Run one ``asyncwal ...`` command line as a shell would; return its output lines."""
    show_status = command.endswith(_EXIT)
    if show_status:
        command = command[: -len(_EXIT)]
    argv = shlex.split(command)
    merge = argv[-1:] == ["2>&1"]
    if merge:
        argv = argv[:-1]
    assert argv[:1] == ["asyncwal"], f"{where}: only asyncwal commands can be checked: {command!r}"
    out = io.StringIO()
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out if merge else err):
        status = cli.main(argv[1:])
    lines = out.getvalue().splitlines()
    if show_status:
        lines.append(f"exit {status}")
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line, trailing spaces ignored; ``...`` matches any run of lines."""
    exp = [line.rstrip() for line in expected]
    act = [line.rstrip() for line in actual]

    def match(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and exp[i] == act[j] and match(i + 1, j + 1)

    return match(0, 0)


def run_console(block: Block) -> None:
    for command, expected in transcript(block):
        actual = run_command(command, block.where)
        if not matches(expected, actual):
            raise AssertionError(
                f"{block.where}: `{command}` printed\n" + "\n".join(actual) + "\n\nbut the page shows\n"
                "" + "\n".join(expected)
            )


@pytest.fixture
def page_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("COLUMNS", "FORCE_COLOR", "NO_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p)], ids=lambda p: p.name)
def test_page_samples_run(page: Path, page_dir: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    with asyncio.Runner() as runner:
        for block in extract(page):
            if block.skipped:
                continue
            if block.lang in ("python", "py"):
                run_python(block, namespace, runner)
            elif block.lang == "console":
                run_console(block)
        still_open = [name for name, v in namespace.items() if isinstance(v, asyncwal.Log) and not v.closed]
        assert not still_open, f"{page.name} leaves logs open: {still_open}"


def test_skip_markers_are_rare() -> None:
    """``<!-- not-run -->`` is for fragments: at most one per page."""
    for page in PAGES:
        skipped = [b.where for b in extract(page) if b.skipped]
        assert len(skipped) <= 1, skipped


def test_the_pages_with_samples_are_collected() -> None:
    runnable = {p.name for p in PAGES if _runnable(p)}
    expected = {"quickstart.md", "recovery.md", "cli.md", "operations.md", "exceptions.md", "testing.md"}
    assert expected <= runnable, expected - runnable


def test_api_reference_names_every_public_name() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [name for name in asyncwal.__all__ if f"`{name}" not in text and f"{name}(" not in text]
    assert not missing, f"docs/api.md does not document {missing}"
    log_methods = [n for n in dir(asyncwal.Log) if not n.startswith("_")]
    missing = [n for n in log_methods if f"`{n}" not in text and f".{n}" not in text]
    assert not missing, f"docs/api.md does not document Log.{missing}"
    fields = [f for f in asyncwal.Options.__dataclass_fields__]
    missing = [f for f in fields if f"`{f}`" not in text]
    assert not missing, f"docs/api.md does not document the options {missing}"


def test_every_exception_is_on_the_exceptions_page() -> None:
    text = (ROOT / "docs" / "exceptions.md").read_text(encoding="utf-8")
    errors = [
        name
        for name in asyncwal.__all__
        if isinstance(getattr(asyncwal, name), type) and issubclass(getattr(asyncwal, name), BaseException)
    ]
    missing = [name for name in errors if name not in text]
    assert not missing, f"docs/exceptions.md does not explain {missing}"


def test_stats_fields_are_documented_in_operations() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [f for f in asyncwal.Stats.__dataclass_fields__ if f"`{f}`" not in text]
    assert not missing, f"docs/operations.md does not explain Stats.{missing}"


def test_the_transcript_matcher() -> None:
    assert matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert matches(["a ", "..."], ["a"])
    assert not matches(["a", "z"], ["a", "b", "z"])


# -- facts the pages quote: from results files and from the code -----------------------------


def test_quoted_benchmark_figures_match_their_results() -> None:
    """Every generated block (``<!-- bench:KIND FILE... -->``) equals what ``python -m bench
    docs`` makes from the results files it names: a quoted figure changes only with its run."""
    from bench._docs import blocks_in, render_block

    seen = 0
    for page in PAGES:
        for block in blocks_in(page):
            seen += 1
            where = f"{page.relative_to(ROOT)}:{block.line}"
            for path in block.paths:
                assert (ROOT / path).is_file(), f"{where}: {path} does not exist"
            expected = render_block(block.kind, block.paths)
            assert block.body == expected, (
                f"{where}: the bench:{block.kind} block is not what {block.paths} give; "
                "run `python -m bench docs`"
            )
    assert seen >= 8  # the benchmarks pages and the README quote their runs this way


def test_benchmark_pictures_are_drawn_from_the_quoted_runs() -> None:
    """Each picture on the benchmarks page names, in its metadata, a results file that the
    page's tables quote, and every picture in docs/assets/bench is shown somewhere."""
    from bench._docs import ASSETS, blocks_in, png_source

    page = ROOT / "docs" / "benchmarks.md"
    quoted = {p for b in blocks_in(page) for p in b.paths}
    quoted |= {p for b in blocks_in(ROOT / "docs" / "benchmarks-appendix.md") for p in b.paths}
    shown = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    pictures = sorted(ASSETS.glob("*.png"))
    assert pictures
    for png in pictures:
        assert png_source(png) in quoted, f"{png.name} was drawn from {png_source(png)}, not a quoted run"
        assert f"assets/bench/{png.name}" in shown, f"{png.name} is not shown on any page"


#: Code blocks do not wrap: at 1280 px the site's text column shows this many columns.
CODE_COLUMNS = 80
#: Pages whose console blocks quote command output verbatim, some of it longer.
VERBATIM_OUTPUT = {"cli.md"}


def test_code_blocks_fit_the_page() -> None:
    too_long = []
    for page in PAGES:
        for block in extract(page):
            for i, line in enumerate(block.text.splitlines(), start=1):
                if len(line) <= CODE_COLUMNS:
                    continue
                output = block.lang == "console" and not line.startswith("$ ")
                if output and page.name in VERBATIM_OUTPUT:
                    continue
                too_long.append(f"{block.where}+{i}: {len(line)} columns: {line.strip()[:60]}")
    assert not too_long, "code lines cut off on the site:\n" + "\n".join(too_long)


def _sentences(page: Path) -> list[str]:
    """The page's sentences; each table row and each code line counts as one."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", page.read_text(encoding="utf-8")):
        lines = para.strip().splitlines()
        if lines and (lines[0].lstrip().startswith(("|", "```")) or para.startswith("    ")):
            out += lines
        else:
            out += re.split(r"(?<=[.!?]) ", re.sub(r"\s+", " ", para))
    return out


def test_the_zero_fill_size_quoted_is_the_codes() -> None:
    """A sentence about the zeros ahead of the write position that names a size names the
    code's step (it may compare it with others)."""
    from asyncwal._segment import PREALLOCATE_STEP

    step = f"{PREALLOCATE_STEP // 1024} KiB"
    size = re.compile(r"\b(\d+ (?:KiB|MiB)|a MiB|the first MiB|preallocated MiB)\b")
    wrong = [
        f"{page.name}: {s.strip()[:120]}"
        for page in PAGES
        if page.name != "changelog.md"  # history: what the step used to be
        for s in _sentences(page)
        if "zero" in s.lower() and size.search(s) and step not in s
    ]
    assert not wrong, f"zero fill is {step} at a time:\n" + "\n".join(wrong)


def _quoted_forms(value: object) -> set[str]:
    mib = 1024 * 1024
    if isinstance(value, bool):
        return {str(value)}
    if isinstance(value, int):
        return {f"{value // mib} MiB"} if value >= mib and value % mib == 0 else {str(value), f"{value:,}"}
    if isinstance(value, float):
        forms = {repr(value), f"{value:g}"}
        forms.add(f"{value * 1000:g} ms" if value < 1 else f"{value:g} s")
        return forms
    return {repr(value), f'"{value}"'}


def test_option_defaults_quoted_are_the_codes() -> None:
    """Wherever a page gives an option's default as "`name` (value" or "| `name` | value",
    the value is the default of ``asyncwal.Options``."""
    import dataclasses

    defaults = {
        f.name: f.default
        for f in dataclasses.fields(asyncwal.Options)
        if isinstance(f.default, (int, float))  # numbers and booleans; names are checked by api.md
    }
    checked = 0
    wrong = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for name, value in defaults.items():
            forms = _quoted_forms(value)
            for m in re.finditer(rf"`{name}`\s*(?:\(|\|\s*)([^),|]+)", text):
                quoted = m.group(1).strip().strip("`")
                if not re.match(r'^[\d"TF]', quoted):
                    continue  # not a value ("at least 4096", a description)
                checked += 1
                if not any(quoted == f or quoted.startswith(f + " ") for f in forms):
                    wrong.append(f"{page.name}: `{name}` quoted as {quoted!r}, default {value!r}")
    assert not wrong, "\n".join(wrong)
    assert checked >= 10
