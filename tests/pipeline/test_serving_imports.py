"""A worker's serving process runs detection and anonymisation in its detector processes, so
it must not import spaCy, presidio-analyzer or presidio-anonymizer (~90 MB resident each time
they are imported): they are imported where text is analysed or anonymised, on first use."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("spacy", "thinc", "presidio_analyzer", "presidio_anonymizer", "lingua")

_SERVING = """
import json, sys
HEAVY = '__HEAVY__'
from pipeline.detection.pool import PooledDetector  # the worker's detector class (no children here)
from pipeline.policy import load_policy
from pipeline.processing import Processor
from pipeline.records import SourceRecord
from pipeline.settings import Settings
proc = Processor(load_policy(), Settings(secret_hash_key="k", pseudonym_key="p"), detector=None)
rec = SourceRecord("cpaas.calls.v1", 0, 0, None, b'{"sid": "CA1", "from": "+14155550100", "duration": 3}')
outs = proc.process_batch([rec])[0].outputs
before = [m for m in HEAVY if m in sys.modules]
env = next(o for o in outs if o.topic.endswith("anonymise.v1"))
proc.anonymise_batch([SourceRecord("privacy.anonymise.v1", 0, 0, None, env.value)])
after = [m for m in HEAVY if m in sys.modules]
print(json.dumps([len(outs), before, after]))
"""


def test_serving_path_imports_no_nlp_library_until_it_anonymises():
    code = _SERVING.replace(repr("__HEAVY__"), repr(HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    n_outputs, before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert n_outputs >= 2  # classified and routed (retention, anonymise) ...
    assert before == []  # ... with none of them imported
    assert "presidio_anonymizer" in after  # anonymising in this process imports it on first use


def test_operator_classes_are_still_reachable_from_pipeline_anonymise():
    from pipeline import anonymise, anonymise_operators

    for name in ("PseudonymiseOperator", "EncryptOperator", "MaskOperator", "TruncateIpOperator"):
        assert getattr(anonymise, name) is getattr(anonymise_operators, name)
