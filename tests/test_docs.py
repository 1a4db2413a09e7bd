"""The documentation cannot rot: every Python example in ``docs/`` runs, every page is in the nav.

Python examples are doctest sessions inside fenced ``pycon`` (or ``python``) blocks. All blocks of
a page run in order in one namespace, in a fresh temporary working directory (so checkpoints the
examples save land there), with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``. Shell blocks (``bash``)
and other languages are shown, not run. A ``python`` block without ``>>>`` prompts fails: it could
not be tested, so it could rot.

The pages show NumPy arrays, whatever ``--backend`` says, so each page runs in one session only:
pages whose examples import PyTorch (``pytorch.md``) run where torch is installed, which is the
``--backend torch`` session (and ``--backend numpy`` when torch happens to be there); every other
page runs under ``--backend numpy``. Pages whose examples import onnx or onnxruntime
(``serving.md``) skip where those are missing.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
import re
from pathlib import Path

import pytest

import xprnn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.relative_to(DOCS).parts)
RUN = {"python", "py", "pycon"}
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*\.?(?P<lang>[\w+-]*)[^\n]*\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
NEEDS_TORCH = re.compile(r"^\s*(?:>>>|\.\.\.)\s+(?:import|from)\s+(?:torch|safetensors\.torch)\b",
                         re.MULTILINE)
NEEDS_ONNX = re.compile(r"^\s*(?:>>>|\.\.\.)\s+(?:import|from)\s+onnx(?:runtime)?\b",
                        re.MULTILINE)


def _blocks(text):
    """``(language, first line number, dedented body)`` of every fenced block."""
    for m in FENCE.finditer(text):
        indent = len(m["indent"])
        body = "".join(line[indent:] for line in m["body"].splitlines(keepends=True))
        yield m["lang"].lower(), text.count("\n", 0, m.start("body")) + 1, body


def _runnable(text):
    return [(line, body) for lang, line, body in _blocks(text) if lang in RUN]


def _needs(page, pattern):
    return any(pattern.search(body) for _, body in _runnable(page.read_text(encoding="utf-8")))


def _needs_torch(page):
    return _needs(page, NEEDS_TORCH)


def _page_test(page):
    """One DocTest holding every example of ``page``, with the page's own line numbers."""
    parser = doctest.DocTestParser()
    examples, bare = [], []
    for line, body in _runnable(page.read_text(encoding="utf-8")):
        found = parser.get_examples(body, name=str(page))
        if not found:
            bare.append(line)
        for ex in found:
            ex.lineno += line - 1  # doctest adds 1 when it reports
            examples.append(ex)
    name = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name
    return doctest.DocTest(examples, {"__name__": "__docs__"}, name, str(page), 0, None), bare


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_examples_run(page, backend, tmp_path, monkeypatch):
    torch_page = _needs_torch(page)
    if torch_page and backend in ("numpy", "torch"):
        pytest.importorskip("torch", reason="this page's examples need PyTorch")
    elif backend != "numpy":
        pytest.skip("the documentation's examples show NumPy arrays; they run under --backend "
                    "numpy (pages that import torch also under --backend torch)")
    if _needs(page, NEEDS_ONNX):
        for name in ("onnx", "onnxruntime"):
            pytest.importorskip(name, reason="this page's examples need onnx and onnxruntime")
    test, bare = _page_test(page)
    assert not bare, (
        f"{page.name}: python blocks starting at lines {bare} have no '>>>' prompts, so they "
        "cannot be tested; write them as doctest sessions (or mark shell commands ```bash)"
    )
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=out.write, clear_globs=True)
    assert result.failed == 0, out.getvalue()


def test_doctest_runner_catches_a_wrong_output(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```pycon\n>>> 1 + 1\n3\n\n```\n", encoding="utf-8")
    test, bare = _page_test(page)
    assert not bare and len(test.examples) == 1 and test.examples[0].lineno == 3
    out = io.StringIO()
    result = doctest.DocTestRunner(optionflags=FLAGS).run(test, out=out.write)
    assert result.failed == 1 and "line 4" in out.getvalue()


def test_python_blocks_without_prompts_are_flagged(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\n```bash\nxprnn --help\n```\n", encoding="utf-8")
    assert _page_test(page)[1] == [2]


def test_pages_that_import_torch_are_recognised():
    assert _needs_torch(DOCS / "pytorch.md")
    assert not _needs_torch(DOCS / "cells.md")
    assert _needs(DOCS / "serving.md", NEEDS_ONNX)
    assert not _needs(DOCS / "pytorch.md", NEEDS_ONNX)


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    named = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, re.MULTILINE))
    pages = {str(p.relative_to(DOCS)) for p in PAGES}
    assert pages - named == set(), "pages missing from the nav in mkdocs.yml"
    assert named - pages == set(), "the nav in mkdocs.yml names pages that do not exist"


def _importable(dotted):
    """Whether ``dotted`` names a module, or an attribute of one."""
    try:
        importlib.import_module(dotted)
    except ModuleNotFoundError:
        module, _, attr = dotted.rpartition(".")
        return hasattr(importlib.import_module(module), attr)
    return True


def test_every_public_module_is_in_the_api_reference():
    documented = set()
    for page in (DOCS / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: (xprnn[\w.]*)", page.read_text(), re.MULTILINE))
    public = {m.name for m in pkgutil.iter_modules(xprnn.__path__) if not m.name.startswith("_")}
    assert {f"xprnn.{m}" for m in public} - documented == set(), "add them under docs/api/"
    assert [d for d in sorted(documented) if not _importable(d)] == []
