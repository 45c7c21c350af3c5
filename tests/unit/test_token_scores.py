"""The scoring pass's log-probabilities, computed a few positions at a time (``scoring.token_scores``).

A speed change that must not change a single result: the flag classifier was trained on the
scoring pass's features, so the test compares bit for bit with the whole-chunk arithmetic."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import itertools  # noqa: E402

from tactful.backend import scoring  # noqa: E402


@pytest.mark.parametrize("rows", [1, 2, 7, 8, 9, 16, 17, 25, 127, 128])
def test_row_blocks_cover_the_rows_without_a_lone_last_row(rows: int) -> None:
    blocks = scoring.row_blocks(rows)
    assert blocks[0][0] == 0 and blocks[-1][1] == rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    sizes = [hi - lo for lo, hi in blocks]
    assert all(1 <= s <= scoring.SCORE_ROWS + 1 for s in sizes)
    assert rows == 1 or min(sizes) >= 2


def _whole_chunk(logits: torch.Tensor, targets: torch.Tensor) -> tuple[list, list, list]:
    """The scoring pass's arithmetic before the row blocks: the whole chunk at once."""
    n = len(targets)
    logp = torch.log_softmax(logits.float(), dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return (
        logp[torch.arange(n), targets].tolist(),
        entropy[:n].tolist(),
        (logp[:n].argmax(-1) == targets).tolist(),
    )


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("rows", "with_last"), [(1, True), (2, False), (9, False), (17, True), (33, True), (128, True)]
)
def test_token_scores_in_row_blocks_equal_the_whole_chunk_bit_for_bit(
    threads: int, rows: int, with_last: bool
) -> None:
    """Rows without a next token (the last position of a text) are left out of the results."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(rows)
        logits = (torch.randn(rows, 49152, generator=gen) * 4).to(torch.bfloat16)
        n = rows if with_last else rows - 1
        targets = torch.randint(0, 49152, (n,), generator=gen)
        targets[: n // 2] = logits[: n // 2].float().argmax(-1)  # some greedy tokens
        got = scoring.token_scores(torch, logits, targets)
        assert got == _whole_chunk(logits, targets)
        assert len(got[0]) == n and any(got[2]) == (n // 2 > 0)
    finally:
        torch.set_num_threads(before)
