"""Logging helpers shared by the package."""

from __future__ import annotations

import logging


class OncePerProcess(logging.Filter):
    """Drops an INFO (or lower) record whose message this process already logged. A sweep sets up the
    same data (directory, store, splits) for every run: that block of lines is worth reading once."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def log_repeats_once(*logger_names: str) -> None:
    """Install one shared `OncePerProcess` filter on each named logger."""
    once = OncePerProcess()
    for name in logger_names:
        logging.getLogger(name).addFilter(once)
