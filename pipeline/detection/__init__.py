"""PII detection in free text (Presidio recognizers on spaCy), offline."""

from pipeline.detection.config import DetectionConfig
from pipeline.detection.engine import Detector
from pipeline.detection.types import EntitySpan

__all__ = ["DetectionConfig", "Detector", "EntitySpan"]
