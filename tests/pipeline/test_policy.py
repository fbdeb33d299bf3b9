"""Policy validation: the default loads; a bad policy fails naming file, line and key."""

from __future__ import annotations

import pytest

from pipeline.errors import PolicyError
from pipeline.policy import default_policy_path, load_policy, parse_policy


def test_default_policy_loads_and_every_rule_cites_the_notice():
    policy = load_policy()
    rules = [r for f in policy.families.values() for r in f.rules] + policy.common_rules
    assert len(rules) >= 10
    assert all(r.cites.strip() for r in rules)
    assert set(policy.categories) == {"content", "usage", "account"}
    assert policy.default.category == "content"


def _default_text() -> str:
    return default_policy_path().read_text()


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    "needle, replacement, key",
    [
        ("category: content, scan: true", "category: contnt, scan: true", "families.message.rules[0].category"),
        ("retention_ms: 2592000000          # 30 days", "retention_ms: soon", "categories.content.retention_ms"),
        ("action: hash", "action: shred", "secrets.action"),
        ("free_text_min_words: 3", "free_text_min_words: 3\n  colour: blue", "value_hints.colour"),
        # a regular expression is compiled at validation, not first when the classifier starts
        ('account_id_pattern: "^AC[0-9a-fA-F]{32}$"', 'account_id_pattern: "^AC[0-9"',
         "identity.account_id_pattern"),
        ('account_id_pattern: "^AC[0-9a-fA-F]{32}$"', 'account_id_pattern: "(?P<x>a)(?P<x>b)"',
         "identity.account_id_pattern"),
        ('account_id_pattern: "^AC[0-9a-fA-F]{32}$"', 'account_id_pattern: "a{2,1}"',
         "identity.account_id_pattern"),
    ],
)
def test_bad_policy_names_file_line_and_key(needle, replacement, key):
    text = _default_text()
    assert needle in text
    bad = text.replace(needle, replacement, 1)
    with pytest.raises(PolicyError) as err:
        parse_policy(bad, "bad.yaml")
    msg = str(err.value)
    expected_line = _line_of(bad, replacement.splitlines()[-1].strip())
    assert f"bad.yaml:{expected_line}: {key}:" in msg, msg


def test_yaml_syntax_error_has_line():
    with pytest.raises(PolicyError) as err:
        parse_policy("version: 1\ncategories: [\n", "broken.yaml")
    assert "broken.yaml:3: (yaml)" in str(err.value)


def test_missing_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError) as err:
        load_policy(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err.value)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"version: x\nversion: y\n", "bad.yaml:2: version: duplicate key"),
        (b"\xff\xfe", "bad.yaml:?: (file): not UTF-8 text"),
    ],
)
def test_policy_file_kinds_fail_with_file_line_key(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert str(err.value).replace(str(tmp_path) + "/", "").splitlines()[1].startswith(expected)



_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize(
    "text, refused",
    [
        (_BOMB, True),                                              # 9^9 values: "billion laughs"
        ("version: x\n" + _BOMB, True),                            # inside an otherwise plausible policy
        ("a: &x [1, *x]\n", True),                                 # a recursive alias: an infinite value
        ("a: &x [1, 2]\nb: *x\nc: [*x, *x]\n", False),              # aliases reused a few times: fine
        ("a: &x " + "[" * 50 + "1" + "]" * 50 + "\nb: [" + ", ".join(["*x"] * 100) + "]\n", False),
    ],
)
def test_yaml_alias_expansion_is_bounded(text, refused):
    with pytest.raises(PolicyError) as err:  # refused, or not a policy (validated as usual)
        parse_policy(text, "aliases.yaml")
    msg = str(err.value)
    assert ("expands to more than 100,000 values through YAML aliases" in msg) is refused, msg


def test_the_default_policy_uses_a_small_share_of_the_alias_budget():
    import yaml

    from pipeline.policy.loader import MAX_EXPANDED_NODES, _expanded_size

    assert _expanded_size(yaml.compose(_default_text(), Loader=yaml.SafeLoader)) < MAX_EXPANDED_NODES / 10
