"""A production worker whose processor raises for marked records (test launcher, not a test).

``python -m tests.agents.faulty_worker --web-port N`` builds the app exactly as
``privacy-pipeline worker`` does (``agents.app.create_app``), passing a wrapper around the
real :class:`~pipeline.processing.Processor`: ``process_batch`` raises ``RuntimeError`` for
any batch holding a record whose value contains :data:`POISON`. The app receives the
processor through its public ``processor`` argument, so no test-only code runs in
production modules.
"""

from __future__ import annotations

import argparse
from typing import Any

POISON = b"__raise_in_processing__"


class RaisingProcessor:
    """Delegates to ``inner``; ``process_batch`` raises when a record carries :data:`POISON`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def process_batch(self, records, **kwargs):
        if any(r.value is not None and POISON in r.value for r in records):
            raise RuntimeError("injected processing failure")
        return self._inner.process_batch(records, **kwargs)


def main() -> None:
    import faust

    from agents.app import create_app
    from pipeline.processing import Processor
    from pipeline.settings import load_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--web-port", type=int)
    args = parser.parse_args()
    settings = load_settings(web_port=args.web_port)
    app = create_app(settings, RaisingProcessor(Processor.from_settings(settings)))
    faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
