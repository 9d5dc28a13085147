"""Recipes: YAML files in conf/ that say what to read, which stages to run with
which parameters, where to write, and on which engine.

Validated on load; every error names the file, the key and what was expected.
``${VAR}`` and ``${VAR:-default}`` are interpolated from the environment;
``--set a.b=c`` overrides any key (``stages.NAME.key=v`` or ``stages.2.key=v``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .stage import OptionsError, StageParams, get_stage


class RecipeError(ValueError):
    pass


class StrictModel(BaseModel):
    """A pydantic model whose unknown keys are errors (recipes, stage and trainer settings)."""

    model_config = ConfigDict(extra="forbid")


class InputSpec(StrictModel):
    name: str
    paths: list[str] = Field(min_length=1)
    format: str = "jsonl"
    fields: dict[str, str] = Field(default_factory=dict)   # our column -> source field
    options: dict[str, Any] = Field(default_factory=dict)  # reader-specific
    licence: str | None = None
    weight: float | None = None                            # mixing weight (tokenize)


class Resources(StrictModel):
    workers: int = Field(2, ge=1)
    ray_address: str | None = None        # None: local Ray (or RAY_ADDRESS if set)
    spark_master: str = "local[*]"
    batch_size: int = Field(2048, ge=1)
    cpus_per_task: float = Field(1.0, gt=0)
    # consecutive map stages (read included) run in one pass per part, each still writing its
    # own parts, markers and manifest, byte-identical to running them one by one
    fuse: bool = True


class StageSpec(StrictModel):
    stage: str
    params: dict[str, Any] = Field(default_factory=dict)
    # map stages only: run on rows whose `source` (input name) is listed; other rows pass
    # through unchanged and are counted as `<stage>:not_for_source` (None: every row)
    sources: list[str] | None = None


class Recipe(StrictModel):
    name: str
    output: str
    engine: Literal["ray", "spark", "local"] = "ray"
    seed: int = 0
    resources: Resources = Field(default_factory=Resources)
    inputs: list[InputSpec] = Field(default_factory=list)
    stages: list[StageSpec] = Field(min_length=1)
    labels: str | None = None        # planted-label file for the sample shards
    report: bool = True
    # every stage's tokens in/kept/rejected in stats.json, counted with the run's tokenizer
    # after the run (core/token_funnel.py); off: characters only
    token_funnel: bool = True
    source_file: str | None = None

    def fingerprint(self) -> str:
        d = self.model_dump(exclude={"source_file", "resources", "engine", "report"})
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


def _interpolate(obj: Any, where: str, src: str) -> Any:
    if isinstance(obj, dict):
        return {k: _interpolate(v, f"{where}.{k}" if where else str(k), src) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interpolate(v, f"{where}[{i}]", src) for i, v in enumerate(obj)]
    if isinstance(obj, str):
        def sub(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(3)
            if var in os.environ:
                return os.environ[var]
            if m.group(2) is not None:
                return default
            raise RecipeError(f"{src}: key '{where}': environment variable ${{{var}}} is not set "
                              f"(use ${{{var}:-default}} for a default)")
        return _ENV.sub(sub, obj)
    return obj


def _parse_scalar(v: str) -> Any:
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def apply_overrides(raw: dict[str, Any], overrides: list[str], src: str) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for ov in overrides or []:
        if "=" not in ov:
            raise RecipeError(f"--set {ov!r}: expected KEY=VALUE, e.g. resources.workers=4")
        key, value = ov.split("=", 1)
        parts = key.strip().split(".")
        node: Any = raw
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                idx = None
                if p.isdigit():
                    idx = int(p)
                else:  # stages.NAME -> the stage entry with that name
                    for j, item in enumerate(node):
                        if isinstance(item, dict) and (item.get("stage") == p or item.get("name") == p):
                            idx = j
                            break
                if idx is None or idx >= len(node):
                    raise RecipeError(f"{src}: --set {key}: no list item {p!r}")
                if last:
                    node[idx] = _parse_scalar(value)
                else:
                    node = node[idx]
                    # stage params live under 'params' but may be addressed directly
                    inline = parts[i + 1] not in ("stage", "params", "sources")
                    if isinstance(node, dict) and "stage" in node and inline:
                        node = node.setdefault("params", {})
                continue
            if not isinstance(node, dict):
                raise RecipeError(f"{src}: --set {key}: {'.'.join(parts[:i])} is not a mapping")
            if last:
                node[p] = _parse_scalar(value)
            else:
                node = node.setdefault(p, {})
    return raw


def _normalise_stages(raw: dict[str, Any], src: str) -> None:
    """Accept `- stage: NAME` with params inline or under `params:`, or `- NAME`."""
    stages = raw.get("stages")
    if not isinstance(stages, list):
        return
    out = []
    for i, s in enumerate(stages):
        if isinstance(s, str):
            out.append({"stage": s, "params": {}})
        elif isinstance(s, dict) and "stage" in s:
            s = dict(s)
            name = s.pop("stage")
            sources = s.pop("sources", None)
            params = dict(s.pop("params", {}) or {})
            params.update(s)
            out.append({"stage": name, "params": params, **({"sources": sources} if sources is not None else {})})
        else:
            raise RecipeError(f"{src}: key 'stages[{i}]': expected a stage name or a mapping with 'stage:', got {s!r}")
    raw["stages"] = out


def _fmt_validation(e: ValidationError, src: str, prefix: str = "") -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        loc = f"{prefix}{loc}" if loc else prefix.rstrip(".")
        if err["type"] == "extra_forbidden":
            lines.append(f"{src}: unknown key '{loc}'")
        elif err["type"] == "missing":
            lines.append(f"{src}: missing required key '{loc}'")
        else:
            lines.append(f"{src}: key '{loc}': {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def validate_stage_params(name: str, params: dict[str, Any], src: str, where: str) -> StageParams:
    try:
        cls = get_stage(name)
    except KeyError as e:
        raise RecipeError(f"{src}: key '{where}.stage': {e.args[0]}") from None
    try:
        validated = cls.Params(**params)
    except ValidationError as e:
        raise RecipeError(_fmt_validation(e, src, f"{where}.params.")) from None
    try:
        cls.code_hash()  # reads the stage's package data: missing data fails here, before any work
    except FileNotFoundError as e:
        raise RecipeError(f"{src}: key '{where}.stage' ({name}): {e}") from None
    return validated


def validate_input_options(spec: InputSpec, src: str, where: str) -> Any:
    """The input's format exists and its options fit the format's options model (the
    read stage knows the formats)."""
    try:
        return get_stage("read").check_input(spec.format, spec.options)
    except KeyError as e:
        raise RecipeError(f"{src}: key '{where}.format': {e.args[0]}") from None
    except OptionsError as e:
        raise RecipeError("\n".join(f"{src}: {'unknown key' if 'unknown option' in m else 'key'} "
                                     f"'{where}.options.{k}': {m}" for k, m in e.problems)) from None
class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # yaml has no annotations
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last
    silently, so a recipe could say two things and mean one)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: let SafeLoader report it
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(data: bytes, src: str) -> Any:
    """YAML from bytes: UTF-8 (BOM allowed), no duplicate keys; errors name the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{src}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                          "save the recipe as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise RecipeError(f"{src}: not valid YAML: {e}") from None


def read_mapping(path_or_dict: str | dict[str, Any], label: str = "<recipe>") -> tuple[str, dict[str, Any]]:
    """(source name for messages, a private copy of the raw mapping) from a YAML file or a dict."""
    if isinstance(path_or_dict, dict):
        src, raw = label, copy.deepcopy(path_or_dict)
    else:
        src = path_or_dict
        try:
            with open(path_or_dict, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise RecipeError(f"{src}: recipe file not found (resolved to {os.path.abspath(src)}; "
                              f"the working directory is {os.getcwd()})") from None
        except OSError as e:
            raise RecipeError(f"{src}: cannot read the recipe: {e.strerror}") from None
        raw = load_yaml_text(data, src)
    if not isinstance(raw, dict):
        raise RecipeError(f"{src}: expected a mapping at the top level")
    return src, raw


def packaged_recipe(name: str) -> str | None:
    """The file of the recipe ``name`` shipped in the package, when ``name`` is a bare name
    (no folder, no suffix) and no file of that name is here; else None."""
    if os.path.exists(name) or os.sep in name or "/" in name or name.endswith((".yaml", ".yml")):
        return None
    from .resources import package_folder

    f = package_folder("lmrefinery", "recipes").joinpath(f"{name}.yaml")
    return str(f) if f.is_file() else None


def load_recipe(path_or_dict: str | dict[str, Any], overrides: list[str] | None = None,
                label: str = "<recipe>") -> Recipe:
    """``label`` names a recipe given as a dict in messages (e.g. the command that built it).
    A bare name that is no file here (``mini``, ``cc-snapshot``) is a recipe shipped in the
    package (``lmrefinery/recipes/NAME.yaml``)."""
    if isinstance(path_or_dict, str):
        path_or_dict = packaged_recipe(path_or_dict) or path_or_dict
    src, raw = read_mapping(path_or_dict, label)
    _normalise_stages(raw, src)
    raw = apply_overrides(raw, overrides or [], src)
    raw = _interpolate(raw, "", src)
    try:
        recipe = Recipe(**raw, source_file=None if isinstance(path_or_dict, dict) else src)
    except ValidationError as e:
        raise RecipeError(_fmt_validation(e, src)) from None
    for i, s in enumerate(recipe.stages):
        validate_stage_params(s.stage, s.params, src, f"stages[{i}]")
    for i, spec in enumerate(recipe.inputs):
        validate_input_options(spec, src, f"inputs[{i}]")
    names = [i.name for i in recipe.inputs]
    if len(set(names)) != len(names):
        raise RecipeError(f"{src}: key 'inputs': input names must be unique, got {names}")
    for i, s in enumerate(recipe.stages):
        validate_stage_sources(s, names, src, f"stages[{i}]")
    return recipe


def validate_stage_sources(spec: StageSpec, inputs: list[str], src: str, where: str) -> None:
    """`sources:` names inputs of this recipe and only scopes map stages (a global stage such
    as dedup compares rows across sources, so scoping it would change what it means)."""
    if spec.sources is None:
        return
    kind = get_stage(spec.stage).kind
    if kind != "map":
        raise RecipeError(f"{src}: key '{where}.sources': only map stages can be limited to some sources; "
                          f"{spec.stage!r} is a {kind} stage")
    if not spec.sources:
        raise RecipeError(f"{src}: key '{where}.sources': empty list (leave the key out to run on every source)")
    from .names import unknown_name

    for name in spec.sources:
        if name not in inputs:
            raise RecipeError(f"{src}: key '{where}.sources': {unknown_name('input', name, inputs)}")
