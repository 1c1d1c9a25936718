"""structlog configuration: console rendering for people, JSON lines on request.

One event name per fact (`session_established`, `exabgp_exited`, ...) with bound context
(`node`, `peer`). Logs go to stderr so command output on stdout stays clean.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str | None = None, json: bool | None = None) -> None:
    """Set up structlog once per process. MESHSIM_LOG_LEVEL / MESHSIM_LOG_JSON=1 are the defaults."""
    level = (level or os.environ.get("MESHSIM_LOG_LEVEL") or "warning").lower()
    if json is None:
        json = os.environ.get("MESHSIM_LOG_JSON", "") not in ("", "0", "false")
    renderer: structlog.types.Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.WARNING)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: object) -> structlog.types.FilteringBoundLogger:
    return structlog.get_logger().bind(**context)


def file_logger(path: str, level: str | None = None, **context: object) -> structlog.types.FilteringBoundLogger:
    """A logger of its own writing JSON lines to `path` (one per node when many nodes share a process)."""
    level = (level or os.environ.get("MESHSIM_LOG_LEVEL") or "info").lower()
    stream = open(path, "a", buffering=1, encoding="utf-8")  # closed when the process ends
    logger = structlog.wrap_logger(
        structlog.PrintLogger(file=stream),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
    )
    return logger.bind(**context)
