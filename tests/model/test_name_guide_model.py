"""Name-guided decoding over the real embedded model: after ``util.``, where the repository
context shows module ``util``, the model writes its member instead of a name it makes up; the
guide changes nothing without a preamble, and guided runs are deterministic."""

from __future__ import annotations

import pytest

from tactful import paths
from tactful.backend.types import GenerateRequest

pytestmark = pytest.mark.model

PREAMBLE = (
    "<repo_name>shop<file_sep>shop/ledger.py\n"
    "def tally_receipts_by_vendor(receipts):\n"
    '    """Sum of receipts per vendor."""\n'
    "<file_sep>shop/util.py\n"
    "def normalise_vendor_code(code):\n"
    "    ...\n"
    "<file_sep>shop/report.py\n"
)
PREFIX = "from shop import ledger, util\n\n\ndef report(receipts, code):\n    code = util."


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    from tactful.backend.hf import TransformersBackend

    return TransformersBackend.load(None, cache_dir=paths.cache_dir())


def _gen(backend, guide: bool, preamble: str = PREAMBLE) -> str:  # type: ignore[no-untyped-def]
    req = GenerateRequest(prefix=PREFIX, preamble=preamble, guide_names=guide, max_new_tokens=12)
    return str(backend.generate(req).text)


def test_guide_writes_the_owners_member(backend) -> None:  # type: ignore[no-untyped-def]
    plain = _gen(backend, False)
    guided = _gen(backend, True)
    assert not plain.startswith("normalise_vendor_code"), plain  # the model alone makes one up
    assert guided.startswith("normalise_vendor_code"), guided
    assert _gen(backend, True) == guided


def test_no_preamble_no_effect(backend) -> None:  # type: ignore[no-untyped-def]
    assert _gen(backend, True, "") == _gen(backend, False, "")
