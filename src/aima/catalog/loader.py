"""Load the catalog: YAML assets shipped in the package plus the overlay folder ``AIMA_HOME/catalog``.

Both have the same layout — ``hardware/``, ``engines/``, ``models/``, each holding ``*.yaml`` files of
one or more YAML documents, one asset per document. An overlay asset with the name of a shipped one
is merged onto it: mappings merge key by key, lists of mappings that carry a ``name`` (or ``id``)
merge item by item, anything else is replaced. An overlay asset with a new name is added.

Every problem is reported, each with its file and line: YAML syntax, every bad field of every asset
(the YAML node tree maps a pydantic error location back to a line), and the cross-checks between
assets (a variant's engine exists, its format is one the engine loads, its config keys are declared
by that engine, the model type is one the engine serves).
"""

from __future__ import annotations

import difflib
import threading
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from aima.catalog.schema import SCHEMAS, Engine, HardwareProfile, Loc, Model, check_value
from aima.errors import InvalidInput, NotFound

FOLDERS = {"hardware": "hardware", "engine": "engines", "model": "models"}
SUFFIXES = (".yaml", ".yml")

T = TypeVar("T", HardwareProfile, Engine, Model)


def shipped_dir() -> Path:
    return Path(__file__).with_name("assets")


def overlay_dir(home: Path | None = None) -> Path:
    if home is None:
        from aima.config import get_settings

        home = get_settings().home
    return Path(home) / "catalog"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    kind: str | None = None
    name: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = " ".join(x for x in (self.kind, self.name) if x)
        fld = f"{self.field}: " if self.field else ""
        return f"{where}: {what + ': ' if what else ''}{fld}{self.message}"


@dataclass
class Entry(Generic[T]):
    kind: str
    name: str
    asset: T
    files: list[str]
    line: int
    overlay: bool
    node: Node = field(repr=False)

    @property
    def file(self) -> str:
        return self.files[-1]


@dataclass
class Catalog:
    hardware: dict[str, Entry[HardwareProfile]] = field(default_factory=dict)
    engines: dict[str, Entry[Engine]] = field(default_factory=dict)
    models: dict[str, Entry[Model]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    def entries(self, kind: str | None = None) -> Iterator[Entry[Any]]:
        for k, table in (("hardware", self.hardware), ("engine", self.engines), ("model", self.models)):
            if kind is None or kind == k:
                yield from table.values()

    def engine(self, name: str) -> Engine | None:
        e = self.engines.get(name)
        return e.asset if e else None

    def find_model(self, ref: str) -> Model | None:
        """A model by name or alias, case-insensitively."""
        want = ref.strip().lower()
        for e in self.models.values():
            if e.name.lower() == want or any(a.lower() == want for a in e.asset.aliases):
                return e.asset
        return None

    def model(self, ref: str) -> Model:
        m = self.find_model(ref)
        if m is None:
            names = sorted(self.models)
            close = difflib.get_close_matches(ref.lower(), names + [a.lower() for e in self.models.values()
                                                                     for a in e.asset.aliases], n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise NotFound(f"model {ref!r} is not in the catalog; {hint}known models: {', '.join(names)} "
                           f"(add one in {FOLDERS['model']}/ of the overlay catalog)", field="model")
        return m

    def raise_for_problems(self) -> None:
        if self.problems:
            lines = "\n".join(f"  {p}" for p in self.problems[:50])
            more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
            raise InvalidInput(f"the catalog has {len(self.problems)} problem(s); fix them "
                               f"(`aima catalog validate` lists them):\n{lines}{more}",
                               details={"problems": [str(p) for p in self.problems]})


# ---------------------------------------------------------------------------- YAML nodes
def _key(node: Node) -> str | None:
    return str(node.value) if isinstance(node, ScalarNode) else None


def _get(node: Node, key: str) -> Node | None:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if _key(k) == key:
                return v
    return None


def _item_key(node: Node) -> str | None:
    for k in ("name", "id"):
        v = _get(node, k)
        if isinstance(v, ScalarNode):
            return f"{k}={v.value}"
    return None


def merge_nodes(base: Node, over: Node) -> Node:
    """Merge an overlay node onto a shipped one (see the module docstring)."""
    if isinstance(base, MappingNode) and isinstance(over, MappingNode):
        pairs = list(base.value)
        index = {_key(k): i for i, (k, _v) in enumerate(pairs) if _key(k) is not None}
        for k, v in over.value:
            i = index.get(_key(k))
            if i is None:
                index[_key(k)] = len(pairs)
                pairs.append((k, v))
            else:
                pairs[i] = (k, merge_nodes(pairs[i][1], v))
        return MappingNode(base.tag, pairs, over.start_mark, over.end_mark, flow_style=over.flow_style)
    if isinstance(base, SequenceNode) and isinstance(over, SequenceNode):
        bkeys = [_item_key(n) for n in base.value]
        okeys = [_item_key(n) for n in over.value]
        if bkeys and okeys and None not in bkeys and None not in okeys:
            items = list(base.value)
            pos = {k: i for i, k in enumerate(bkeys)}
            for k, n in zip(okeys, over.value, strict=True):
                if k in pos:
                    items[pos[k]] = merge_nodes(items[pos[k]], n)
                else:
                    pos[k] = len(items)
                    items.append(n)
            return SequenceNode(base.tag, items, over.start_mark, over.end_mark, flow_style=over.flow_style)
    return over


def _construct(node: Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def locate(node: Node, loc: Sequence[str | int]) -> tuple[str, int, list[str | int], Node]:
    """Where ``loc`` is inside ``node``: file, 1-based line, the part of ``loc`` found, and the node it
    ends on. A missing key resolves to the mapping that lacks it. Merged nodes keep the file each part
    came from, so an overlay's value reports the overlay's file."""
    cur: Node = node
    mark = node.start_mark
    found: list[str | int] = []
    for part in loc:
        if isinstance(cur, MappingNode):
            hit = next(((k, v) for k, v in cur.value if _key(k) == str(part)), None)
            if hit is None:
                break
            mark, cur = hit[0].start_mark, hit[1]
        elif isinstance(cur, SequenceNode) and isinstance(part, int) and 0 <= part < len(cur.value):
            cur = cur.value[part]
            mark = cur.start_mark
        else:
            break
        found.append(part)
    return str(mark.name), mark.line + 1, found, cur


# ---------------------------------------------------------------------------- pydantic errors → lines
def _unwrap(tp: Any) -> list[Any]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a)]
    return [tp]


def _model_at(cls: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model class found at ``path`` below ``cls`` (for 'did you mean' hints)."""
    cur: Any = cls
    for part in path:
        if isinstance(cur, type) and issubclass(cur, BaseModel):
            f = cur.model_fields.get(str(part))
            if f is None:
                return None
            cur = f.annotation
        else:
            cur = next((t for t in _unwrap(cur) if typing.get_origin(t) in (list, dict)), None)
            if cur is None:
                return None
            cur = typing.get_args(cur)[-1]
        models = [t for t in _unwrap(cur) if isinstance(t, type) and issubclass(t, BaseModel)]
        cur = models[0] if models else next((t for t in _unwrap(cur) if t is not type(None)), cur)
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def _pydantic_problems(e: ValidationError, cls: type[BaseModel], node: Node, kind: str,
                       name: str | None) -> list[Problem]:
    grouped: dict[tuple[str, int, str], list[str]] = {}
    for err in e.errors():
        loc = [p for p in err.get("loc", ())]
        file, line, found, end = locate(node, loc)
        rest = loc[len(found):]
        # a missing (or unknown) key keeps its name; type tags of unions below a scalar are dropped
        shown = found + rest[:1] if rest and isinstance(end, MappingNode) else found
        if err.get("type") == "extra_forbidden":
            model = _model_at(cls, loc[:-1])
            allowed = list(model.model_fields) if model else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "") + \
                (f"; allowed: {', '.join(allowed)}" if allowed else "")
            shown = loc
        else:
            msg = str(err.get("msg", "invalid"))
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
        fld = ".".join(str(p) for p in shown)
        grouped.setdefault((file, line, fld), [])
        if msg not in grouped[(file, line, fld)]:
            grouped[(file, line, fld)].append(msg)
    return [Problem(file, line, " or ".join(msgs), kind, name, fld or None)
            for (file, line, fld), msgs in grouped.items()]


# ---------------------------------------------------------------------------- loading
@dataclass
class _Doc:
    kind: str
    name: str
    node: Node
    files: list[str]
    overlay: bool


def _read_layer(root: Path, overlay: bool, problems: list[Problem]) -> dict[str, dict[str, _Doc]]:
    out: dict[str, dict[str, _Doc]] = {k: {} for k in FOLDERS}
    if not root.is_dir():
        return out
    for kind, folder in FOLDERS.items():
        d = root / folder
        if not d.is_dir():
            continue
        for path in sorted(p for p in d.iterdir() if p.suffix in SUFFIXES and p.is_file()):
            try:
                text = path.read_text(encoding="utf-8")
                docs = list(yaml.compose_all(text, Loader=_NamedLoader.factory(str(path))))
            except yaml.MarkedYAMLError as e:
                mark = e.problem_mark or e.context_mark
                problems.append(Problem(str(path), mark.line + 1 if mark else None,
                                        f"not valid YAML: {e.problem or e}", kind))
                continue
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
                problems.append(Problem(str(path), None, f"cannot be read: {e}", kind))
                continue
            for node in docs:
                if node is None:
                    continue
                line = node.start_mark.line + 1
                if not isinstance(node, MappingNode):
                    problems.append(Problem(str(path), line, f"a {kind} asset must be a mapping", kind))
                    continue
                name_node = _get(node, "name")
                if not isinstance(name_node, ScalarNode) or not str(name_node.value).strip():
                    problems.append(Problem(str(path), line, "name is required", kind, None, "name"))
                    continue
                name = str(name_node.value)
                prev = out[kind].get(name)
                if prev is not None:
                    problems.append(Problem(str(path), name_node.start_mark.line + 1,
                                            f"{kind} {name!r} is already defined in {prev.files[0]}:"
                                            f"{prev.node.start_mark.line + 1}", kind, name, "name"))
                    continue
                out[kind][name] = _Doc(kind, name, node, [str(path)], overlay)
    return out


class _NamedLoader(yaml.SafeLoader):
    """A SafeLoader whose marks carry the file path (so merged nodes remember their file)."""

    @staticmethod
    def factory(name: str) -> type[yaml.SafeLoader]:
        class Loader(_NamedLoader):
            def __init__(self, stream: Any) -> None:
                super().__init__(stream)
                self.name = name
        return Loader


def load(dirs: Sequence[Path]) -> Catalog:
    """Load catalog layers in order (later layers add or override by name) and check everything."""
    cat = Catalog(dirs=[str(d) for d in dirs])
    merged: dict[str, dict[str, _Doc]] = {k: {} for k in FOLDERS}
    for i, d in enumerate(dirs):
        layer = _read_layer(Path(d), overlay=i > 0, problems=cat.problems)
        for kind, docs in layer.items():
            for name, doc in docs.items():
                base = merged[kind].get(name)
                if base is None:
                    merged[kind][name] = doc
                else:
                    merged[kind][name] = _Doc(kind, name, merge_nodes(base.node, doc.node),
                                              base.files + doc.files, True)
    tables: dict[str, dict[str, Entry[Any]]] = {"hardware": cat.hardware, "engine": cat.engines,
                                                "model": cat.models}
    raw: dict[str, dict[str, tuple[_Doc, Any]]] = {k: {} for k in FOLDERS}
    for kind, docs in merged.items():
        cls = SCHEMAS[kind]
        for name, doc in docs.items():
            try:
                data = _construct(doc.node)
                raw[kind][name] = (doc, data)
                asset = cls.model_validate(data)
            except ValidationError as e:
                cat.problems.extend(_pydantic_problems(e, cls, doc.node, kind, name))
                continue
            except yaml.YAMLError as e:
                cat.problems.append(Problem(doc.files[-1], doc.node.start_mark.line + 1, str(e), kind, name))
                continue
            own = [_at(doc.node, loc, msg, kind, name) for loc, msg in asset.check()]  # type: ignore[attr-defined]
            if own:
                cat.problems.extend(own)
                continue
            tables[kind][name] = Entry(kind, name, asset, doc.files, doc.node.start_mark.line + 1, doc.overlay,
                                       doc.node)
    _cross_check(cat, raw)
    cat.problems.sort(key=lambda p: (p.file, p.line or 0))
    return cat


def _at(node: Node, loc: Loc, message: str, kind: str, name: str) -> Problem:
    file, line, _found, _end = locate(node, loc)
    return Problem(file, line, message, kind, name, ".".join(str(p) for p in loc) or None)


def _cross_check(cat: Catalog, raw: dict[str, dict[str, tuple[_Doc, Any]]]) -> None:
    """Checks between assets, run on the raw data of every asset (valid or not), so a model with a
    bad field still gets its engine, format and config keys checked. A reference to an asset that
    exists but is itself invalid is not reported again (its own problems say why)."""
    if "custom" in raw["engine"]:
        doc = raw["engine"]["custom"][0]
        cat.problems.append(_at(doc.node, ("name",), "custom is the built-in engine that runs a given command; "
                                "choose another name", "engine", "custom"))
        cat.engines.pop("custom", None)
    broken_engines = set(raw["engine"]) - set(cat.engines)
    engine_list = ", ".join(sorted(raw["engine"]))

    def engine_of(name: Any, node: Node, loc: Loc, kind: str, asset: str) -> Engine | None:
        if not isinstance(name, str):
            return None
        eng = cat.engine(name)
        if eng is None and name not in broken_engines:
            cat.problems.append(_at(node, loc, f"engine {name!r} is not in the catalog (engines: {engine_list})",
                                    kind, asset))
        return eng

    bad: set[tuple[str, str]] = set()
    for name, (doc, data) in raw["hardware"].items():
        config = data.get("config") if isinstance(data, dict) else None
        for eng_name, values in (config or {}).items() if isinstance(config, dict) else ():
            eng = engine_of(eng_name, doc.node, ("config", eng_name), "hardware", name)
            if eng is None or not isinstance(values, dict):
                continue
            for k, v in values.items():
                for loc, msg in check_value(eng, str(k), v, ("config", eng_name, k)):
                    cat.problems.append(_at(doc.node, loc, msg, "hardware", name))
                    bad.add(("hardware", name))

    owners: dict[str, str] = {}
    for name in raw["model"]:
        owners.setdefault(name.lower(), name)
    for name, (doc, data) in raw["model"].items():
        if not isinstance(data, dict):
            continue
        n0 = len(cat.problems)
        node = doc.node
        aliases = data.get("aliases")
        for j, alias in enumerate(aliases if isinstance(aliases, list) else []):
            if not isinstance(alias, str):
                continue
            owner = owners.get(alias.lower())
            if owner is not None and owner != name:
                cat.problems.append(_at(node, ("aliases", j), f"alias {alias!r} is already the name or an alias "
                                        f"of model {owner}", "model", name))
            else:
                owners[alias.lower()] = name
        sources = data.get("sources") if isinstance(data.get("sources"), list) else []
        by_id: dict[str, Any] = {}
        for i, src in enumerate(sources):
            sid = src.get("id") if isinstance(src, dict) else None
            if isinstance(sid, str):
                if sid in by_id:
                    cat.problems.append(_at(node, ("sources", i, "id"), f"source id {sid!r} is used twice",
                                            "model", name))
                by_id.setdefault(sid, src)
        variants = data.get("variants") if isinstance(data.get("variants"), list) else []
        seen: set[str] = set()
        mtype = data.get("type")
        for i, v in enumerate(variants):
            if not isinstance(v, dict):
                continue
            base: Loc = ("variants", i)
            vname = v.get("name")
            if isinstance(vname, str):
                if vname in seen:
                    cat.problems.append(_at(node, (*base, "name"), f"variant name {vname!r} is used twice",
                                            "model", name))
                seen.add(vname)
            src = by_id.get(v.get("source")) if isinstance(v.get("source"), str) else None
            if "source" in v and src is None:
                cat.problems.append(_at(node, (*base, "source"), f"no source with id {v.get('source')!r}; "
                                        f"sources: {', '.join(map(str, by_id)) or 'none'}", "model", name))
            fmt = v.get("format")
            if isinstance(src, dict) and isinstance(fmt, str) and src.get("format") != fmt and not v.get("convert"):
                cat.problems.append(_at(node, (*base, "format"), f"source {src.get('id')} holds "
                                        f"{src.get('format')}, not {fmt}; give `convert` to say how the {fmt} "
                                        f"file is made", "model", name))
            eng = engine_of(v.get("engine"), node, (*base, "engine"), "model", name)
            if eng is None:
                continue
            if isinstance(mtype, str) and mtype not in eng.model_types:
                cat.problems.append(_at(node, (*base, "engine"), f"engine {eng.name} serves "
                                        f"{', '.join(eng.model_types)}, not {mtype} models", "model", name))
            if isinstance(fmt, str) and fmt not in eng.formats:
                cat.problems.append(_at(node, (*base, "format"), f"engine {eng.name} loads "
                                        f"{', '.join(eng.formats)}, not {fmt}", "model", name))
            config = v.get("config")
            for k, val in config.items() if isinstance(config, dict) else ():
                for loc, msg in check_value(eng, str(k), val, (*base, "config", k)):
                    cat.problems.append(_at(node, loc, msg, "model", name))
            bench = v.get("benchmark")
            tuned = bench.get("config") if isinstance(bench, dict) else None
            for k, val in tuned.items() if isinstance(tuned, dict) else ():
                for loc, msg in check_value(eng, str(k), val, (*base, "benchmark", "config", k)):
                    cat.problems.append(_at(node, loc, msg, "model", name))
        if len(cat.problems) > n0:
            bad.add(("model", name))
    for kind, name in bad:
        (cat.hardware if kind == "hardware" else cat.models).pop(name, None)


# ---------------------------------------------------------------------------- cached access
_lock = threading.Lock()
_cache: dict[tuple[str, ...], tuple[tuple[Any, ...], Catalog]] = {}


def _signature(dirs: Sequence[Path]) -> tuple[Any, ...]:
    sig: list[Any] = []
    for d in dirs:
        for folder in FOLDERS.values():
            p = Path(d) / folder
            if not p.is_dir():
                continue
            for f in sorted(p.iterdir()):
                if f.suffix in SUFFIXES:
                    try:
                        st = f.stat()
                    except OSError:
                        continue
                    sig.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(sig)


def load_catalog(home: Path | None = None, *, overlay: Path | None = None) -> Catalog:
    """The shipped catalog plus the overlay (``AIMA_HOME/catalog`` unless given), reloaded when a file
    changes. Problems are collected, not raised: see ``get_catalog``."""
    dirs = [shipped_dir(), overlay if overlay is not None else overlay_dir(home)]
    key = tuple(str(d) for d in dirs)
    sig = _signature(dirs)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        cat = load(dirs)
        _cache[key] = (sig, cat)
        return cat


def get_catalog(home: Path | None = None) -> Catalog:
    """The catalog, or ``InvalidInput`` listing every problem with its file and line."""
    cat = load_catalog(home)
    cat.raise_for_problems()
    return cat


def validate(path: Path | None = None, *, home: Path | None = None, standalone: bool = False) -> Catalog:
    """Check a catalog folder: by default layered on the shipped assets as an overlay would be
    (``standalone``: the folder alone); without a path, the installed catalog and its overlay."""
    if path is None:
        return load([shipped_dir(), overlay_dir(home)])
    path = Path(path).expanduser()
    if not path.is_dir():
        raise NotFound(f"catalog folder {str(path)!r} does not exist", field="path")
    return load([path] if standalone else [shipped_dir(), path])
