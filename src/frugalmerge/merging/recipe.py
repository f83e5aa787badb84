"""``MergeRecipe``: a frozen pydantic model of a mergekit 0.1.5 YAML config, and parameter resolution.

Semantics follow mergekit: a parameter value is a scalar, a list (a gradient interpolated over the
layers of an output slice, ``t = i / (n - 1)``; tensors outside the layer stack use ``t = 0``) or a
list of ``{filter, value}`` (first entry whose filter is a substring of the tensor name wins; no
filter or ``*`` matches everything). Per-model parameters take precedence over slice parameters,
which take precedence over the top-level ``parameters``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from frugalmerge._yaml import safe_load_unique, yaml_error_text
from frugalmerge.merging.errors import RecipeError

#: mergekit 0.1.5 keys that frugalmerge does not implement: refused rather than ignored.
UNSUPPORTED_KEYS = {
    "tokenizer": "mergekit's tokenizer block is not supported; use tokenizer_source (base, union or a model)",
    "modules": "per-module merges (modules:) are not supported; use models: or slices:",
    "chat_template": "not supported: the output keeps the reference model's tokenizer files and their chat "
                     "template; drop the key",
}


Scalar = Union[bool, int, float, str]
ScalarOrGradient = Union[Scalar, list[Scalar]]


# Entries of models/slices/sources and {filter, value} pairs take no other keys: mergekit drops an
# unknown one silently (``densty: 0.3`` on a model merged with the fallback; ``filtr: mlp`` made a
# value apply to every tensor), and nothing legitimate lives there.
_ENTRY = ConfigDict(frozen=True, extra="forbid")


class ConditionalParameter(BaseModel):
    """A parameter value that applies to tensors whose name contains ``filter``."""

    model_config = _ENTRY
    value: ScalarOrGradient
    filter: Optional[str] = None


ParameterSetting = Union[ConditionalParameter, list[ConditionalParameter], ScalarOrGradient]
Parameters = Optional[dict[str, ParameterSetting]]


class InputModel(BaseModel):
    """One entry of ``models:``."""

    model_config = _ENTRY
    model: str
    parameters: Parameters = None


class InputSlice(BaseModel):
    """One source of an output slice: a model and a half-open layer range."""

    model_config = _ENTRY
    model: str
    layer_range: tuple[int, int]
    parameters: Parameters = None


class OutputSlice(BaseModel):
    """One entry of ``slices:``: output layers built from aligned source layer ranges."""

    model_config = _ENTRY
    sources: list[InputSlice]
    base_model: Optional[str] = None
    residual_weight: Optional[float] = None
    parameters: Parameters = None


class MergeRecipe(BaseModel):
    """A mergekit merge configuration (the subset frugalmerge executes), validated once.

    Unknown top-level keys are ignored, as mergekit does. Model references are plain path strings
    (the same strings a :class:`~frugalmerge.merging.engine.MergeEngine` was given).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    merge_method: str
    base_model: Optional[str] = None
    models: Optional[list[InputModel]] = None
    slices: Optional[list[OutputSlice]] = None
    parameters: Parameters = None
    dtype: Optional[str] = None
    out_dtype: Optional[str] = None
    tokenizer_source: Optional[str] = None
    chat_template: Optional[str] = None
    random_seed: Optional[int] = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """Unknown top-level keys are ignored, as mergekit does, unless they look like a typo of
        a known key, or are mergekit features frugalmerge does not implement."""
        if not isinstance(data, dict):
            return data
        for key in data:
            if key in cls.model_fields:
                continue
            if key in UNSUPPORTED_KEYS:
                raise ValueError(f"{key}: {UNSUPPORTED_KEYS[key]}")
            close = difflib.get_close_matches(str(key), list(cls.model_fields), n=1, cutoff=0.75)
            if close:
                raise ValueError(f"unknown key {key!r} (did you mean {close[0]!r}?)")
        if data.get("chat_template") is not None:
            raise ValueError(f"chat_template: {UNSUPPORTED_KEYS['chat_template']}")
        return data

    @model_validator(mode="after")
    def _check(self) -> "MergeRecipe":
        from frugalmerge.merging.methods import MERGE_METHODS, get_method

        if (self.models is None) == (self.slices is None) or not (self.models or self.slices):
            raise ValueError("exactly one of 'models' or 'slices' must be given (and non-empty)")
        method = get_method(self.merge_method)  # raises on an unknown method
        for where, ref in self._model_references():
            # An empty path would resolve to the working directory and fail far from the recipe.
            if ref is not None and not ref.strip():
                raise ValueError(f"{where} is an empty model path")
        for dtype_key in ("dtype", "out_dtype"):
            value = getattr(self, dtype_key)
            if value is not None and value not in DTYPES:
                raise ValueError(f"{dtype_key} {value!r} is not one of {sorted(DTYPES)}")
        known = {name for m in MERGE_METHODS.values() for name in m.params}
        for where, params in self._all_parameter_blocks():
            for key, setting in (params or {}).items():
                spec = method.params.get(key)
                if spec is None and key not in known:
                    # A name no method reads is a typo (``weigth``, ``normalise``): mergekit drops it.
                    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
                    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
                    raise ValueError(f"{where}.{key}: no merge method has a parameter {key!r}{hint}")
                if spec is None:
                    continue  # another method's parameter (multi-method YAMLs): ignored, as mergekit does
                for value in _leaf_values(setting):
                    spec.check(value, where=f"{where}.{key}")
        for i, s in enumerate(self.slices or []):
            lengths = {src.layer_range[1] - src.layer_range[0] for src in s.sources}
            if not s.sources or len(lengths) != 1 or min(lengths) <= 0:
                raise ValueError(
                    f"slices[{i}]: every source needs the same positive number of layers"
                )
        return self

    def _model_references(self):
        """Every (location, string) of the recipe that names a model directory."""
        yield "base_model", self.base_model
        if self.tokenizer_source not in ("base", "union"):
            yield "tokenizer_source", self.tokenizer_source
        for i, m in enumerate(self.models or []):
            yield f"models[{i}].model", m.model
        for i, s in enumerate(self.slices or []):
            yield f"slices[{i}].base_model", s.base_model
            for j, src in enumerate(s.sources):
                yield f"slices[{i}].sources[{j}].model", src.model

    def _all_parameter_blocks(self):
        yield "parameters", self.parameters
        for m in self.models or []:
            yield f"models[{m.model}].parameters", m.parameters
        for i, s in enumerate(self.slices or []):
            yield f"slices[{i}].parameters", s.parameters
            for src in s.sources:
                yield f"slices[{i}].sources[{src.model}].parameters", src.parameters

    # ----------------------------------------------------------------------------- I/O
    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> "MergeRecipe":
        """Parse a mergekit YAML file (path) or YAML text; errors name the culprit."""
        text = str(path_or_text)
        source = "recipe"
        if isinstance(path_or_text, Path) or ("\n" not in text and text.endswith((".yml", ".yaml"))):
            path = Path(path_or_text)
            if not path.is_file():
                raise RecipeError(f"recipe file not found: {path}")
            try:
                text, source = path.read_text(encoding="utf-8"), str(path)
            except UnicodeDecodeError as exc:
                raise RecipeError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason})") from None
        try:
            data = safe_load_unique(text)
        except yaml.YAMLError as exc:
            raise RecipeError(f"{source}: {yaml_error_text(exc)}") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{source}: a recipe must be a YAML mapping, got {type(data).__name__}")
        return cls.parse(data, source=source)

    @classmethod
    def parse(cls, data: dict[str, Any], *, source: str = "recipe") -> "MergeRecipe":
        """``model_validate`` with pydantic's errors turned into one ``RecipeError`` line."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
            # A parameter value is a union (scalar | gradient | {filter, value} list): a misspelt key
            # fails every branch, and the informative failure is the unknown key, not the first branch.
            err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
            # union-branch tags ('ConditionalParameter', 'list[...]') are pydantic's, not the user's
            loc = ".".join(str(p) for p in err.get("loc", ()) if not (isinstance(p, str) and (p[:1].isupper() or "[" in p)))
            msg = str(err.get("msg", exc)).removeprefix("Value error, ")
            raise RecipeError(f"{source}: {loc + ': ' if loc else ''}{msg}") from None

    def to_dict(self) -> dict[str, Any]:
        """The mergekit-shaped dict (defaults left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_yaml(self) -> str:
        """mergekit YAML text for this recipe."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def filters(self) -> list[str]:
        """Every tensor-name filter the recipe's parameters use (``*`` and unfiltered values
        excluded), in order of appearance."""
        scopes = [self.parameters, *(m.parameters for m in self.models or ())]
        for sl in self.slices or ():
            scopes += [sl.parameters, *(src.parameters for src in sl.sources)]
        found: dict[str, None] = {}
        for params in scopes:
            for setting in (params or {}).values():
                for cond in setting if isinstance(setting, list) else [setting]:
                    if isinstance(cond, ConditionalParameter) and cond.filter not in (None, "*"):
                        found[cond.filter] = None
        return list(found)

    def referenced_models(self) -> list[str]:
        """Every model path the recipe refers to, base first, without duplicates."""
        seen: dict[str, None] = {}
        if self.base_model:
            seen[self.base_model] = None
        for m in self.models or []:
            seen[m.model] = None
        for s in self.slices or []:
            if s.base_model:
                seen[s.base_model] = None
            for src in s.sources:
                seen[src.model] = None
        return list(seen)


DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "float64": "float64"}


def _leaf_values(setting: Any):
    """Every scalar inside a parameter setting (gradients and filters unpacked)."""
    if isinstance(setting, ConditionalParameter):
        yield from _leaf_values(setting.value)
    elif isinstance(setting, list):
        for item in setting:
            yield from _leaf_values(item)
    else:
        yield setting


# ------------------------------------------------------------------------------ resolution
def evaluate_setting(tensor_name: str, setting: Any, t: float, validate) -> Any:
    """Resolve one setting (scalar / gradient / filtered list) for a tensor at layer position ``t``.

    Returns ``None`` when a filtered list has no matching entry (the next scope is then used).
    """
    if isinstance(setting, ConditionalParameter):
        setting = [setting]
    if isinstance(setting, (bool, int, float, str)):
        return validate(setting)
    if isinstance(setting, list):
        if not setting:
            return None
        if all(isinstance(e, (bool, int, float, str)) for e in setting):
            values = [validate(e) for e in setting]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                return values[int(t * (len(values) - 1))]
            scaled = t * (len(values) - 1)
            i0 = int(scaled)
            i1 = min(len(values) - 1, i0 + 1)
            frac = scaled - i0
            return validate((1 - frac) * values[i0] + frac * values[i1])
        for cond in setting:
            if not isinstance(cond, ConditionalParameter):
                raise RecipeError(f"mixed filtered and plain values in a parameter list: {setting!r}")
            if cond.filter is None or cond.filter == "*" or (tensor_name and cond.filter in tensor_name):
                return evaluate_setting(tensor_name, cond.value, t, validate)
        return None
    raise RecipeError(f"unexpected parameter value {setting!r}")
