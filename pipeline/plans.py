"""Precompiled classification plans per record shape (structured-event throughput).

A record's *shape* is its tree of keys (in document order) plus the JSON type of every leaf.
Everything the classifier and the router decide from the shape alone is computed once per
shape and kept in a bounded LRU cache; per record only value-dependent work remains (entity
spans, value-borne credentials, value kinds of unknown fields, ids, markers, encoding).

Three levels, each a pure function of its key (never of record values or bytes):

- :class:`Shape` (key: :func:`signature`): leaf pointers, normalised paths, raw key paths,
  where the event and account ids may stand, the family the keys suggest;
- :class:`Plan` (key: shape + event family): the rule/name decision of every leaf and which
  leaves need a value check;
- :class:`Layout` (key: plan + the value-decided overrides, a tuple of ``(leaf index,
  Decision)``: decisions, never values): the final decision of every leaf, the categories,
  the stats counters and, filled in by the router, the compiled routes.

Shapes whose keys look like data (an ``@`` or a run of five or more digits: phone numbers,
emails or ids used as keys) are never planned nor kept: their keys are values, and keeping
them would grow the cache with personal data. Such records take the classifier's generic path
(planning one costs several times more than classifying it once).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from operator import itemgetter

from pipeline.values import span_finder

#: Record shapes kept by a classifier (LRU; each holds the plans of at most
#: :data:`FAMILIES_PER_SHAPE` families, a few kB each).
PLAN_CACHE_SIZE = 1024
#: Event families planned per shape (the topic's family, ``auto``...): more are planned per
#: record.
FAMILIES_PER_SHAPE = 4
#: Layouts kept by a classifier, all plans together (LRU). A layout with its compiled routes
#: costs about 20 kB: 4,096 bound them near 80 MB; a stream of a few dozen shapes needs well
#: under 1 MB.
LAYOUT_CACHE_SIZE = 4096

_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})
#: A key that looks like data (an email, a run of five digits): never cached, never planned.
DATA_KEY = re.compile(r"@|\d{5}")


class Exotic(Exception):
    """A record the planned path does not handle (a mapping or sequence that is not a plain
    ``dict``/``list``, or non-string keys): the classifier uses its generic path."""


class LRU:
    """A bounded least-recently-used mapping (``maxsize`` entries; 0 keeps nothing).

    ``hits`` and ``misses`` count :meth:`get` calls.
    """

    __slots__ = ("_data", "hits", "maxsize", "misses")

    def __init__(self, maxsize: int):
        self.maxsize = max(0, int(maxsize))
        self._data: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key):
        """The value for ``key`` (marked most recently used), or ``None``."""
        try:
            value = self._data[key]
        except KeyError:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key, value) -> None:
        """Store ``value``; the least recently used entry goes when over ``maxsize``."""
        if self.maxsize <= 0:
            return
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self.maxsize:
            data.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key) -> bool:
        return key in self._data


def signature(record: dict) -> tuple[tuple, list]:
    """``(shape key, leaf values)`` of a decoded JSON object.

    The key is nested tuples of keys and leaf types (``str``, ``int``, ``float``, ``bool``,
    ``NoneType``; an empty ``dict``/``list`` leaf by its type); the values are the leaves in
    document order, as :func:`pipeline.pointers.walk_leaves` yields them. Raises
    :class:`Exotic` for containers other than plain ``dict`` and ``list``.
    """
    if type(record) is not dict:
        raise Exotic
    vals: list = []
    if not record:
        vals.append(record)
        return (dict,), vals
    return _sig_dict(record, vals), vals


def _sig_dict(node: dict, vals: list) -> tuple:
    vs = list(node.values())
    ts = tuple(map(type, vs))
    if _LEAF_TYPES.issuperset(ts):  # a flat object: everything at C speed
        vals.extend(vs)
        return (tuple(node), ts)
    return (tuple(node), _sig_items(vs, ts, vals))


def _sig_items(vs: list, ts: tuple, vals: list) -> tuple:
    """Leaf types with nested containers replaced by their signatures; leaves to ``vals``."""
    types = list(ts)
    start = 0
    for idx, t in enumerate(ts):
        if t is dict or t is list:
            v = vs[idx]
            if v:
                vals.extend(vs[start:idx])
                types[idx] = _sig_dict(v, vals) if t is dict else _sig_list(v, vals)
                start = idx + 1
        elif t not in _LEAF_TYPES and issubclass(t, (dict, list)):
            raise Exotic
    vals.extend(vs[start:])
    return tuple(types)


def _sig_list(node: list, vals: list) -> tuple:
    ts = tuple(map(type, node))
    if _LEAF_TYPES.issuperset(ts):
        vals.extend(node)
        return (None, ts)
    return (None, _sig_items(node, ts, vals))


def data_like_signature(sig: tuple) -> bool:
    """Whether any key of a :func:`signature` looks like data (see module doc): such a record
    is classified by the generic path (:class:`Exotic`), never planned, as nothing planned for
    it could be kept."""
    stack = [sig]
    search = DATA_KEY.search
    while stack:
        node = stack.pop()
        if len(node) != 2:  # (dict,): the empty object
            continue
        keys, types = node
        if keys is not None:
            try:
                if search("\0".join(keys)):
                    return True
            except TypeError:  # a non-string key: the planner raises Exotic for it
                pass
        for t in types:
            if t.__class__ is tuple:
                stack.append(t)
    return False


def data_like_keys(paths) -> bool:
    """Whether any key on ``paths`` (raw key paths) looks like data (see module doc)."""
    for path in paths:
        for seg in path:
            if type(seg) is str and DATA_KEY.search(seg):
                return True
    return False


class Shape:
    """What depends only on a record's shape (see module doc). Built by the classifier.

    ``ptrs``: leaf pointers in document order; ``norms``: their normalised segments;
    ``paths``: raw key paths (``str`` keys, ``int`` list indices); ``id_cands`` /
    ``account_cands``: leaf indices where the event / account id may stand, in priority
    order; ``keys_family``: the family the keys suggest (``None`` until needed);
    ``plans``: event family -> :class:`Plan`.
    """

    __slots__ = (
        "account_cands",
        "cacheable",
        "cloudevents",
        "id_cands",
        "keys_family",
        "norms",
        "paths",
        "plans",
        "ptrs",
    )

    def __init__(self, ptrs, norms, paths, cloudevents, id_cands, account_cands, cacheable):
        self.ptrs, self.norms, self.paths = ptrs, norms, paths
        self.cloudevents = cloudevents
        self.id_cands, self.account_cands = id_cands, account_cands
        self.keys_family: str | None = None
        self.plans: dict = {}
        self.cacheable = cacheable


class Plan:
    """The rule/name decisions of a shape's leaves for one family.

    ``items``: per leaf ``(pointer, decision or None, checks)`` where ``checks`` is a bit
    set of :data:`CHECK_CREDENTIAL`, :data:`CHECK_VALUE`, :data:`CHECK_STRONG`;
    ``base_entries``: per leaf ``(pointer, category, source, rule)`` of its decision (``None``
    when the value decides); ``base_templates``: ``(pointer, entry)`` of the same, entries
    with ``entities`` still to set (copied per record); ``declared``: ``(leaf index,
    pointer, entity, span finder)`` of the leaves whose entry is the base plus the span of
    the entity their rule or name declares (:func:`pipeline.values.span_finder`);
    ``dynamic``: ``(leaf index, pointer, decision, checks)`` of the other leaves whose entry
    needs more than the base (a value check other than the credential one, no decision, a
    scan, a secret); ``credential_values``: ``fn(values)`` -> the
    string values that may hold a credential (``None`` when none). Its layouts are kept by
    the classifier, keyed by ``(plan, overrides)``.
    """

    __slots__ = ("base_entries", "base_templates", "credential_values", "declared", "dynamic", "family", "items",
                 "shape")

    def __init__(self, shape: Shape, family: str, items: tuple):
        from operator import itemgetter

        self.shape, self.family, self.items = shape, family, items
        self.base_entries = tuple((p, None, None, None) if d is None else (p, d.category, d.source, d.rule)
                                  for p, d, _c in items)
        #: ``(pointer, entry template)`` per leaf: the base entry with ``entities`` still to
        #: be set (copied per record, never handed out)
        self.base_templates = tuple((p, {"category": c, "source": s, "rule": r, "entities": None})
                                    for p, c, s, r in self.base_entries)
        declared, dynamic = [], []
        for i, (p, d, c) in enumerate(items):
            checks = c & ~CHECK_CREDENTIAL
            if checks or d is None or d.secret or d.scan:
                dynamic.append((i, p, d, checks))
            elif d.entity is not None:
                declared.append((i, p, d.entity, span_finder(d.entity)))
        self.declared, self.dynamic = tuple(declared), tuple(dynamic)
        cred = [i for i, (_p, _d, c) in enumerate(items) if c & CHECK_CREDENTIAL]
        if not cred:
            self.credential_values = None
        elif len(cred) == 1:
            only = cred[0]
            self.credential_values = lambda values: (values[only],)
        else:
            self.credential_values = itemgetter(*cred)


#: A string leaf whose decision is neither secret nor content: may hold a credential.
CHECK_CREDENTIAL = 1
#: No rule or name decides the leaf: its value decides.
CHECK_VALUE = 2
#: A name decision (not account) on a string: strong value evidence may override it.
CHECK_STRONG = 4


class Layout:
    """The final decision of every leaf of one plan under one set of value-decided overrides.

    ``decisions``: per leaf; ``categories``: sorted categories present; ``secrets``:
    pointers of secret leaves; ``field_counts`` / ``unknown_fields`` /
    ``unknown_pointers``: the per-record stats that depend on decisions only;
    ``entity_ptrs``: pointers whose entry may hold entities (document order); ``route``: the router's compiled
    routes (filled in by :meth:`pipeline.router.Router.compile`); ``drift``: ``(monitor, fields it
    samples with their rule windows)`` (filled in by :meth:`pipeline.drift.DriftMonitor.sample`); ``schema``:
    ``(schema checker, its check for the layout's records or None)`` (filled in by the classifier).
    """

    __slots__ = (
        "categories",
        "decisions",
        "drift",
        "entity_ptrs",
        "field_counts",
        "plan",
        "route",
        "schema",
        "secrets",
        "unknown_fields",
        "unknown_pointers",
    )

    def __init__(self, plan: Plan, decisions: tuple, mask):
        from collections import Counter

        self.plan = plan
        self.decisions = decisions
        ptrs = plan.shape.ptrs
        self.categories = sorted({d.category for d in decisions})
        self.secrets = [p for p, d in zip(ptrs, decisions) if d.secret]
        counts: Counter = Counter()
        unknown = []
        for p, d in zip(ptrs, decisions):
            counts[(d.category, d.source)] += 1
            if d.source != "rule":
                unknown.append(mask(p))
        self.field_counts = counts
        self.unknown_fields = len(unknown)
        self.unknown_pointers = unknown
        self.entity_ptrs = tuple(p for p, d in zip(ptrs, decisions)
                                 if (d.entity is not None and not d.secret) or d.scan)
        self.route = None
        self.drift = None
        self.schema = None


# -- projections (the record restricted to pointers, compiled per shape) ---------------------
def compile_projection(paths, selected) -> object:
    """A program for :func:`project`: the record restricted to the leaves at ``selected``
    (indices into ``paths``, in document order). ``None`` means the whole record; a subtree
    whose every leaf is kept is taken whole (same value, no copy)."""
    total: dict = {}
    for path in paths:
        for n in range(len(path) + 1):
            total[path[:n]] = total.get(path[:n], 0) + 1
    kept: dict = {}
    for i in selected:
        path = paths[i]
        for n in range(len(path) + 1):
            kept[path[:n]] = kept.get(path[:n], 0) + 1
    if not selected:
        return ()
    if kept.get((), 0) == total[()]:
        return None
    members: dict = {}  # prefix -> its members' segments, in document order
    for prefix in total:
        if prefix:
            members.setdefault(prefix[:-1], []).append(prefix[-1])
    return _compile_node((), [paths[i] for i in selected], total, kept, members)


def _compile_node(prefix, paths, total, kept, members=None):
    children: dict = {}
    for path in paths:
        children.setdefault(path[len(prefix)], []).append(path)
    items = []
    is_list = False
    for seg, sub in children.items():
        is_list = type(seg) is int
        child = prefix + (seg,)
        if kept[child] == total[child]:
            items.append((seg, None))
        else:
            items.append((seg, _compile_node(child, sub, total, kept, members)))
    if not is_list and members is not None:
        # an object node keeping most of its members: a copy (C speed, order kept) less the
        # members dropped, the members kept only in part projected in place
        keep = {seg for seg, _sub in items}
        drop = tuple(seg for seg in members[prefix] if seg not in keep)
        if len(drop) < len(items):
            return (_DROP, (drop, tuple((seg, sub) for seg, sub in items if sub is not None)))
    if not is_list and len(items) > 1:
        # an object node: its kept members by one C-level getter (keys in order), then the
        # members kept only in part projected in place
        keys = tuple(seg for seg, _sub in items)
        partial = tuple((i, sub) for i, (_seg, sub) in enumerate(items) if sub is not None)
        if not partial:
            return (_FLAT, (keys, itemgetter(*keys)))
        return (_MIXED, (keys, itemgetter(*keys), partial))
    return (is_list, tuple(items))


#: Marks a compiled object node kept member by member (``(keys, getter)``).
_FLAT = 2
#: Marks a compiled object node with members kept in part (``(keys, getter, ((index,
#: program), ...))``).
_MIXED = 3
#: Marks a compiled object node taken as a copy less some members (``(dropped keys, ((key,
#: program), ...) of the members kept in part)``).
_DROP = 4


def project(record, program):
    """Apply a :func:`compile_projection` program to a record of its shape."""
    if program is None:
        return record
    if program == ():
        return {}
    return _project(record, program)


def _project(node, program):
    is_list, items = program
    if is_list == _FLAT:
        keys, getter = items
        return dict(zip(keys, getter(node)))
    if is_list == _DROP:
        drop, partial = items
        out = node.copy()
        for k in drop:
            del out[k]
        for k, sub in partial:
            out[k] = _project(out[k], sub)
        return out
    if is_list == _MIXED:
        keys, getter, partial = items
        values = list(getter(node))
        for i, sub in partial:
            values[i] = _project(values[i], sub)
        return dict(zip(keys, values))
    if is_list:
        return [node[i] if sub is None else _project(node[i], sub) for i, sub in items]
    return {k: (node[k] if sub is None else _project(node[k], sub)) for k, sub in items}
