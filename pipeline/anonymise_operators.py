"""The anonymiser's presidio-anonymizer side: the project's operators and the engine they are
registered with (:func:`build_engine`), used by :class:`pipeline.anonymise.Anonymiser`.

A module of its own because presidio-anonymizer imports presidio-analyzer and spaCy (~90 MB
resident): :mod:`pipeline.anonymise` imports this module on first use only, so a worker's
serving process, whose anonymisation runs in its detector processes, never loads them.
"""

from __future__ import annotations

from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.operators import Operator, OperatorType

from pipeline.anonymise import mask, truncate_ip
from pipeline.errors import ConfigError

__all__ = ["EncryptOperator", "MaskOperator", "PseudonymiseOperator", "TruncateIpOperator", "build_engine"]


class _ProjectOperator(Operator):
    name = ""

    def operator_name(self) -> str:
        return self.name

    def operator_type(self) -> OperatorType:
        return OperatorType.Anonymize

    def validate(self, params: dict | None = None) -> None:
        return None


class PseudonymiseOperator(_ProjectOperator):
    """params: ``pseudonymiser``, ``entity``, ``account_id``, ``purpose``."""

    name = "pp_pseudonymise"

    def operate(self, text: str, params: dict | None = None) -> str:
        p = params or {}
        return p["pseudonymiser"](text, entity=p["entity"], account_id=p.get("account_id"), purpose=p["purpose"])

    def validate(self, params: dict | None = None) -> None:
        if not callable((params or {}).get("pseudonymiser")):
            raise ConfigError("pp_pseudonymise needs a pseudonymiser")


class EncryptOperator(_ProjectOperator):
    """params: ``cipher`` (:class:`SivCipher`), ``entity``."""

    name = "pp_encrypt"

    def operate(self, text: str, params: dict | None = None) -> str:
        p = params or {}
        return p["cipher"].encrypt(text, entity=p["entity"])

    def validate(self, params: dict | None = None) -> None:
        if (params or {}).get("cipher") is None:
            raise ConfigError("the policy uses the encrypt operator but PRIVACY_PIPELINE_MASTER_KEY is not set")


class MaskOperator(_ProjectOperator):
    """params: ``keep_last``, ``masking_char``."""

    name = "pp_mask"

    def operate(self, text: str, params: dict | None = None) -> str:
        p = params or {}
        return mask(text, int(p.get("keep_last", 0)), p.get("masking_char", "*"))


class TruncateIpOperator(_ProjectOperator):
    name = "pp_truncate_ip"

    def operate(self, text: str, params: dict | None = None) -> str:
        return truncate_ip(text)


class _FixedOperator(_ProjectOperator):
    """Returns ``params["value"]``: the precomputed output of an overlap group's winner."""

    name = "pp_fixed"

    def operate(self, text: str, params: dict | None = None) -> str:
        return (params or {})["value"]


def build_engine() -> AnonymizerEngine:
    """A presidio-anonymizer ``AnonymizerEngine`` with the project's operators added
    (``pp_pseudonymise``, ``pp_encrypt``, ``pp_mask``, ``pp_truncate_ip``, ``pp_fixed``) next to
    its own ``replace``, ``redact`` and ``keep``."""
    engine = AnonymizerEngine()
    for cls in (PseudonymiseOperator, EncryptOperator, MaskOperator, TruncateIpOperator, _FixedOperator):
        engine.add_anonymizer(cls)
    return engine
