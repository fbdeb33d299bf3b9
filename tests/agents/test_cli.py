"""The ``privacy-pipeline`` console script."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from agents.cli import COMMANDS, build_parser, main

SUBCOMMANDS = ["run", "worker", "produce", "classify", "topics"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"privacy-pipeline {command}" in capsys.readouterr().out


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, time; t = time.perf_counter(); from agents.cli import build_parser; "
            "build_parser().format_help(); "
            "heavy = [m for m in ('faust', 'kafka', 'presidio_analyzer', 'spacy') if m in sys.modules]; "
            "print(heavy, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, seconds = out.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(seconds) < 1.0


def test_adding_a_subcommand_is_one_function():
    def _add_hello(sub):
        p = sub.add_parser("hello", help="say hello")
        p.set_defaults(func=lambda args: 0)

    COMMANDS.append(_add_hello)
    try:
        assert build_parser().parse_args(["hello"]).command == "hello"
    finally:
        COMMANDS.remove(_add_hello)


def test_run_rejects_a_missing_input_file(tmp_path, capsys):
    assert main(["run", "--input", str(tmp_path / "absent.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["classify", "anonymise", "run", "produce"])
@pytest.mark.parametrize("kind, expected", [("missing", "no such file: "),
                                            ("directory", " is a directory, not a file")])
def test_input_paths_that_are_not_files_are_usage_errors(command, kind, expected, tmp_path, capsys):
    path = tmp_path / "in"
    if kind == "directory":
        path.mkdir()
    args = {"classify": ["classify", str(path)], "anonymise": ["anonymise", str(path)],
            "run": ["run", "--input", str(path)], "produce": ["produce", "--topic", "t", str(path)]}[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"privacy-pipeline {command}: " in err and expected in err and "Traceback" not in err


def test_classify_reads_a_fifo_and_policy_diff_checks_its_sample(tmp_path, capsysbinary):
    import os
    import threading

    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as fh:
            fh.write(b'{"sid": "SMa"}\nnot json\n')

    writer = threading.Thread(target=feed)
    writer.start()
    assert main(["classify", str(fifo)]) == 0
    writer.join()
    lines = capsysbinary.readouterr().out.splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["error"]["kind"] == "invalid_json"
    from pipeline.policy import default_policy_path

    default = str(default_policy_path())
    assert main(["policy", "diff", default, default, "--sample", str(tmp_path)]) == 2
    assert b"--sample: " in capsysbinary.readouterr().err
    assert main(["produce", "--topic", "t", str(fifo)]) == 2  # read twice: a regular file only
    assert b"not a regular file" in capsysbinary.readouterr().err


def test_worker_starts_in_a_fresh_directory_with_the_default_data_dir(tmp_path):
    """The default data directory is relative (``var/privacy-pipeline``) and Faust makes it
    without its parents: the worker command makes it, so a fresh checkout starts."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVACY_PIPELINE_")}
    env.update(PRIVACY_PIPELINE_KAFKA_BROKER="127.0.0.1:9", PRIVACY_PIPELINE_DETECTOR_PROCESSES="1")
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "worker", "--web-port", "0"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not (tmp_path / "var" / "privacy-pipeline").is_dir():
            time.sleep(0.5)
        assert (tmp_path / "var" / "privacy-pipeline").is_dir()
    finally:
        proc.kill()
        out = proc.communicate()[0].decode("utf-8", "replace")
    assert "FileNotFoundError" not in out


@pytest.mark.parametrize("require", [False, True])
def test_worker_warns_about_or_refuses_the_development_keys(require, tmp_path):
    """The warning is logged once Faust has set up logging (a warning logged before is lost),
    naming the variables, never a key; ``REQUIRE_KEYS`` refuses to start instead."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVACY_PIPELINE_")}
    env.update(PRIVACY_PIPELINE_KAFKA_BROKER="127.0.0.1:9", PRIVACY_PIPELINE_DETECTOR_PROCESSES="1",
               PRIVACY_PIPELINE_PSEUDONYM_KEY="pseudo-key-set-here")
    if require:
        env["PRIVACY_PIPELINE_REQUIRE_KEYS"] = "true"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "worker", "--web-port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode("utf-8", "replace")
            if not line:
                break
            lines.append(line)
            if "PRIVACY_PIPELINE_SECRET_HASH_KEY" in line:
                break
        if require:
            proc.wait(timeout=60)  # it exits by itself
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    out = "".join(lines)
    assert "PRIVACY_PIPELINE_SECRET_HASH_KEY not set" in out and "PSEUDONYM_KEY not set" not in out
    assert ("refusing to start" in out) is require and ("WARNING" in out) is not require
    assert "pseudo-key-set-here" not in out and "change-me" not in out
    if require:
        assert proc.returncode == 2


def test_worker_without_a_broker_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("PRIVACY_PIPELINE_KAFKA_BROKER", raising=False)
    monkeypatch.delenv("KAFKA_BROKER", raising=False)
    assert main(["worker"]) == 2
    assert "PRIVACY_PIPELINE_KAFKA_BROKER" in capsys.readouterr().err


def test_classify_writes_one_line_per_input_line(tmp_path, capsysbinary):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"sid": "SM' + b"a" * 32 + b'", "account_sid": "AC' + b"b" * 32
                    + b'", "from": "+14155550100", "to": "+14155550101", "body": "hi"}\n'
                    b"not json\n")
    assert main(["classify", "--event-type", "message", str(src)]) == 0
    out = capsysbinary.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 2
    env = json.loads(lines[0])
    assert env["event_type"] == "message" and env["fields"]["/body"]["category"] == "content"
    assert json.loads(lines[1])["error"]["kind"] == "invalid_json"
    assert b"lines=2" in out.err


@pytest.mark.parametrize("size", [10, 1_100_000, 3_000_000])  # under and over the default 1 MiB producer limit
def test_classify_dead_letters_keep_the_original_bytes_at_any_size(size, tmp_path, capsysbinary):
    import base64

    bad = b'{"body": "' + b"a" * size  # not JSON: unterminated
    src = tmp_path / "in.jsonl"
    src.write_bytes(bad + b"\n")
    assert main(["classify", str(src)]) == 0
    (line,) = capsysbinary.readouterr().out.splitlines()
    dl = json.loads(line)
    assert dl["error"]["kind"] == "invalid_json" and dl["raw_omitted"] is False
    assert base64.b64decode(dl["raw_base64"]) == bad and dl["raw_size"] == len(bad)


@pytest.mark.broker
def test_produce_and_topics_against_the_broker(broker, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRIVACY_PIPELINE_TOPIC_PREFIX", f"cli{uuid.uuid4().hex[:6]}.")
    monkeypatch.setenv("PRIVACY_PIPELINE_KAFKA_BROKER", broker.bootstrap)
    assert main(["topics"]) == 1  # nothing created yet
    assert "missing" in capsys.readouterr().out
    assert main(["topics", "--apply"]) == 0
    assert main(["topics"]) == 0
    out = capsys.readouterr().out
    assert "retention" in out and "missing" not in out

    src = tmp_path / "events.jsonl"
    src.write_text("".join(json.dumps({"sid": f"SM{i:032x}", "body": "x"}) + "\n" for i in range(250)) + "\n")
    topic = f"cli-produce-{uuid.uuid4().hex[:6]}"
    assert main(["produce", "--topic", topic, "--key-field", "sid", str(src)]) == 0
    assert "produced 250 records" in capsys.readouterr().err

    from kafka import KafkaConsumer, TopicPartition

    # Count by reading: Tansu's ListOffsets(latest) answers the last batch's base offset + 1.
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        keys = set()
        deadline = time.monotonic() + 30
        while len(keys) < 250 and time.monotonic() < deadline:
            for msgs in consumer.poll(500).values():
                keys.update(m.key for m in msgs)
        assert keys == {f"SM{i:032x}".encode() for i in range(250)}
    finally:
        consumer.close()

    # --format asterisk-csv: a line that is no CDR is not produced, named by number, exit 1
    cdr = ('"acme","4155550100","200","from-internal","Ada <4155550100>","SIP/201-1","SIP/t-1","Dial",'
           '"SIP/t/200,30","2026-03-02 10:00:00","2026-03-02 10:00:05","2026-03-02 10:01:05","65","60",'
           '"ANSWERED","DOCUMENTATION","1772445600.12","vip"')
    csv_src = tmp_path / "master.csv"
    csv_src.write_text(cdr + "\n" + json.dumps({"Body": "call +14155550100"}) + "\n" + cdr + "\n")
    assert main(["produce", "--topic", topic, "--format", "asterisk-csv", str(csv_src)]) == 1
    err = capsys.readouterr().err
    assert "produced 2 records" in err and "1 line(s) not in the format asterisk-csv (line 2)" in err
    assert "4155550100" not in err


@pytest.mark.broker
@pytest.mark.slow
def test_run_end_to_end_prints_the_summary_and_exits_0(tmp_path):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "agents.cli", "run", "--events", "400"],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**_clean_env(), "COLUMNS": "140"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for needle in ("privacy.retention.content.v1", "privacy.anonymised.v1", "privacy.deadletter.v1",
                   "Entities per type", "events/s after start-up", "accounted for"):
        assert needle in out, needle
    assert "embedded broker stopped" in proc.stderr
    assert time.monotonic() - start < 240


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if not k.startswith("PRIVACY_PIPELINE_") and k != "KAFKA_BROKER"}


@pytest.mark.parametrize("command", ["classify", "anonymise"])
def test_a_closed_output_pipe_stops_quietly(tmp_path, command):
    """``privacy-pipeline classify big.jsonl | head -c 100``: exit status 141 (SIGPIPE's),
    no traceback, nothing from the input on stderr."""
    import os

    lines = [json.dumps({"sid": "SM%032d" % i, "body": "call Bob at +14155550100", "to": "+14155550101"})
             for i in range(700)]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    env = dict(os.environ, PRIVACY_PIPELINE_DETECTOR_PROCESSES="1")
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", command, str(src)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(100)
    proc.stdout.close()  # the reader goes away after 100 bytes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert "4155550100" not in err and "Bob" not in err
