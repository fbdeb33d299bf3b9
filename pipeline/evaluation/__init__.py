"""Offline evaluations (accuracy against labelled data, throughput)."""

from pipeline.evaluation.detection_eval import (
    SCORED_TYPES,
    format_detection_report,
    run_detection_eval,
    run_throughput,
)

__all__ = ["SCORED_TYPES", "format_detection_report", "run_detection_eval", "run_throughput"]
