"""events.config.load: a settings Struct from the environment, each bad
value refused in one line that names its variable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest
from msgspec import Meta

from events.config import ConfigError, Env, load, settings


class Example(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    port: Annotated[int, Meta(ge=1, le=65535, description="a port")] = 8080
    wait_seconds: Annotated[float, Meta(ge=1.0, le=15.0, description="a wait")] = 10.0
    flag: Annotated[bool, Meta(description="a switch")] = False
    names: Annotated[tuple[str, ...], Meta(min_length=1, description="a list")] = ("a", "b")
    policy: Annotated[Literal["one", "two"], Meta(description="a choice")] = "one"
    where: Annotated[Path, Meta(description="a path")] = Path(".x")
    renamed: Annotated[int, Meta(ge=0, description="read under another name")] = msgspec.field(
        default=0, name="OTHER_NAME")
    knob: float = 1.0  # no description: not a setting, never read


def example(**env: str) -> Example:
    return load(Example, Env({f"BREAKGLASS_{k}": v for k, v in env.items()}))


def test_unset_and_blank_variables_keep_the_declared_defaults():
    assert example() == Example()
    assert example(PORT="  ", FLAG="") == Example()


def test_each_variable_is_read_as_its_field_s_type():
    got = example(PORT=" 9000 ", WAIT_SECONDS="2.5", FLAG="yes", NAMES="x, ,y,", POLICY="two", WHERE="/tmp/d",
                  OTHER_NAME="3", KNOB="9")
    assert got == Example(port=9000, wait_seconds=2.5, flag=True, names=("x", "y"), policy="two",
                          where=Path("/tmp/d"), renamed=3)


def test_only_described_fields_are_settings():
    assert [f.encode_name for f in settings(Example)] == [
        "PORT", "WAIT_SECONDS", "FLAG", "NAMES", "POLICY", "WHERE", "OTHER_NAME"]


def test_given_values_are_not_read_from_the_environment():
    got = load(Example, Env({"BREAKGLASS_PORT": "not a number"}), port=7)
    assert got.port == 7


@pytest.mark.parametrize(("env", "says"), [
    ({"PORT": "abc"}, "BREAKGLASS_PORT must be a whole number, got 'abc'"),
    ({"PORT": "0"}, "BREAKGLASS_PORT must be between 1 and 65535, got 0"),
    ({"WAIT_SECONDS": "x"}, "BREAKGLASS_WAIT_SECONDS must be a number, got 'x'"),
    ({"WAIT_SECONDS": "0.5"}, "BREAKGLASS_WAIT_SECONDS must be at least 1.0, got '0.5'"),
    ({"WAIT_SECONDS": "nan"}, "BREAKGLASS_WAIT_SECONDS must be at least 1.0, got 'nan'"),
    ({"WAIT_SECONDS": "60"}, "BREAKGLASS_WAIT_SECONDS must be at most 15, got 60"),
    ({"FLAG": "maybe"}, "BREAKGLASS_FLAG must be 0 or 1, got 'maybe'"),
    ({"NAMES": " , "}, "BREAKGLASS_NAMES must list at least one value"),
    ({"POLICY": "three"}, "BREAKGLASS_POLICY must be one of one, two, got 'three'"),
    ({"OTHER_NAME": "-1"}, "BREAKGLASS_OTHER_NAME must be at least 0, got -1"),
])
def test_a_bad_value_is_one_line_naming_its_variable(env, says):
    with pytest.raises(ConfigError) as caught:
        example(**env)
    assert str(caught.value) == says
