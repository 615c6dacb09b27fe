"""What every stage script shares: its parser, logging set-up and clean failure."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable


def parser(usage: str) -> argparse.ArgumentParser:
    """An argument parser whose --help starts with the stage's usage text, as written."""
    return argparse.ArgumentParser(description=usage,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def setup_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


# glibc returns every large buffer (> 128 KiB by default) to the system when it is
# freed, so each training step of a CNN maps and zero-fills its activations anew:
# measured here, 2 epochs of a small CNN (the former log-mel audio encoder) on 256
# clips took 12.3 s with the default and 4.3 s with these thresholds (1.06 M against
# 0.24 M page faults).
# Memory stays bounded by the peak in use.
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20


def tune_allocator() -> bool:
    """Keep large freed buffers for reuse (glibc only; elsewhere a no-op)."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)
                    and libc.mallopt(m_trim_threshold, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def run_main(argv: list[str] | None, get_parser: Callable[[], argparse.ArgumentParser],
             body: Callable[[argparse.Namespace], object], prog: str) -> int:
    """A stage's main(): parse `argv`, then run ``body(args)`` as :func:`run` does."""
    args = get_parser().parse_args(argv)
    return run(lambda: body(args), prog)


def run(body: Callable[[], object], prog: str) -> int:
    """Run a stage's body: an expected failure is one line on stderr and exit 2."""
    from emotion.core.errors import EmotionError

    setup_logging()
    tune_allocator()
    try:
        body()
    except EmotionError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output was written", file=sys.stderr)
        return 130
    return 0
