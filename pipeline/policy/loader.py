"""Load and validate the policy YAML, failing fast with file, line and key (issue 2)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from pipeline.errors import PolicyError
from pipeline.policy.model import Policy

DEFAULT_POLICY_NAME = "default.yaml"


def default_policy_path() -> Path:
    """Path of the packaged default policy (``pipeline/policy/default.yaml``)."""
    return Path(str(resources.files("pipeline.policy").joinpath(DEFAULT_POLICY_NAME)))


def load_policy(path: str | Path | None = None) -> Policy:
    """Read, parse and validate a policy file (``None``: the packaged default).

    Raises :class:`PolicyError` naming the file, the 1-based line and the key path of
    each problem (YAML syntax errors included).
    """
    path = Path(path) if path is not None else default_policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(str(path), [(None, "(file)", f"not UTF-8 text (byte {exc.start}); save the "
                                       "policy as UTF-8")]) from None
    except OSError as exc:
        raise PolicyError(str(path), [(None, "(file)", exc.strerror or str(exc))]) from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML text; ``source`` names it in errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if _expanded_size(node) > MAX_EXPANDED_NODES:
            raise PolicyError(source, [(None, "(yaml)", f"the policy expands to more than {MAX_EXPANDED_NODES:,} "
                                        "values through YAML aliases (*name); write the repeated parts out "
                                        "or use fewer aliases")])
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(source, [(line, "(yaml)", str(getattr(exc, "problem", exc)))]) from None
    if not isinstance(data, dict):
        raise PolicyError(source, [(1, "(root)", "the policy must be a YAML mapping")])
    lines = _line_index(node)
    dupes = _duplicate_keys(node)
    if dupes:
        raise PolicyError(source, [(line, key, "duplicate key: YAML keeps the last one silently; "
                                    "remove one of them") for line, key in dupes])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append((_line_for(lines, loc), _loc_text(loc), err["msg"]))
        raise PolicyError(source, problems) from None


#: Most values (scalars, mappings, sequences) a policy may expand to once its YAML aliases are
#: followed: the packaged policy has ~2,000; a "billion laughs" file (aliases of aliases) would
#: otherwise expand exponentially in validation.
MAX_EXPANDED_NODES = 100_000


def _expanded_size(node) -> int:
    """How many nodes ``node`` stands for with every alias followed (an alias is the node it
    names, shared in the composed graph: each is counted once per place it is used), in time
    linear in the composed graph; stops counting past :data:`MAX_EXPANDED_NODES`."""
    if node is None:
        return 0
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being counted
    stack = [(node, False)]
    while stack:
        n, children_done = stack.pop()
        if id(n) in sizes:
            continue
        if not children_done and id(n) in open_:
            return MAX_EXPANDED_NODES + 1  # a recursive alias: an infinite value
        if isinstance(n, yaml.MappingNode):
            kids = [x for kv in n.value for x in kv]
        elif isinstance(n, yaml.SequenceNode):
            kids = list(n.value)
        else:
            sizes[id(n)] = 1
            continue
        if children_done:
            open_.discard(id(n))
            sizes[id(n)] = min(1 + sum(sizes[id(k)] for k in kids), MAX_EXPANDED_NODES + 1)
        else:
            open_.add(id(n))
            stack.append((n, True))
            stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(node)]


def _line_index(node) -> dict[tuple, int]:
    index: dict[tuple, int] = {}
    stack = [((), node)]
    while stack:
        path, n = stack.pop()
        if n is None:
            continue
        index[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                index[path + (key,)] = k.start_mark.line + 1
                stack.append((path + (key,), v))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                stack.append((path + (i,), v))
    return index


def _duplicate_keys(node) -> list[tuple[int, str]]:
    """``(line, key path)`` of every mapping key that appears twice in its mapping."""
    out = []
    stack = [((), node)]
    while stack:
        path, n = stack.pop()
        if isinstance(n, yaml.MappingNode):
            seen = set()
            for k, v in n.value:
                if k.value in seen:
                    out.append((k.start_mark.line + 1, _loc_text(path + (k.value,))))
                seen.add(k.value)
                stack.append((path + (k.value,), v))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                stack.append((path + (i,), v))
    return sorted(out)


def _line_for(index: dict[tuple, int], loc: tuple) -> int | None:
    for end in range(len(loc), -1, -1):
        line = index.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def _loc_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"
