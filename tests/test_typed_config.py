from dataclasses import dataclass

import pytest

from dnahnet import fileio
from dnahnet import typed_config as cfglib


@dataclass
class Example:
    n: int = 1  # an int
    x: float = 0.5  # a float
    flag: bool = False  # a bool
    name: str | None = None  # optional text
    sizes: tuple[int, ...] = (1, 2)  # a tuple
    extra: dict | None = None  # a mapping


def test_strings_are_coerced_to_field_types():
    cfg = cfglib.replace(Example(), n="1e3", x="3e-4", flag="true", name="none", sizes="4,5,6", extra="{a: 1}")
    assert cfg == Example(n=1000, x=3e-4, flag=True, name=None, sizes=(4, 5, 6), extra={"a": 1})
    assert cfglib.replace(Example(), sizes="[7]").sizes == (7,)


@pytest.mark.parametrize(
    "overrides,message",
    [({"m": 1}, "unknown field 'm'"), ({"n": "1.5"}, "Example.n"), ({"flag": "maybe"}, "Example.flag"),
     ({"n": "two"}, "Example.n")],
)
def test_bad_overrides_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        cfglib.replace(Example(), **overrides)


def test_yaml_round_trip(tmp_path):
    cfg = Example(n=3, sizes=(9, 8), extra={"k": [1, 2]})
    path = tmp_path / "sub" / "c.yaml"
    fileio.write_yaml(path, cfglib.to_dict(cfg))
    import yaml

    assert cfglib.from_dict(Example, yaml.safe_load(path.read_text())) == cfg


def test_parse_assignments():
    assert cfglib.parse_assignments(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        cfglib.parse_assignments(["oops"])
