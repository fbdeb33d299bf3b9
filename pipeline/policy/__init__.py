"""The privacy policy: model, loader and the packaged default."""

from pipeline.policy.loader import default_policy_path, load_policy, parse_policy
from pipeline.policy.model import CATEGORIES, FieldRule, Policy

__all__ = ["CATEGORIES", "FieldRule", "Policy", "default_policy_path", "load_policy", "parse_policy"]
