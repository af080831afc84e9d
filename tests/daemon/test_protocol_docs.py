"""docs/osc.md shows the table the daemon serves, and every address in it has a handler."""

from __future__ import annotations

import re
from pathlib import Path

from sao_live.daemon import protocol
from sao_live.daemon.osc import HANDLERS, PREFIX_ARGS, PREFIX_HANDLERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "osc.md"


def test_docs_table_is_generated_from_the_protocol():
    text = DOC.read_text()
    block = text.split(protocol.BEGIN, 1)[1].split(protocol.END, 1)[0]
    assert block == protocol.markdown(), "run: python -m sao_live.daemon.protocol docs/osc.md"


def test_every_documented_address_has_a_handler_and_back():
    documented = {r.address for r in protocol.PROTOCOL if r.address.startswith("/")}
    served = set(HANDLERS) | {p + PREFIX_ARGS[p] for p in PREFIX_HANDLERS}
    assert documented == served


def test_every_error_code_in_the_rows_is_explained():
    codes = {c.strip() for r in protocol.PROTOCOL for c in r.errors.split(",") if c.strip()}
    codes = {c.split(" ")[0] for c in codes}
    assert codes <= set(protocol.ERRORS), codes - set(protocol.ERRORS)


def test_every_error_code_the_code_raises_is_explained():
    root = Path(__file__).resolve().parents[2] / "sao_live"
    sources = [root / "request.py", *sorted((root / "daemon").glob("*.py"))]
    raised = set()
    for path in sources:
        text = path.read_text()
        raised |= set(re.findall(r'RequestError\(\s*"([a-z_]+)"', text))
        raised |= set(re.findall(r'_error\(r, "([a-z_]+)"', text))
    assert len(raised) > 20
    assert raised <= set(protocol.ERRORS), raised - set(protocol.ERRORS)
