"""The config models' engine (`ipvsd.config.strict`) on small models of its own.

`ipvsd.config`'s tests cover the real models through the loader, with lines
and messages; these pin the engine's rules themselves: strict scalars, every
problem collected with its path, defaults, aliases, immutability, equality,
copies, pickling and dumping.
"""

from __future__ import annotations

import copy
import pickle
from ipaddress import IPv4Address
from typing import Annotated, Any, ClassVar, Literal

import pytest

from ipvsd.config.strict import (
    Check,
    Field,
    Invalid,
    Model,
    Plain,
    Serialize,
    StringOr,
    ValidationError,
    compile_annotation,
)


def _positive(value: int) -> int:
    if value <= 0:
        raise Invalid("range", "must be positive")
    return value


def _address(value: object) -> IPv4Address:
    if isinstance(value, IPv4Address):
        return value
    if not isinstance(value, str):
        raise Invalid("address_type", "must be an address written as a string")
    try:
        return IPv4Address(value)
    except ValueError:
        raise Invalid("address", f"'{value}' is not an address") from None


Positive = Annotated[int, Check(_positive, (("minimum", 1),))]
Address = Annotated[IPv4Address, Plain(_address, '{"type": "string"}'), Serialize(str)]


class Leaf(Model):
    address: Address
    port: Positive = 80
    tags: tuple[str, ...] = ()


Entry = Annotated[Leaf, StringOr(Plain(_address, '{"type": "string"}'), lambda a: Leaf(address=a))]


class Tree(Model, populate_by_name=True):
    name: str
    ratio: float = 1.0
    enabled: bool = True
    mode: Literal["a", "b"] = "a"
    version: Literal[2, 3] = 2
    leaf: Leaf | None = None
    leaves: tuple[Entry, ...] = ()
    from_: str | None = Field(default=None, alias="from")
    made: Leaf = Field(default_factory=lambda: Leaf(address=IPv4Address("10.0.0.1")))


def _errors(data: dict[str, Any]) -> list[tuple[tuple[object, ...], str, str]]:
    with pytest.raises(ValidationError) as info:
        Tree.model_validate(data)
    return [(e["loc"], e["type"], e["msg"]) for e in info.value.errors()]


def test_a_valid_mapping_becomes_a_frozen_instance_with_defaults() -> None:
    tree = Tree.model_validate(
        {"name": "t", "ratio": 2, "leaves": ("10.0.0.2", {"address": "10.0.0.3", "port": 81})}
    )
    assert (tree.name, tree.ratio, tree.enabled, tree.mode, tree.leaf) == (
        "t",
        2.0,
        True,
        "a",
        None,
    )
    assert type(tree.ratio) is float  # an int is a float, and becomes one
    assert tree.leaves == (
        Leaf(address=IPv4Address("10.0.0.2")),
        Leaf(address=IPv4Address("10.0.0.3"), port=81),
    )
    assert tree.made.address == IPv4Address("10.0.0.1")
    assert tree.model_fields_set == {"name", "ratio", "leaves"}
    with pytest.raises(AttributeError, match="frozen"):
        tree.name = "u"  # type: ignore[misc]
    assert not hasattr(tree, "__dict__")


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("name", 1, "string_type"),
        ("ratio", True, "float_type"),  # true is not 1
        ("ratio", "1.5", "float_type"),
        ("enabled", 1, "bool_type"),  # 1 is not true
        ("enabled", "yes", "bool_type"),
        ("leaves", ["10.0.0.2"], "tuple_type"),  # YAML lists are tuples
        ("leaf", "10.0.0.2", "model_type"),
        ("leaf", ("10.0.0.2",), "model_type"),
        ("mode", "c", "literal_error"),
        ("version", "2", "literal_error"),
        ("version", True, "literal_error"),
    ],
)
def test_scalars_are_strict(field: str, value: object, kind: str) -> None:
    assert [(loc, k) for loc, k, _ in _errors({"name": "t", field: value})] == [((field,), kind)]


def test_an_int_is_not_a_bool_and_a_float_is_not_an_int() -> None:
    for value in (True, 80.0, "80"):
        with pytest.raises(ValidationError) as info:
            Leaf.model_validate({"address": "10.0.0.1", "port": value})
        assert [e["type"] for e in info.value.errors()] == ["int_type"]


def test_every_problem_is_collected_with_its_path() -> None:
    found = _errors(
        {
            "ratio": "x",
            "leaves": ({"address": "10.0.0.300", "port": 0}, "nope", {"port": 1}),
            "leaf": {"address": "10.0.0.1", "tags": ("a", 2)},
            "extra": 1,
        }
    )
    assert found == [
        (("name",), "missing", "Field required"),
        (("ratio",), "float_type", "Input should be a valid number"),
        (("leaf", "tags", 1), "string_type", "Input should be a valid string"),
        (("leaves", 0, "address"), "address", "'10.0.0.300' is not an address"),
        (("leaves", 0, "port"), "range", "must be positive"),
        (("leaves", 1), "address", "'nope' is not an address"),
        (("leaves", 2, "address"), "missing", "Field required"),
        (("extra",), "extra_forbidden", "Extra inputs are not permitted"),
    ]


def test_a_literal_says_what_it_expects() -> None:
    assert _errors({"name": "t", "mode": "c"})[0][2] == "Input should be 'a' or 'b'"
    assert _errors({"name": "t", "version": 4})[0][2] == "Input should be 2 or 3"


def test_an_alias_is_the_key_and_the_name_is_accepted_too() -> None:
    assert Tree.model_validate({"name": "t", "from": "x"}).from_ == "x"
    assert Tree.model_validate({"name": "t", "from_": "x"}).from_ == "x"
    assert _errors({"name": "t", "from": 1}) == [
        (("from",), "string_type", "Input should be a valid string")
    ]


def test_keyword_construction_validates_too() -> None:
    with pytest.raises(ValidationError, match="port: must be positive"):
        Leaf(address=IPv4Address("10.0.0.1"), port=0)
    leaf = Leaf(address="10.0.0.1")  # type: ignore[arg-type]  # converted like YAML's
    assert leaf.address == IPv4Address("10.0.0.1")


def test_an_instance_is_taken_as_it_is() -> None:
    leaf = Leaf(address=IPv4Address("10.0.0.1"))
    assert Tree.model_validate({"name": "t", "leaf": leaf}).leaf is leaf
    assert Leaf.model_validate(leaf) is leaf


def test_equality_hashing_copies_and_pickling_are_by_value() -> None:
    one = Tree.model_validate({"name": "t", "leaves": ("10.0.0.2",)})
    two = Tree.model_validate({"name": "t", "leaves": ("10.0.0.2",)})
    assert one == two
    assert hash(one) == hash(two)
    assert one != Tree.model_validate({"name": "u"})
    assert one != Leaf(address=IPv4Address("10.0.0.2"))
    assert copy.copy(one) is one
    assert copy.deepcopy(one) is one
    again = pickle.loads(pickle.dumps(one))
    assert again == one
    assert again.model_fields_set is one.model_fields_set  # shared, as parsed ones are
    changed = one.model_copy(update={"ratio": 3.0})
    assert (changed.ratio, one.ratio, changed.leaves) == (3.0, 1.0, one.leaves)
    assert changed.model_fields_set == {"name", "leaves", "ratio"}


def test_instances_given_the_same_fields_share_one_fields_set() -> None:
    first = Leaf.model_validate({"address": "10.0.0.1", "port": 1})
    second = Leaf.model_validate({"address": "10.0.0.2", "port": 2})
    assert first.model_fields_set is second.model_fields_set


def test_dump_writes_json_as_the_yaml_does() -> None:
    tree = Tree.model_validate({"name": "t", "leaves": ("10.0.0.2",)})
    dumped = tree.model_dump(mode="json")
    assert dumped["leaves"] == [{"address": "10.0.0.2", "port": 80, "tags": []}]
    assert dumped["from_"] is None
    assert tree.model_dump()["leaves"][0]["address"] == IPv4Address("10.0.0.2")


def test_model_fields_list_the_fields_in_order_with_their_defaults() -> None:
    fields = Tree.model_fields
    assert list(fields)[:3] == ["name", "ratio", "enabled"]
    assert fields["name"].is_required()
    assert not fields["ratio"].is_required()
    assert fields["ratio"].default == 1.0
    assert fields["from_"].alias == "from"
    assert fields["made"].get_default() == Leaf(address=IPv4Address("10.0.0.1"))


def test_an_annotation_outside_the_supported_forms_is_refused_when_compiled() -> None:
    for annotation in (list[int], dict[str, int], int | str, tuple[int, str]):
        with pytest.raises(TypeError):
            compile_annotation(annotation)


def test_the_error_message_lists_each_problem() -> None:
    with pytest.raises(ValidationError) as info:
        Tree.model_validate({"ratio": "x"})
    assert str(info.value).splitlines() == [
        "2 validation error(s) for Tree",
        "name: Field required",
        "ratio: Input should be a valid number",
    ]
    assert isinstance(info.value, ValueError)  # ipvsd.config.events relies on it


def test_fields_come_from_annotations_inherited_ones_first() -> None:
    class Base(Model):
        kind: str = "base"
        LIMIT: ClassVar[int] = 3  # not a field

    class Child(Base):
        size: int = 1

    assert list(Child.model_fields) == ["kind", "size"]
    assert Child.LIMIT == 3
    assert Child.model_validate({"size": 2}) == Child(kind="base", size=2)
    with pytest.raises(TypeError, match="__slots__"):

        class Slotted(Model):  # the engine makes the slots itself
            __slots__ = ("size",)
            size: int
