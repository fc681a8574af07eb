"""Blocked weights ask for 2 MiB pages: aligned, usable, and plain memory below a page."""

from __future__ import annotations

import torch

from swarmkeep.kernels.cpu.huge_pages import HUGE_PAGE, empty_huge, in_huge_pages


def test_large_tensors_start_on_a_huge_page_and_hold_their_data() -> None:
    source = torch.arange(3 * HUGE_PAGE // 4, dtype=torch.int32).reshape(3, -1)
    copy = in_huge_pages(source)
    assert copy.data_ptr() % HUGE_PAGE == 0
    assert copy.is_contiguous() and copy.shape == source.shape and copy.dtype == torch.int32
    del source
    torch.testing.assert_close(copy.sum(), torch.arange(3 * HUGE_PAGE // 4, dtype=torch.int32).sum())


def test_small_tensors_are_plain_memory() -> None:
    small = empty_huge((16, 16), torch.bfloat16)
    assert small.shape == (16, 16) and small.dtype == torch.bfloat16
