"""Frozen, strict config models: validation of plain YAML data into typed, immutable objects.

Why not pydantic: ipvsd validated its config with pydantic until 2026-12.
Importing it and building the models' validators made ``ipvsd run`` touch
~2,100 more pages of memory before its first IPVS table (host, 1,000
services: 8,066 page faults and 43 MB peak RSS, now 5,980 and 32 MB): the
5 MB pydantic-core library, pydantic's own modules, the schemas. Under an
emulated kernel (User-Mode Linux) each first touch is a trap, and that made a
1,000-service start ~0.7 s slower than keepalived's (now level with it). The config needs few of
pydantic's features and its rules were already ipvsd's own
(`ipvsd.config.types`), so this module does the rest in the same time:
types, unknown keys, required keys, defaults.

Theory of operation
-------------------
A model is a class deriving from `Model` whose annotated class attributes are
its fields (``port: Port = 0``). Annotations are strings (``from __future__
import annotations``), evaluated at the class's first validation, when a
validator function is compiled for each field from its annotation:

- ``int``, ``float``, ``str``, ``bool``: strict, as YAML gives them; ``1`` is not
  ``true``, ``"80"`` is not ``80``, ``true`` is not ``1``; an ``int`` is a
  ``float`` (and becomes one);
- ``X | None``: null, or an X; ``tuple[X, ...]``: a YAML list (a `tuple`) of X;
  ``Literal[...]``: one of the values; a `Model`: a mapping of its fields;
- ``Annotated[X, *rules]``: the rules of `ipvsd.config.types`, in order: `Check`
  (after X is validated), `Plain` (instead of X's validation), `StringOr` (a
  string through its own parser, else X), `Serialize` (no effect on validation).

Every problem is collected, not just the first: `ValidationError.errors()` lists
them as ``{"type", "loc", "msg", "input"}`` mappings, with ``loc`` the path of keys
and indices from the validated mapping (``("ipvs", "services", 0, "port")``),
which `ipvsd.config` turns into ``FILE:LINE: field: message`` lines. The types
are pydantic's where pydantic had them (``int_type``, ``missing``,
``extra_forbidden``, ...), so messages did not change.

Instances are immutable (``__slots__``, no ``__setattr__``), compared and
hashed by value, and share one ``model_fields_set`` per distinct set of given
fields (a 10,000-service config has a handful).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

M = TypeVar("M", bound="Model")
Validator = Callable[[Any], Any]

_NONE_TYPE = type(None)
_MISSING: Any = object()


class Invalid(ValueError):
    """A value breaks a rule: `kind` names the rule, `message` is shown as it is."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class _Failed(Exception):
    """Problems found below some point; each error's ``loc`` is relative to that point."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _error(kind: str, message: str, value: object) -> _Failed:
    return _Failed([{"type": kind, "loc": (), "msg": message, "input": value}])


class ValidationError(ValueError):
    """A model's data is invalid; `errors` lists every problem."""

    def __init__(self, title: str, errors: list[dict[str, Any]]) -> None:
        lines = [f"{len(errors)} validation error(s) for {title}"]
        lines += [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in errors]
        super().__init__("\n".join(lines))
        self._errors = errors

    def errors(self, include_url: bool = False) -> list[dict[str, Any]]:
        """Every problem: ``type``, ``loc`` (a tuple of keys and indices), ``msg``, ``input``."""
        return [dict(error) for error in self._errors]


# --- the rules that annotations carry (`ipvsd.config.types` builds them) -----------------


@dataclass(frozen=True, slots=True)
class Check:
    """Runs after the annotated type's validation: returns the value, or raises `Invalid`.

    Attributes:
        check: the rule.
        schema: JSON Schema keywords that state the same limits, as pairs
            (``("minimum", 1)``), so that the rule stays hashable.
    """

    check: Callable[[Any], Any]
    schema: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Plain:
    """Replaces the annotated type's validation: converts the value or raises `Invalid`.

    Attributes:
        check: the conversion.
        schema: the JSON Schema of what it accepts, as JSON text (hashable).
    """

    check: Callable[[Any], Any]
    schema: str


@dataclass(frozen=True, slots=True)
class StringOr:
    """A model that may also be written as a string (a VIP: ``"10.0.0.1/24"`` or a mapping).

    A string goes to `string`'s check, whose result `build` turns into the model;
    anything else is validated as the model.
    """

    string: Plain
    build: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Serialize:
    """How `Model.model_dump` writes the value in JSON mode (the YAML contract's spelling)."""

    to_json: Callable[[Any], Any]


# --- fields ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What a field's default says beyond its value (`Field`)."""

    default: Any = _MISSING
    default_factory: Callable[[], Any] | None = None
    alias: str | None = None


def Field(
    default: Any = _MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    alias: str | None = None,
) -> Any:
    """A field's default given with a factory or an alias (``from_: ... = Field(alias="from")``)."""
    return FieldSpec(default, default_factory, alias)


@dataclass(slots=True)
class FieldInfo:
    """One field of a model, as `Model.model_fields` lists it.

    Attributes:
        annotation: the evaluated annotation (``Annotated`` included).
        default: the default value; absent (`is_required`) for a required field.
        default_factory: makes the default, when given instead of `default`.
        alias: the key the field has in the YAML, when it is not its name.
    """

    annotation: Any
    default: Any = _MISSING
    default_factory: Callable[[], Any] | None = None
    alias: str | None = None

    def is_required(self) -> bool:
        return self.default is _MISSING and self.default_factory is None

    def get_default(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default


class _Compiled:
    """A model class's validation plan, made at its first use."""

    __slots__ = ("by_key", "fields", "plan")

    def __init__(self, cls: type[Model]) -> None:
        hints = typing.get_type_hints(cls, include_extras=True)
        self.fields: dict[str, FieldInfo] = {}
        plan = []
        self.by_key: dict[str, str] = {}
        for name in cls.__field_names__:
            spec = cls.__field_specs__.get(name, FieldSpec())
            info = FieldInfo(hints[name], spec.default, spec.default_factory, spec.alias)
            self.fields[name] = info
            key = spec.alias or name
            self.by_key[key] = name
            if spec.alias is not None and cls.__populate_by_name__:
                self.by_key[name] = name
            plan.append((name, key, compile_annotation(hints[name]), info))
        self.plan = tuple(plan)


class _ModelMeta(type):
    """Turns annotated class attributes into slots, and their values into defaults."""

    def __new__(
        mcs,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        *,
        populate_by_name: bool = False,
        schema_extra: Callable[[dict[str, Any]], None] | None = None,
    ) -> _ModelMeta:
        if not any(isinstance(base, _ModelMeta) for base in bases):  # `Model` itself
            namespace.update(
                __field_names__=(),
                __field_specs__={},
                __populate_by_name__=False,
                __schema_extra__=None,
                __compiled__=None,
            )
            return super().__new__(mcs, name, bases, namespace)
        if "__slots__" in namespace:
            raise TypeError(f"{name}: a model's __slots__ are made from its annotated fields")
        own = [
            field
            for field, annotation in namespace.get("__annotations__", {}).items()
            if not str(annotation).startswith(("ClassVar", "typing.ClassVar"))
        ]
        inherited: list[str] = []
        specs: dict[str, FieldSpec] = {}
        for base in bases:
            inherited += getattr(base, "__field_names__", ())
            specs.update(getattr(base, "__field_specs__", {}))
        for field in own:
            if field in namespace:
                value = namespace.pop(field)
                specs[field] = value if isinstance(value, FieldSpec) else FieldSpec(value)
        namespace["__slots__"] = tuple(field for field in own if field not in inherited)
        namespace["__field_names__"] = (*inherited, *(f for f in own if f not in inherited))
        namespace["__field_specs__"] = specs
        namespace["__populate_by_name__"] = populate_by_name
        namespace["__schema_extra__"] = schema_extra
        namespace["__compiled__"] = None
        return super().__new__(mcs, name, bases, namespace)

    @property
    def model_fields(cls) -> dict[str, FieldInfo]:
        """Field name -> `FieldInfo`, in declaration order."""
        return _compiled(cls).fields  # type: ignore[arg-type]


def _compiled(cls: type[Model]) -> _Compiled:
    compiled = cls.__dict__["__compiled__"]
    if compiled is None:
        compiled = _Compiled(cls)
        type.__setattr__(cls, "__compiled__", compiled)
    return compiled  # type: ignore[no-any-return]


_FIELDS_SETS: dict[frozenset[str], frozenset[str]] = {}
"""One shared ``model_fields_set`` per distinct set of given fields."""


# Type checkers see each model as a frozen, keyword-only dataclass: ``RealConfig(port="80")``
# is an error to them, as it is at run time.
@typing.dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(Field,))
class Model(metaclass=_ModelMeta):
    """Base of the config models: frozen, strict, unknown keys forbidden.

    ``Model(**fields)`` validates as `model_validate` does.
    """

    __slots__ = ("model_fields_set",)
    __field_names__: ClassVar[tuple[str, ...]]
    __field_specs__: ClassVar[dict[str, FieldSpec]]
    __populate_by_name__: ClassVar[bool]
    __schema_extra__: ClassVar[Callable[[dict[str, Any]], None] | None]
    __compiled__: ClassVar[_Compiled | None]
    model_fields_set: frozenset[str]
    """The fields the data gave (the others have their defaults)."""

    if typing.TYPE_CHECKING:
        model_fields: ClassVar[dict[str, FieldInfo]]

    def __init__(self, **data: Any) -> None:
        try:
            _fill(self, type(self), data)
        except _Failed as failed:
            raise ValidationError(type(self).__name__, failed.errors) from None

    @classmethod
    def model_validate(cls: type[M], data: object) -> M:
        """`data` (a mapping, or an instance already) as an instance of `cls`.

        Raises:
            ValidationError: with every problem found.
        """
        try:
            return _validate_model(cls, data)
        except _Failed as failed:
            raise ValidationError(cls.__name__, failed.errors) from None

    def model_copy(self: M, *, update: Mapping[str, Any] | None = None) -> M:
        """A copy with `update`'s values (not validated, as pydantic's ``model_copy``)."""
        update = update or {}
        values = tuple(update.get(name, getattr(self, name)) for name in self.__field_names__)
        given = self.model_fields_set | (update.keys() & set(self.__field_names__))
        return _rebuild(type(self), values, frozenset(given))

    def model_dump(self, *, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The fields as plain data; ``json`` writes values as the YAML does (`Serialize`)."""
        compiled = _compiled(type(self))
        return {
            name: dump_value(getattr(self, name), info.annotation, mode)
            for name, info in compiled.fields.items()
        }

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__field_names__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Model)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__field_names__)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name!r} changes in a model_copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._values(), self.model_fields_set))

    def __copy__(self: M) -> M:
        return self

    def __deepcopy__(self: M, memo: dict[int, Any]) -> M:
        return self


def _rebuild(cls: type[M], values: tuple[Any, ...], given: frozenset[str]) -> M:
    instance = object.__new__(cls)
    for name, value in zip(cls.__field_names__, values, strict=True):
        object.__setattr__(instance, name, value)
    object.__setattr__(instance, "model_fields_set", _shared(given))
    return instance


def _shared(given: frozenset[str]) -> frozenset[str]:
    return _FIELDS_SETS.setdefault(given, given)


def _fill(instance: Model, cls: type[Model], data: Mapping[str, Any]) -> None:
    """Validate `data` into `instance`'s slots; raises `_Failed` with every problem."""
    compiled = _compiled(cls)
    errors: list[dict[str, Any]] | None = None
    given = []
    used = 0
    setter = object.__setattr__
    for name, key, validate, info in compiled.plan:
        if key in data:
            value = data[key]
            used += 1
        elif info.alias is not None and cls.__populate_by_name__ and name in data:
            key = name
            value = data[name]
            used += 1
        else:
            if info.default_factory is not None:
                setter(instance, name, info.default_factory())
            elif info.default is not _MISSING:
                setter(instance, name, info.default)
            else:
                errors = errors or []
                errors.append(
                    {"type": "missing", "loc": (key,), "msg": "Field required", "input": data}
                )
            continue
        try:
            setter(instance, name, validate(value))
            given.append(name)
        except _Failed as failed:
            errors = errors or []
            for error in failed.errors:
                error["loc"] = (key, *error["loc"])
            errors.extend(failed.errors)
    if used != len(data):
        for key, value in data.items():
            if key not in compiled.by_key:
                errors = errors or []
                errors.append(
                    {
                        "type": "extra_forbidden",
                        "loc": (key,),
                        "msg": "Extra inputs are not permitted",
                        "input": value,
                    }
                )
    if errors:
        raise _Failed(errors)
    setter(instance, "model_fields_set", _shared(frozenset(given)))


def _validate_model(cls: type[M], data: object) -> M:
    if type(data) is cls:
        return data  # an instance is valid already
    if not isinstance(data, Mapping):
        raise _error("model_type", "Input should be a valid dictionary", data)
    instance = object.__new__(cls)
    _fill(instance, cls, data)
    return instance


# --- compiling annotations into validators --------------------------------------------------


def compile_annotation(annotation: Any) -> Validator:
    """The validator of values of `annotation` (raises `_Failed`).

    Raises:
        TypeError: the annotation is of a form models do not use.
    """
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *rules = get_args(annotation)
        return _annotated(base, rules)
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        rest = [option for option in options if option is not _NONE_TYPE]
        if len(rest) == len(options) - 1 and len(rest) == 1:
            return _optional(compile_annotation(rest[0]))
        raise TypeError(f"unions other than X | None need a Plain rule: {annotation!r}")
    if origin is tuple:
        item, *more = get_args(annotation)
        if more != [Ellipsis]:
            raise TypeError(f"only tuple[X, ...] is supported: {annotation!r}")
        return _tuple(compile_annotation(item))
    if origin is Literal:
        return _literal(get_args(annotation))
    if annotation is bool:
        return _bool
    if annotation is int:
        return _int
    if annotation is float:
        return _float
    if annotation is str:
        return _str
    if isinstance(annotation, type) and issubclass(annotation, Model):
        model = annotation
        return lambda value: _validate_model(model, value)
    raise TypeError(f"unsupported annotation in a config model: {annotation!r}")


def _annotated(base: Any, rules: list[Any]) -> Validator:
    validate: Validator | None = None
    for rule in rules:
        if isinstance(rule, Plain):
            validate = _plain(rule.check)
        elif isinstance(rule, Check):
            validate = _after(validate or compile_annotation(base), rule.check)
        elif isinstance(rule, StringOr):
            validate = _string_or(validate or compile_annotation(base), rule)
        elif not isinstance(rule, Serialize):
            raise TypeError(f"unknown rule {rule!r} on {base!r}")
    return validate or compile_annotation(base)


def _as_failed(value: object, invalid: Invalid) -> _Failed:
    return _error(invalid.kind, invalid.message, value)


def _plain(check: Callable[[Any], Any]) -> Validator:
    def validate(value: Any) -> Any:
        try:
            return check(value)
        except Invalid as invalid:
            raise _as_failed(value, invalid) from None

    return validate


def _after(inner: Validator, check: Callable[[Any], Any]) -> Validator:
    def validate(value: Any) -> Any:
        result = inner(value)
        try:
            return check(result)
        except Invalid as invalid:
            raise _as_failed(result, invalid) from None

    return validate


def _string_or(inner: Validator, rule: StringOr) -> Validator:
    parse = _plain(rule.string.check)

    def validate(value: Any) -> Any:
        if isinstance(value, Mapping | Model):
            return inner(value)
        return rule.build(parse(value))  # it says what a string must be

    return validate


def _optional(inner: Validator) -> Validator:
    def validate(value: Any) -> Any:
        return None if value is None else inner(value)

    return validate


def _tuple(item: Validator) -> Validator:
    def validate(value: Any) -> tuple[Any, ...]:
        if type(value) is not tuple:
            raise _error("tuple_type", "Input should be a valid tuple", value)
        out = []
        errors: list[dict[str, Any]] = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except _Failed as failed:
                for error in failed.errors:
                    error["loc"] = (index, *error["loc"])
                errors.extend(failed.errors)
        if errors:
            raise _Failed(errors)
        return tuple(out)

    return validate


def _literal(options: tuple[Any, ...]) -> Validator:
    shown = [repr(option) for option in options]
    expected = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    message = f"Input should be {expected}"

    def validate(value: Any) -> Any:
        for option in options:
            if type(value) is type(option) and value == option:
                return option
        raise _error("literal_error", message, value)

    return validate


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _error("bool_type", "Input should be a valid boolean", value)
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        raise _error("int_type", "Input should be a valid integer", value)
    return value


def _float(value: Any) -> float:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int or (isinstance(value, int | float) and not isinstance(value, bool)):
        return float(value)
    raise _error("float_type", "Input should be a valid number", value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _error("string_type", "Input should be a valid string", value)
    return value


# --- dumping --------------------------------------------------------------------------------


def dump_value(value: Any, annotation: Any, mode: str) -> Any:
    """`value` of a field of `annotation` as plain data; ``json``: as the YAML writes it."""
    if isinstance(value, Model):
        return value.model_dump(mode=mode)  # type: ignore[arg-type]
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *rules = get_args(annotation)
        if mode == "json":
            for rule in rules:
                if isinstance(rule, Serialize) and value is not None:
                    return rule.to_json(value)
        return dump_value(value, base, mode)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        rest = [option for option in get_args(annotation) if option is not _NONE_TYPE]
        return dump_value(value, rest[0], mode)
    if origin is tuple:
        item = get_args(annotation)[0]
        dumped = [dump_value(element, item, mode) for element in value]
        return dumped if mode == "json" else tuple(dumped)
    return value


def models_in(annotation: Any) -> Iterator[type[Model]]:
    """The model classes an annotation names, outermost first."""
    if isinstance(annotation, type) and issubclass(annotation, Model):
        yield annotation
        return
    for argument in get_args(annotation):
        yield from models_in(argument)
