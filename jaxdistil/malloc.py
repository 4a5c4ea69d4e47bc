"""glibc's malloc arenas, limited for a long run.

A run's resident memory grows with its checkpoint saves while the bytes in use stay flat: TensorStore
allocates on one thread and frees on another, and glibc keeps what is freed in per-thread arenas (up
to 8 per core) that only grow (google/tensorstore#223; docs/performance.md, "Soak"). Two arenas cut the
soak benchmark's growth 3-4 times at no measured cost to the step; one arena is no flatter and slows a
host-bound run. So the trainer sets that limit before JAX starts its threads.

glibc reads `MALLOC_ARENA_MAX` once, when the process starts; `mallopt(M_ARENA_MAX)` sets the same
limit later, for every thread not yet given an arena. JAX creates its thread pools (and their arenas)
when its backend first starts, not on import, so calling `limit_arenas` before the first
`jax.devices()` reaches them all. The variable is also exported, so the processes a run starts (data
workers) begin with the same limit. Not glibc (macOS, musl): nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import platform
import tempfile

ENV = "MALLOC_ARENA_MAX"
ARENAS = 2  # the trainer's default (docs/performance.md, Soak); 0 keeps glibc's
_M_ARENA_MAX = -8  # glibc's malloc.h


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)  # the process's own symbols: the libc it runs on


def limit_arenas(arenas: int = ARENAS) -> str:
    """Limits glibc to `arenas` malloc arenas (0: glibc's default) unless `MALLOC_ARENA_MAX` is already
    set, which glibc has read and which wins; says in one line what holds, for the run's log."""
    if os.environ.get(ENV):
        return f"malloc arenas: {ENV}={os.environ[ENV]} from the environment"
    if arenas <= 0:
        return "malloc arenas: glibc's default (8 per core)"
    libc = _glibc()
    if libc is None:
        return "malloc arenas: not glibc, left as they are"
    if libc.mallopt(_M_ARENA_MAX, arenas) != 1:
        return f"malloc arenas: mallopt(M_ARENA_MAX, {arenas}) was refused; left as they are"
    os.environ[ENV] = str(arenas)
    return f"malloc arenas: at most {arenas} (glibc's {ENV}; docs/performance.md, Soak)"


def arena_count() -> int | None:
    """How many malloc arenas this process has now (glibc's `malloc_info`); None where it is not glibc."""
    libc = _glibc()
    if libc is None:
        return None
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.TemporaryDirectory() as scratch:
        path = pathlib.Path(scratch) / "malloc_info.xml"
        stream = libc.fopen(str(path).encode(), b"w")
        if not stream:
            return None
        try:
            libc.malloc_info(0, stream)
        finally:
            libc.fclose(stream)
        return path.read_text().count("<heap nr=")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def heap_mib() -> tuple[float, float] | None:
    """(MiB in use, MiB free but kept in the arenas) from glibc's `mallinfo2`: a leak grows the first,
    an allocator holding on to freed memory only the second. None where it is not glibc (or glibc < 2.33)."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20
