"""Weight storage in 2 MiB pages.

A decode step streams every byte of its weights once, and with 4 KiB pages a stream crosses a page (a TLB miss
and a page walk, and a stop for the hardware prefetcher) every 4 KiB. Measured with bench/kernels.py's pools on
this project's 2-vCPU machine, M = 1 on 2048 x 7168: 22.6 GB/s from 4 KiB pages, 25-26.5 GB/s from 2 MiB ones.
Linux's transparent huge pages give them to anonymous private memory that asks (``madvise``); where THP is off or
the platform lacks ``MADV_HUGEPAGE``, this is plain ``torch.empty`` memory.
"""

from __future__ import annotations

import math
import mmap

import torch

HUGE_PAGE = 2 << 20


def empty_huge(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous tensor whose memory asks for 2 MiB pages (tensors under 2 MiB: ``torch.empty``)."""
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < HUGE_PAGE or advice is None:
        return torch.empty(shape, dtype=dtype)
    # Private and anonymous: a shared mapping would be shmem, which THP leaves alone by default. One spare page
    # lets the tensor start on a 2 MiB boundary; the tensor keeps the mapping alive.
    region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    region.madvise(advice)
    raw = torch.frombuffer(region, dtype=torch.uint8)
    start = (-raw.data_ptr()) % HUGE_PAGE
    return raw[start : start + nbytes].view(dtype).view(shape)


def in_huge_pages(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``tensor`` in :func:`empty_huge` memory."""
    return empty_huge(tuple(tensor.shape), tensor.dtype).copy_(tensor)
