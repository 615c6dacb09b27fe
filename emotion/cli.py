"""What every stage script shares: logging set-up and clean failure."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable


def setup_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def run(body: Callable[[], object], prog: str) -> int:
    """Run a stage's body: an expected failure is one line on stderr and exit 2."""
    from .errors import EmotionError

    setup_logging()
    try:
        body()
    except EmotionError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output was written", file=sys.stderr)
        return 130
    return 0
