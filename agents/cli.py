"""The ``privacy-pipeline`` console script.

Each subcommand is one small ``_add_<name>(subparsers)`` function that declares its
arguments and sets ``func``; adding a command means writing one such function and listing
it in :data:`COMMANDS`. Heavy modules (Faust, Kafka clients, Presidio) are imported inside
the command functions so ``--help`` stays fast.

Exit codes: 0 success, 1 the job failed (not everything accounted for, broker or worker
error), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("privacy_pipeline.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: The message size limit of offline commands (``classify``), whose output is a stream and not
#: Kafka messages: the largest a Python bytes object is in practice, so nothing is over it.
OFFLINE_MAX_BYTES = sys.maxsize
#: The reader of stdout closed it (SIGPIPE's conventional status, 128 + 13).
EXIT_BROKEN_PIPE = 141

#: Formats accepted by ``--format`` (see ``pipeline.adapters``).
FORMATS = ("auto", "json", "cloudevents", "asterisk-csv")


def _settings(**overrides):
    from pipeline.settings import load_settings

    return load_settings(**overrides)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _setup_logging(level: str) -> None:
    from pipeline.logsafety import cap_text_logging_libraries

    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    cap_text_logging_libraries()  # Kafka clients and Presidio log record values at DEBUG


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run", help="the main job: broker, topics, worker, sample events, summary",
        description="Run the streaming job end to end. Without --broker an embedded broker is "
        "started (sample events are never written into a configured cluster); topics are "
        "created, a worker started, events produced (a generated Twilio-shaped sample unless "
        "--input), every event accounted for, a summary printed, and everything started is "
        "stopped.")
    p.add_argument("--input", metavar="FILE", type=Path, help="JSON Lines file to feed instead of the sample")
    p.add_argument("--format", default="auto", choices=FORMATS, help="input line format (default: auto)")
    p.add_argument("--events", type=int, default=3000, metavar="N",
                   help="generated events when there is no --input (default: 3000)")
    p.add_argument("--broker", metavar="URL",
                   help="use this Kafka cluster (host:port or kafka://host:port) instead of an embedded broker")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the generated sample (default: 7 on the embedded broker; a new "
                   "one per run with --broker, so event ids never repeat on a cluster)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="longest wait for every event to be accounted for (default: 300)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from agents.runner import render_summary, run_job

    problem = None if args.input is None else _input_problem(args.input, regular=True)
    if problem is not None:
        print(f"privacy-pipeline run: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.events < 1:
        print("privacy-pipeline run: --events must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    import signal
    import time

    seed = args.seed if args.seed is not None else (7 if args.broker is None else int(time.time()))
    console = _console()
    err = _console(stderr=True)

    def _terminate(signum, frame):  # SIGTERM: stop what was started, like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    report = run_job(settings=_settings(), input_path=args.input, fmt=args.format, events=args.events,
                     broker=args.broker, seed=seed, timeout=args.timeout,
                     status=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    render_summary(report, console)
    return EXIT_OK if report.ok else EXIT_FAILED


# --------------------------------------------------------------------------------------------
# worker
# --------------------------------------------------------------------------------------------


def _add_worker(sub) -> None:
    p = sub.add_parser(
        "worker", help="run a Faust worker (production; `faust -A agents.app worker` also works)",
        description="Start the Faust worker: creates missing topics, classifies the input topics, "
        "anonymises, serves /metrics, /healthz and /readyz on the web port. Settings come from "
        "PRIVACY_PIPELINE_* environment variables (PRIVACY_PIPELINE_KAFKA_BROKER or KAFKA_BROKER).")
    p.add_argument("--web-port", type=int, metavar="N", help="web port (default: PRIVACY_PIPELINE_WEB_PORT or 6066)")
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(web_port=args.web_port)
    if not settings.kafka_broker:
        print("privacy-pipeline worker: set PRIVACY_PIPELINE_KAFKA_BROKER (or KAFKA_BROKER) to "
              "host:port[,host:port]", file=sys.stderr)
        return EXIT_USAGE
    import faust

    from agents.app import create_app

    # Faust makes the data directory without its parents: the relative default
    # (var/privacy-pipeline) would fail in a fresh checkout.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()  # returns when stopped (SIGTERM/SIGINT)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# produce
# --------------------------------------------------------------------------------------------


def _add_produce(sub) -> None:
    p = sub.add_parser("produce", help="produce a JSON Lines file to a topic (progress bar)",
                       description="Produce one Kafka record per non-blank line of FILE to topic T "
                       "on PRIVACY_PIPELINE_KAFKA_BROKER (or --broker). Lines are not validated: "
                       "undecodable ones are dead-lettered by the worker.")
    p.add_argument("--topic", required=True, metavar="T", help="full topic name, e.g. cpaas.messages.v1")
    p.add_argument("--format", default="json", choices=FORMATS, help="line format (default: json, as is)")
    p.add_argument("--broker", metavar="URL", help="bootstrap servers (overrides the settings)")
    p.add_argument("--key-field", metavar="NAME", help="use this top-level JSON field as the record key")
    p.add_argument("file", metavar="FILE", type=Path, help="JSON Lines file")
    p.set_defaults(func=cmd_produce)


def cmd_produce(args: argparse.Namespace) -> int:
    problem = _input_problem(args.file, regular=True)
    if problem is not None:
        print(f"privacy-pipeline produce: {problem}", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings(kafka_broker=args.broker)
    if not settings.kafka_broker:
        print("privacy-pipeline produce: no broker; pass --broker or set PRIVACY_PIPELINE_KAFKA_BROKER",
              file=sys.stderr)
        return EXIT_USAGE
    from kafka import KafkaProducer
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from agents.topics import producer_config
    from pipeline.adapters import Rejection, adapt_line
    from pipeline.offline import iter_lines

    with args.file.open("rb") as fh:
        total = sum(1 for line in iter_lines(fh) if line.strip())
    producer = KafkaProducer(**producer_config(settings))
    sent = failed = 0
    rejected: list[int] = []  # line numbers (1-based) not in the declared --format
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=_console(stderr=True)) as progress:
            task = progress.add_task(f"→ {args.topic}", total=total)
            futures = []
            with args.file.open("rb") as fh:
                for number, line in enumerate(iter_lines(fh), 1):
                    if not line.strip():
                        continue
                    value, hint = adapt_line(line, args.format) if args.format != "json" else (line, None)
                    if isinstance(hint, Rejection):
                        rejected.append(number)
                        progress.update(task, advance=1)
                        continue
                    key = _key_of(value, args.key_field) if args.key_field else None
                    futures.append(producer.send(args.topic, key=key, value=value))
                    if len(futures) >= 500:
                        sent, failed = _drain(futures, sent, failed)
                        progress.update(task, completed=sent + failed + len(rejected))
            producer.flush()
            sent, failed = _drain(futures, sent, failed)
            progress.update(task, completed=sent + failed + len(rejected))
    finally:
        producer.close(timeout=10)
    print(f"produced {sent} records to {args.topic}" + (f", {failed} failed" if failed else ""),
          file=sys.stderr)
    if rejected:
        shown = ", ".join(str(n) for n in rejected[:10]) + (", ..." if len(rejected) > 10 else "")
        print(f"not produced: {len(rejected)} line(s) not in the format {args.format} (line {shown})",
              file=sys.stderr)
    return EXIT_OK if not failed and not rejected else EXIT_FAILED


def _drain(futures: list, sent: int, failed: int) -> tuple[int, int]:
    for fut in futures:
        try:
            fut.get(timeout=60)
            sent += 1
        except Exception as exc:
            failed += 1
            log.error("produce failed: %s", type(exc).__name__)
    futures.clear()
    return sent, failed


def _key_of(value: bytes, field: str) -> bytes | None:
    import orjson

    try:
        v = orjson.loads(value).get(field)
    except Exception:
        return None
    return str(v).encode() if v is not None else None


# --------------------------------------------------------------------------------------------
# classify (offline)
# --------------------------------------------------------------------------------------------


def _add_classify(sub) -> None:
    p = sub.add_parser("classify", help="classify JSON Lines offline (envelopes on stdout)",
                       description="Offline classification: one envelope or dead-letter record per "
                       "input line, same order, JSON Lines on stdout. Counts go to stderr.")
    p.add_argument("--policy", metavar="FILE", type=Path, help="policy YAML (default: the packaged policy)")
    p.add_argument("--event-type", default="auto", choices=("message", "call", "account", "auto"),
                   help="event family of every line (default: auto, inferred per line)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="input line format (default: auto)")
    p.add_argument("input", nargs="?", default="-", metavar="INPUT", help="input file, or - for stdin (default)")
    p.set_defaults(func=cmd_classify)


def cmd_classify(args: argparse.Namespace) -> int:
    from pipeline.offline import classify_stream
    from pipeline.processing import Processor

    try:
        infile = _open_input(args.input)  # before the models load: a wrong path fails fast
    except FileNotFoundError as exc:
        print(f"privacy-pipeline classify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # offline output goes to stdout, not to a producer: no message size limit, so a dead
    # letter keeps the original bytes whatever their size
    settings = _settings(policy=args.policy, producer_max_request_size=OFFLINE_MAX_BYTES)
    try:
        settings.check_keys(log)
        processor = Processor.from_settings(settings)
        counts = classify_stream(infile, sys.stdout.buffer, processor=processor,
                                 event_type=args.event_type, fmt=args.format)
    finally:
        if infile is not sys.stdin.buffer:
            infile.close()
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# topics
# --------------------------------------------------------------------------------------------


def _add_topics(sub) -> None:
    p = sub.add_parser("topics", help="effective topic settings on the cluster vs the policy",
                       description="Show each topic the pipeline uses with the partitions, "
                       "retention.ms and cleanup.policy the policy asks for next to the cluster's "
                       "effective values. --apply creates missing topics and aligns configs.")
    p.add_argument("--broker", metavar="URL", help="bootstrap servers (overrides the settings)")
    p.add_argument("--policy", metavar="FILE", type=Path, help="policy YAML (default: the packaged policy)")
    p.add_argument("--apply", action="store_true", help="create missing topics and align configs")
    p.set_defaults(func=cmd_topics)


def cmd_topics(args: argparse.Namespace) -> int:
    settings = _settings(kafka_broker=args.broker, policy=args.policy)
    if not settings.kafka_broker:
        print("privacy-pipeline topics: no broker; pass --broker or set PRIVACY_PIPELINE_KAFKA_BROKER",
              file=sys.stderr)
        return EXIT_USAGE
    from rich.table import Table

    from agents.runner import _topic_specs
    from agents.topics import describe, ensure_topics
    from pipeline.processing import Processor

    specs = _topic_specs(settings, Processor)
    statuses = (ensure_topics if args.apply else describe)(settings, specs)
    table = Table(title=f"Topics on {settings.kafka_broker}", title_justify="left")
    for col in ("topic", "partitions", "retention.ms", "cleanup.policy", "status"):
        table.add_column(col)
    bad = 0
    for st in statuses:
        def pair(key: str, st=st) -> str:
            want, have = st.config.get(key), st.effective.get(key)
            if want is None:
                return have or "-"
            return want if have == want else f"[red]{have or '-'}[/red] (policy {want})"

        parts = str(st.actual_partitions or "-")
        if st.actual_partitions is not None and st.actual_partitions != st.partitions:
            parts = f"[yellow]{st.actual_partitions}[/yellow] (policy {st.partitions})"
        status = st.action
        if status in ("missing", "differs"):
            bad += 1
            status = f"[red]{status}[/red]"
        table.add_row(st.name, parts, pair("retention.ms"), pair("cleanup.policy"), status)
    _console().print(table)
    return EXIT_OK if not bad else EXIT_FAILED


# --------------------------------------------------------------------------------------------
# replay / backfill (operations; agents/ops.py)
# --------------------------------------------------------------------------------------------


def _add_replay(sub) -> None:
    p = sub.add_parser(
        "replay", help="send dead letters back to their input topic after a fix",
        description="Read privacy.deadletter.v1 (consumer group <app_id>-replay, default "
        "privacy-pipeline-replay) and produce each dead letter's original key and bytes to its "
        "source input topic with a 'replay-attempt' header. The worker carries that header into a "
        "new dead letter, so a record that fails again stops after --max-attempts. Dead letters "
        "whose raw bytes were omitted (too large), whose source is not an input topic or that are "
        "over the limit are reported, not replayed. Starts at the group's committed offset (the "
        "beginning on the first run) unless --from-offset or --since; stops at the dead letters "
        "that existed when it started.",
        epilog="Fix and deploy the worker first; then 'replay --dry-run' to see what would go, "
        "then 'replay'. Example: privacy-pipeline replay --reason invalid_json --since 24h")
    p.add_argument("--broker", metavar="URL", help="bootstrap servers (overrides the settings)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-offset", type=int, metavar="N",
                       help="start at offset N of every dead-letter partition (ignores the group's position)")
    start.add_argument("--since", metavar="TIMESTAMP",
                       help="start at the first dead letter at or after TIMESTAMP: ISO 8601 "
                       "(2026-11-30T17:00:00Z), epoch seconds/milliseconds, or a time ago (24h, 7d)")
    p.add_argument("--reason", action="append", default=[], metavar="KIND",
                   help="replay only dead letters of this error kind (e.g. invalid_json; repeatable)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="replays allowed per record; one that already had N is reported and skipped "
                   "(default: 3)")
    p.add_argument("--dry-run", action="store_true",
                   help="decide and report only: produce nothing, commit nothing")
    p.add_argument("--idle", type=float, default=3.0, metavar="S",
                   help="stop when no dead letter arrives for S seconds (default: 3)")
    p.set_defaults(func=cmd_replay)


def _ops_settings(cmd: str, broker: str | None, **overrides):
    settings = _settings(kafka_broker=broker, **overrides)
    if not settings.kafka_broker:
        print(f"privacy-pipeline {cmd}: no broker; pass --broker or set PRIVACY_PIPELINE_KAFKA_BROKER",
              file=sys.stderr)
        return None
    return settings


def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=_console(stderr=True), transient=False)


def cmd_replay(args: argparse.Namespace) -> int:
    from agents.ops import parse_timestamp, replay

    if args.max_attempts < 1:
        print("privacy-pipeline replay: --max-attempts must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.from_offset is not None and args.from_offset < 0:
        print("privacy-pipeline replay: --from-offset must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    settings = _ops_settings("replay", args.broker)
    if settings is None:
        return EXIT_USAGE
    since = parse_timestamp(args.since) if args.since else None
    with _progress() as progress:
        task = progress.add_task("dead letters", total=None)
        report = replay(settings, from_offset=args.from_offset, since_ms=since, dry_run=args.dry_run,
                        reasons=args.reason, max_attempts=args.max_attempts, idle_s=args.idle,
                        on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    from rich.table import Table

    verb = "would replay" if report.dry_run else "replayed"
    table = Table(title="replay" + (" (dry run)" if report.dry_run else ""), title_justify="left")
    table.add_column("outcome")
    table.add_column("records", justify="right")
    table.add_row("consumer group", report.group)
    table.add_row("dead letters read", f"{report.read:,}")
    for topic, n in sorted(report.by_topic.items()):
        table.add_row(f"{verb} to {topic}", f"{n:,}")
    labels = {"filtered": "not matching --reason", "raw_omitted": "skipped: raw bytes omitted",
              "max_attempts": "skipped: over --max-attempts", "not_input_topic": "skipped: source not an input topic",
              "unreadable": "skipped: not a dead-letter record"}
    for action, n in sorted(report.counts.items()):
        if action != "replay":
            table.add_row(labels.get(action, action), f"{n:,}")
    if report.skipped_before_since:
        table.add_row("before --since", f"{report.skipped_before_since:,}")
    if report.failed:
        table.add_row("[red]produce failed[/red]", f"{len(report.failed):,}")
    _console().print(table)
    for (t, p, o), d in report.skipped[:20]:
        src = "" if d.source is None else f" (source {d.source[0]}[{d.source[1]}]@{d.source[2]})"
        print(f"skipped {t}[{p}]@{o}{src}: {d.kind or '?'}: {d.detail or d.action}", file=sys.stderr)
    if len(report.skipped) > 20:
        print(f"... and {len(report.skipped) - 20} more skipped", file=sys.stderr)
    if report.failed:
        print(f"privacy-pipeline replay: {len(report.failed)} records could not be produced "
              f"(first: {report.failed[0][1]}); offsets were not committed past them: check the "
              "broker and the Write ACLs on the input topics, then run replay again", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _add_backfill(sub) -> None:
    p = sub.add_parser(
        "backfill", help="re-classify input history under a new policy version",
        description="Re-read the input topics from --from (to --to, default: now) and classify, "
        "route and anonymise every record under --policy (default: the settings' policy) with a "
        "consumer group of its own (<app_id>-backfill-<policy version>). Outputs carry the new "
        "version (header privacy-policy, field policy_version) and a privacy-backfill header. "
        "They go to the normal output topics (consumers de-duplicate on event-id and tell versions "
        "apart by privacy-policy) or, with --topic-prefix, to prefixed copies created on the way. "
        "Accounts in privacy.deletions.v1 are treated as deleted. Re-running with the same policy "
        "version resumes from the group's committed offsets.",
        epilog="Example: privacy-pipeline backfill --from 2026-11-30T00:00:00Z --policy new-policy.yaml "
        "--topic-prefix privacy-pipeline-backfill-2026.12.01.")
    p.add_argument("--from", dest="from_", required=True, metavar="TIMESTAMP",
                   help="first record time: ISO 8601 (2026-11-30T17:00:00Z), epoch seconds/milliseconds, "
                   "or a time ago (24h, 7d)")
    p.add_argument("--to", metavar="TIMESTAMP", help="stop before this record time (default: when the backfill starts)")
    p.add_argument("--policy", metavar="FILE", type=Path, help="the new policy YAML (default: the settings' policy)")
    p.add_argument("--topic-prefix", default="", metavar="P",
                   help="write outputs to P + topic name (created with the policy's retention) instead "
                   "of the normal output topics; the ACLs allow the prefix privacy-pipeline-backfill")
    p.add_argument("--broker", metavar="URL", help="bootstrap servers (overrides the settings)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="records per batch (default: 256)")
    p.add_argument("--idle", type=float, default=5.0, metavar="S",
                   help="stop when the inputs stay idle for S seconds (default: 5)")
    p.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> int:
    from agents.ops import backfill, format_ms, parse_timestamp

    if args.policy is not None and not args.policy.is_file():
        print(f"privacy-pipeline backfill: no such policy file: {args.policy}", file=sys.stderr)
        return EXIT_USAGE
    if args.batch_size < 1:
        print("privacy-pipeline backfill: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    settings = _ops_settings("backfill", args.broker)
    if settings is None:
        return EXIT_USAGE
    from_ms = parse_timestamp(args.from_)
    to_ms = parse_timestamp(args.to) if args.to else None
    err = _console(stderr=True)
    with _progress() as progress:
        task = progress.add_task("records", total=None)
        report = backfill(settings, from_ms=from_ms, to_ms=to_ms, policy=args.policy,
                          topic_prefix=args.topic_prefix, batch_size=args.batch_size, idle_s=args.idle,
                          on_progress=lambda done, total: progress.update(task, completed=done, total=total),
                          status=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    from rich.table import Table

    table = Table(title="backfill", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("window", f"{format_ms(report.from_ms)} → {format_ms(report.to_ms)}")
    table.add_row("policy version", report.policy_version)
    table.add_row("consumer group", report.group)
    if report.topic_prefix:
        table.add_row("topic prefix", report.topic_prefix)
    table.add_row("input records", f"{report.read:,}")
    for outcome, n in sorted(report.outcomes.items()):
        table.add_row(f"  {outcome}", f"{n:,}")
    for topic, n in sorted(report.produced.items()):
        table.add_row(f"→ {topic}", f"{n:,}")
    table.add_row("deleted accounts known", f"{report.deleted_accounts:,}")
    table.add_row("seconds", f"{report.seconds:.1f}")
    _console().print(table)
    if report.failed:
        print(f"privacy-pipeline backfill: {len(report.failed)} outputs could not be produced (first: "
              f"{report.failed[0][1]}); stopped with the group's offsets before that batch: check the "
              "broker and the Write ACLs, then run the same command again to resume", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# anonymise / deanonymise (offline)
# --------------------------------------------------------------------------------------------


def _input_problem(path: str | Path, *, regular: bool = False) -> str | None:
    """Why ``path`` cannot be read as an input file (``"no such file: PATH"``, ``"PATH is a
    directory, not a file"``, ``"cannot read PATH: permission denied"``), ``None`` when it can
    (a regular file, a FIFO, a device such as ``/dev/stdin``; only a regular file with
    ``regular``, for commands that read their input twice)."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a directory, not a file"
    if not path.exists():  # a FIFO or /dev/fd/N (a shell's process substitution) is fine
        return f"no such file: {path}"
    if regular and not path.is_file():
        return f"{path} is not a regular file (the input is read twice: counted, then sent)"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    return None


def _open_input(name: str):
    """A binary input stream for ``name`` (``-`` = stdin); raises FileNotFoundError with
    :func:`_input_problem`'s reason as its message."""
    if name == "-":
        return sys.stdin.buffer
    problem = _input_problem(name)
    if problem is not None:
        raise FileNotFoundError(problem)
    return Path(name).open("rb")


def _add_anonymise(sub) -> None:
    p = sub.add_parser("anonymise", help="anonymise raw events or envelopes offline",
                       description="Raw events or classification envelopes in (JSON Lines), "
                       "anonymised records out, one per line, same order. Operators come from the "
                       "policy's anonymisation section; keys from PRIVACY_PIPELINE_PSEUDONYM_KEY and "
                       "PRIVACY_PIPELINE_MASTER_KEY.")
    p.add_argument("--policy", metavar="FILE", type=Path, help="policy YAML (default: the packaged policy)")
    p.add_argument("input", nargs="?", default="-", metavar="INPUT", help="input file, or - for stdin (default)")
    p.set_defaults(func=cmd_anonymise)


def cmd_anonymise(args: argparse.Namespace) -> int:
    from pipeline.offline_anonymise import anonymise_stream
    from pipeline.processing import Processor

    try:
        infile = _open_input(args.input)
    except FileNotFoundError as exc:
        print(f"privacy-pipeline anonymise: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings(policy=args.policy)
    settings.check_keys(log)
    processor = Processor.from_settings(settings)
    with infile:
        counts = anonymise_stream(infile, sys.stdout.buffer, processor=processor)
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return EXIT_OK


def _add_deanonymise(sub) -> None:
    p = sub.add_parser("deanonymise", help="re-identify encrypted values (authorised staff, needs the key)",
                       description="Reverse the policy's reversible 'encrypt' operator (AES-SIV) in "
                       "anonymised records. Needs PRIVACY_PIPELINE_MASTER_KEY (or _FILE) and, for "
                       "rotated keys, PRIVACY_PIPELINE_MASTER_OLD_KEYS. Pseudonyms are one-way and stay.")
    p.add_argument("input", nargs="?", default="-", metavar="INPUT", help="input file, or - for stdin (default)")
    p.set_defaults(func=cmd_deanonymise)


def cmd_deanonymise(args: argparse.Namespace) -> int:
    from pipeline.offline_anonymise import deanonymise_stream

    settings = _settings()
    if settings.master_key is None:
        print("privacy-pipeline deanonymise: the key is required: set PRIVACY_PIPELINE_MASTER_KEY "
              "or PRIVACY_PIPELINE_MASTER_KEY_FILE", file=sys.stderr)
        return EXIT_USAGE
    try:
        infile = _open_input(args.input)
    except FileNotFoundError as exc:
        print(f"privacy-pipeline deanonymise: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with infile:
        counts = deanonymise_stream(infile, sys.stdout.buffer, settings=settings)
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# policy check / diff
# --------------------------------------------------------------------------------------------


def _add_policy(sub) -> None:
    p = sub.add_parser("policy", help="validate a policy or compare two",
                       description="'policy check FILE' validates a policy (errors name file, line "
                       "and key) and prints per-family rule counts; 'policy diff OLD NEW [--sample "
                       "FILE]' shows which fields of sample events change category or route.")
    psub = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    c = psub.add_parser("check", help="validate a policy file",
                        description="Validate a policy YAML file: each error names the file, the line "
                        "and the key; prints the rule counts per family when valid. Exit 0 when "
                        "valid, 1 when not.")
    c.add_argument("file", type=Path, metavar="FILE")
    c.set_defaults(func=cmd_policy_check)
    d = psub.add_parser("diff", help="fields whose category or route changes between two policies",
                        description="Classify sample events under policy OLD and policy NEW and list "
                        "the fields whose category or route differs (both policies are validated "
                        "first).")
    d.add_argument("old", type=Path, metavar="OLD")
    d.add_argument("new", type=Path, metavar="NEW")
    d.add_argument("--sample", type=Path, metavar="FILE",
                   help="JSON Lines sample events (default: a generated sample)")
    d.set_defaults(func=cmd_policy_diff)


def cmd_policy_check(args: argparse.Namespace) -> int:
    from pipeline.policy_tools import format_policy_check, policy_check

    result = policy_check(args.file)
    print(format_policy_check(result))
    return EXIT_OK if result.get("ok") else EXIT_FAILED


def cmd_policy_diff(args: argparse.Namespace) -> int:
    from pipeline.policy_tools import format_policy_diff, policy_diff

    problem = None if args.sample is None else _input_problem(args.sample)
    if problem is not None:
        print(f"privacy-pipeline policy diff: --sample: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(format_policy_diff(policy_diff(args.old, args.new, args.sample)))
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# eval / bench
# --------------------------------------------------------------------------------------------


def _shared_data() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="accuracy: PII detection vs stock Presidio, field categories, leaks",
                       description="One run: the detector and stock Presidio on the labelled dev texts "
                       "(per-type P/R/F1, micro F1, distractor hits) and recall on MultiDoGO chat turns; "
                       "field categories on the labelled record shapes in tests/data/shapes; the "
                       "anonymisation leak check on the dev texts.")
    p.add_argument("--dev", type=Path, default=None, metavar="FILE",
                   help="labelled PII texts (default: ../shared/data/pii_texts_dev.jsonl)")
    p.add_argument("--multidogo", type=Path, default=None, metavar="FILE",
                   help="MultiDoGO customer turns (default: ../shared/data/multidogo_customer_turns_test.tsv)")
    p.add_argument("--shapes", type=Path, default=None, metavar="DIR",
                   help="labelled record shapes (default: tests/data/shapes)")
    p.add_argument("--json", action="store_true", help="also print one JSON line with every figure")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from pipeline.evaluation.anonymise_eval import format_leak_report, run_leak_eval
    from pipeline.evaluation.detection_eval import format_detection_report, run_detection_eval
    from pipeline.evaluation.shapes_eval import format_shapes_report, run_shapes_eval
    from pipeline.processing import Processor

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)  # stock engine's registry chatter
    console = _console()
    data = _shared_data()
    dev = args.dev or data / "pii_texts_dev.jsonl"
    multidogo = args.multidogo or data / "multidogo_customer_turns_test.tsv"
    shapes = args.shapes or Path(__file__).resolve().parents[1] / "tests" / "data" / "shapes"
    figures: dict = {}
    if dev.is_file():
        processor = Processor.from_settings(_settings(detector_processes=1))
        det = run_detection_eval(dev, multidogo if multidogo.is_file() else None,
                                 detector=processor.classifier.detector)
        for table in format_detection_report(det):
            console.print(table)
        leak = run_leak_eval(dev, processor)
        for table in format_leak_report(leak):
            console.print(table)
        figures.update(detection=det, leaks=leak)
    else:
        print(f"privacy-pipeline eval: {dev} not found; skipping detection and leak figures", file=sys.stderr)
    if shapes.is_dir():
        res = run_shapes_eval(shapes)
        console.print(format_shapes_report(res, show_errors=False))
        figures["shapes"] = res
    if args.json:
        print(json.dumps(figures, default=str, sort_keys=True))
    return EXIT_OK


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="throughput and latency vs Presidio baselines, offline and end to end",
                       description="One generated mixed stream (60% messages with real SMS bodies, "
                       "30% calls, 10% accounts): Presidio baselines, offline classify, NER limit, "
                       "structured-only rate, A2P vs P2P, and end to end through the embedded broker "
                       "and one or two workers. Prints a table and one JSON line; saves "
                       "bench/results/<date>-<time>.json.")
    p.add_argument("--sms", metavar="FILE", help="SMS bodies (default: ../shared/data/sms_spam_collection.tsv)")
    p.add_argument("--events", type=int, default=3000, metavar="N", help="events in the stream (default: 3000)")
    p.add_argument("--skip-e2e", action="store_true", help="offline figures only")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from agents.bench import run_bench

    return run_bench(args)


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

#: One registration function per subcommand, in ``--help`` order.
COMMANDS: list[Callable] = [_add_run, _add_worker, _add_produce, _add_classify, _add_topics,
                            _add_replay, _add_backfill, _add_anonymise, _add_deanonymise, _add_policy, _add_eval, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privacy-pipeline",
        description="Streaming data classification for a CPaaS platform: tags every field as "
        "content, usage or account and routes it per the privacy notice.")
    parser.add_argument("--log-level", default=None, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log level (default: PRIVACY_PIPELINE_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pipeline.errors import ConfigError, PipelineError

    try:
        level = args.log_level or _settings().log_level
    except ConfigError as exc:
        print(f"privacy-pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command != "worker":  # Faust configures the worker's logging itself
        _setup_logging(level if args.log_level else "WARNING")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"privacy-pipeline {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PipelineError as exc:
        print(f"privacy-pipeline {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader of our output went away (``classify ... | head``): stop quietly, as
        # Unix tools do; stdout is pointed at /dev/null so the interpreter's final flush
        # does not raise again
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
