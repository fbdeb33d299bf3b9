"""Keep PII out of logs: libraries that log analysed text at DEBUG are capped at INFO.

presidio-analyzer logs the context words of every text at DEBUG ("Context list is: ...");
a worker run at ``PRIVACY_PIPELINE_LOG_LEVEL=DEBUG`` would otherwise write message bodies
to its log. Our own log lines name topics, partitions, offsets, rule names and masked
pointers, never values.
"""

from __future__ import annotations

import logging

#: Loggers of dependencies that put analysed text into DEBUG records. The Kafka clients log
#: whole requests and responses (record keys and values, SASL handshakes) and every produced
#: key and value at DEBUG: found by tests/agents/test_bad_input_worker.py. A logger's filter
#: does not apply to its children's records, so each emitting module is named.
TEXT_LOGGING_LIBRARIES = ("presidio-analyzer", "presidio-anonymizer", "presidio_analyzer",
                          "presidio_anonymizer", "spacy", "tldextract",
                          "aiokafka.conn", "aiokafka.producer.producer", "kafka.net.connection",
                          "kafka.protocol.parser", "kafka.producer.kafka", "kafka.producer.sender",
                          "kafka.conn")


class _BelowLevelFilter(logging.Filter):
    """Drops records below ``level``; leaves the logger's own level (and the root's) alone."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def cap_text_logging_libraries(level: int = logging.INFO) -> None:
    """Drop records below ``level`` from :data:`TEXT_LOGGING_LIBRARIES` loggers (idempotent).

    A filter, not ``setLevel``: the configured level (WARNING for offline commands) still
    applies on top."""
    for name in TEXT_LOGGING_LIBRARIES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _BelowLevelFilter) for f in logger.filters):
            logger.addFilter(_BelowLevelFilter(level))
