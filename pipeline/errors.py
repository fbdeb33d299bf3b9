"""The project's exception tree, grouped by what the caller can do about an error.

Every exception raised on purpose by ``pipeline`` derives from :class:`PipelineError`.
Messages never quote record content (bodies, numbers, emails, names): they name the
step, the field pointer (with data-like segments masked) or the setting instead.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error raised on purpose by the privacy pipeline."""


class ConfigError(PipelineError):
    """A setting, a policy file or an installed dependency is wrong; fix and restart."""


class PolicyError(ConfigError):
    """The policy YAML is invalid.

    ``str(err)`` names the file, the line (1-based) and the key path of every problem,
    for example ``policy.yaml:12: families.message.rules[0].category: Input should be
    'content', 'usage' or 'account'``.
    """

    def __init__(self, path: str, problems: list[tuple[int | None, str, str]]):
        self.path = path
        self.problems = problems
        lines = [
            f"{path}:{line if line is not None else '?'}: {key}: {msg}"
            for line, key, msg in problems
        ]
        super().__init__("invalid policy\n" + "\n".join(lines))


class ModelNotInstalledError(ConfigError):
    """The spaCy model named in the settings is not installed (never downloaded at run time)."""


class DecodeError(PipelineError):
    """A Kafka record value is not a decodable JSON object.

    ``kind`` is a stable machine-readable reason (``empty``, ``invalid_utf8``,
    ``invalid_json``, ``not_object``, ``too_deep``); ``message`` says where, never what:
    it holds byte offsets and types, never record content.
    """

    def __init__(self, kind: str, message: str):
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")


class OutputTooLargeError(PipelineError):
    """A routed output would exceed the producer's ``max_request_size`` (bytes)."""

    def __init__(self, topic: str, size: int, limit: int):
        self.kind = "output_too_large"
        self.message = f"output for {topic} is {size} bytes, over the producer limit of {limit}"
        super().__init__(self.message)
