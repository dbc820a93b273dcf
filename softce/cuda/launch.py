"""How the CUDA kernels are launched: thread groups per row, rows per block, grid size."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .runtime import MAX_THREADS, SIMULATOR


@dataclass(frozen=True)
class LaunchConfig:
    """How row kernels are launched.

    threads_per_row: threads of the group that reduces one row (a power of two, 32..512);
        None picks by row length: one warp for rows of up to 1024 elements, else about 32
        elements per thread, up to max_threads_per_row.
    max_threads_per_row: the cap of that choice (the simulator runs a Python thread per CUDA
        thread).
    block_threads: threads per block for short rows; a block holds
        max(1, block_threads // threads_per_row) rows.
    max_blocks: the grid's size limit; more rows than that loop in grid strides.
    """

    threads_per_row: int | None = None
    max_threads_per_row: int = 64 if SIMULATOR else MAX_THREADS
    block_threads: int = 64 if SIMULATOR else 256
    max_blocks: int = 4 if SIMULATOR else 65535


CONFIG = LaunchConfig()


def configure(**changes: object) -> LaunchConfig:
    """Change the launch configuration (fields of LaunchConfig); returns the previous one."""
    global CONFIG
    new = replace(CONFIG, **changes)
    for name in ("threads_per_row", "max_threads_per_row"):
        t = getattr(new, name)
        if t is not None and (t < 32 or t > MAX_THREADS or t & (t - 1)):
            raise ValueError(f"{name} must be a power of two in [32, {MAX_THREADS}], got {t}")
    if not 32 <= new.block_threads <= MAX_THREADS or new.block_threads % 32:
        raise ValueError(f"block_threads must be a multiple of 32 in [32, {MAX_THREADS}], got "
                         f"{new.block_threads}")
    if new.max_blocks < 1:
        raise ValueError(f"max_blocks must be positive, got {new.max_blocks}")
    old, CONFIG = CONFIG, new
    return old


def threads_for(work: int) -> int:
    """Threads per row for rows of ``work`` elements."""
    if CONFIG.threads_per_row is not None:
        return CONFIG.threads_per_row
    if work <= 1024:
        return 32  # one warp
    t = 1 << max(6, (-(-work // 32) - 1).bit_length())
    return max(32, min(t, CONFIG.max_threads_per_row))


def row_launch(rows: int, work: int) -> tuple[int, tuple[int, int]]:
    """(grid, (threads per row, rows per block)) for a row kernel."""
    width = threads_for(work)
    groups = max(1, CONFIG.block_threads // width)
    grid = max(1, min(-(-rows // groups), CONFIG.max_blocks))
    return grid, (width, groups)


def flat_launch(size: int) -> tuple[int, int]:
    """(grid, threads per block) for an elementwise kernel over ``size`` elements."""
    threads = CONFIG.block_threads
    return max(1, min(-(-size // threads), CONFIG.max_blocks)), threads
