"""Keep PII out of logs: libraries that log analysed text at DEBUG are capped at INFO.

presidio-analyzer logs the context words of every text at DEBUG ("Context list is: ...");
a worker run at ``PRIVACY_PIPELINE_LOG_LEVEL=DEBUG`` would otherwise write message bodies
to its log. Our own log lines name topics, partitions, offsets, rule names and masked
pointers, never values.
"""

from __future__ import annotations

import logging

#: Loggers of dependencies that put analysed text into DEBUG records.
TEXT_LOGGING_LIBRARIES = ("presidio-analyzer", "presidio-anonymizer", "presidio_analyzer",
                          "presidio_anonymizer", "spacy", "tldextract")


def cap_text_logging_libraries(level: int = logging.INFO) -> None:
    """Raise the level of :data:`TEXT_LOGGING_LIBRARIES` loggers to at least ``level`` (idempotent)."""
    for name in TEXT_LOGGING_LIBRARIES:
        logger = logging.getLogger(name)
        if logger.level < level:
            logger.setLevel(level)
