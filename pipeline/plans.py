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
#: under 1 MB. Each live plan also keeps its last layout (``Plan.last_layout``), its shared
#: entries (at most :data:`SPAN_ENTRIES_PER_PLAN` with a span) and each layout at most
#: :data:`ENTITY_VIEWS_PER_LAYOUT` entity views (a few hundred bytes each).
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
    when the value decides); ``base_fields``: ``{pointer: entry}`` of the same, each entry
    ``{"category", "source", "rule", "entities": []}`` built once and shared, read-only, by
    every envelope of the plan whose entry for the leaf is the base entry without entities
    (a leaf whose entry differs gets its own dict; see :data:`SHARED_ENTRIES`); ``declared``: ``(leaf index,
    pointer, entity, span finder)`` of the leaves whose entry is the base plus the span of
    the entity their rule or name declares (:func:`pipeline.values.span_finder`);
    ``dynamic``: ``(leaf index, pointer, decision, checks)`` of the other leaves whose entry
    needs more than the base (a value check other than the credential one, no decision, a
    scan, a secret); ``credential_values``: ``fn(values)`` -> the
    string values that may hold a credential (``None`` when none); ``span_entries`` /
    ``interned``: the shared entries with a declared span (:meth:`span_entry`) and their ids;
    ``last_layout``: ``(overrides, layout)`` of the plan's last record. Its layouts are kept
    by the classifier, keyed by ``(plan, overrides)``.
    """

    __slots__ = ("base_entries", "base_fields", "credential_values", "declared", "dynamic", "family", "interned",
                 "items", "last_layout", "shape", "span_entries")

    def __init__(self, shape: Shape, family: str, items: tuple):
        from operator import itemgetter

        self.shape, self.family, self.items = shape, family, items
        self.base_entries = tuple((p, None, None, None) if d is None else (p, d.category, d.source, d.rule)
                                  for p, d, _c in items)
        #: ``{pointer: base entry}``: shared by the envelopes of the plan, never mutated
        #: (:data:`SHARED_ENTRIES`); copied per envelope as a whole (one C-level dict copy)
        self.base_fields = {p: {"category": c, "source": s, "rule": r, "entities": []}
                            for p, c, s, r in self.base_entries}
        #: ``{(pointer, (start, end)): entry}``: the base entry with one declared-entity span,
        #: shared like the base entries (see :meth:`span_entry`); ``interned``: their ids
        self.span_entries: dict[tuple, dict] = {}
        self.interned: set[int] = set()
        #: ``(overrides, layout)`` of the last record of the plan (the classifier's layout LRU is
        #: looked up only when the overrides differ); keeps one layout alive per plan
        self.last_layout: tuple | None = None
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

    def span_entry(self, ptr: str, entity: str, span: tuple[int, int]) -> dict:
        """The entry of leaf ``ptr`` (its decision's base entry) holding one ``entity`` span
        declared by its rule or name (score 1.0, recognizer ``"rule"``), as
        :func:`pipeline.classify._field_entry` builds it. Kept and shared, read-only, by the
        envelopes of the plan (:data:`SHARED_ENTRIES`), for at most
        :data:`SPAN_ENTRIES_PER_PLAN` spans (positions, never values); a new dict past that."""
        key = (ptr, span)
        entry = self.span_entries.get(key)
        if entry is None:
            entry = self.base_fields[ptr].copy()
            entry["entities"] = [{"type": entity, "start": span[0], "end": span[1], "score": 1.0,
                                  "recognizer": "rule"}]
            if len(self.span_entries) < SPAN_ENTRIES_PER_PLAN:
                self.span_entries[key] = entry
                self.interned.add(id(entry))
        return entry


#: Declared-entity entries a plan keeps (:meth:`Plan.span_entry`): a leaf's spans repeat
#: (a phone number at ``(0, 12)``, a formatted one at ``(1, 14)``).
SPAN_ENTRIES_PER_PLAN = 32

#: Field entries of planned envelopes are shared: an envelope's ``fields`` dict is its own,
#: but an entry without entities (no declared span, no scan, not secret, not value-decided) is
#: the plan's :attr:`Plan.base_fields` entry, the same dict in every envelope of the plan, and
#: an entry holding only the span its rule declares is the plan's :meth:`Plan.span_entry`.
#: Nothing in the pipeline mutates an entry it did not build (the router, the anonymiser,
#: redaction and stats build new dicts; :func:`pipeline.classify.fill_scans` extends only
#: entries of scan jobs, built per envelope). Callers must treat envelope entries as
#: read-only (copy before changing one).
SHARED_ENTRIES = True

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
    ``entity_ptrs``: pointers whose entry may hold entities (document order), ``entity_entries``
    ``fn(fields)`` -> their entries (see also :meth:`entity_view`); ``route``: the router's compiled
    routes (filled in by :meth:`pipeline.router.Router.compile`); ``drift``: ``(monitor, fields it
    samples with their rule windows)`` (filled in by :meth:`pipeline.drift.DriftMonitor.sample`); ``schema``:
    ``(schema checker, its check for the layout's records or None)`` (filled in by the classifier).
    """

    __slots__ = (
        "categories",
        "decisions",
        "drift",
        "_views",
        "entity_entries",
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
        #: ``fn(fields)`` -> the entries of :attr:`entity_ptrs` (a tuple, C-level getter)
        self.entity_entries = _entries_getter(self.entity_ptrs)
        #: ids of the shared entries of :attr:`entity_ptrs` -> their :class:`EntityView`
        self._views: dict[tuple[int, ...], EntityView] = {}
        self.route = None
        self.drift = None
        self.schema = None

    def entity_view(self, fields: dict) -> EntityView | None:
        """The :class:`EntityView` of an envelope of this layout (its ``fields``), or ``None``
        when one of its entries that may hold entities is not one the plan shares
        (:data:`SHARED_ENTRIES`: a scanned text, a secret, a value that may hold a credential)
        or :data:`ENTITY_VIEWS_PER_LAYOUT` views are kept already.

        Keyed by the ids of the entries: shared entries live, unchanged, as long as the plan
        (which the layout holds), so an entry with the id of a shared one is that entry."""
        entries = self.entity_entries(fields)
        key = tuple(map(id, entries))
        view = self._views.get(key)
        if view is None:
            plan = self.plan
            base, interned = plan.base_fields, plan.interned
            if len(self._views) >= ENTITY_VIEWS_PER_LAYOUT or not all(
                    e is base[p] or id(e) in interned for p, e in zip(self.entity_ptrs, entries)):
                return None
            view = self._views[key] = EntityView(entries)
        return view


#: Combinations of shared entity entries whose :class:`EntityView` a layout keeps.
ENTITY_VIEWS_PER_LAYOUT = 64


class EntityView:
    """What depends only on which shared entries (:data:`SHARED_ENTRIES`) the fields that may
    hold entities of an envelope hold (:meth:`Layout.entity_view`), worked out once.

    ``counts``: entity type -> count over those entries (``RecordStats.entities``);
    ``fragments``: the router's encoded entries (:class:`pipeline.router._Assembler`, filled
    in by it); ``header_items``: the router's ``privacy-entities`` header per projection's
    entity pointers (filled in by it)."""

    __slots__ = ("counts", "fragments", "header_items")

    def __init__(self, entries: tuple):
        counts: dict[str, int] = {}
        for entry in entries:
            for e in entry["entities"]:
                counts[e["type"]] = counts.get(e["type"], 0) + 1
        self.counts = counts
        self.fragments: tuple | None = None
        self.header_items: dict[tuple, tuple] = {}


def _entries_getter(ptrs: tuple):
    """``fn(fields)`` -> the tuple of ``fields[p]`` for ``p`` in ``ptrs`` (``operator.itemgetter``
    returns a lone item bare: wrapped for zero and one pointer)."""
    if len(ptrs) > 1:
        return itemgetter(*ptrs)
    if ptrs:
        only = ptrs[0]
        return lambda fields: (fields[only],)
    return lambda fields: ()


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
