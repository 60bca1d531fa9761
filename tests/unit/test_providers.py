"""Every registered provider satisfies the Protocol the kit calls, with one constructor."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from lab.errors import UnknownName
from lab.providers import PROVIDERS, make_provider, provider_class
from lab.providers.base import Provider
from lab.spec import load_spec
from tests.helpers import REPO, run_inv


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_provider_satisfies_the_protocol(name: str, tmp_path: Path) -> None:
    said: list[str] = []
    provider = make_provider(name, load_spec(REPO / "lab.yaml"), tmp_path, say=said.append)
    assert isinstance(provider, Provider)
    assert provider.name == name


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_provider_constructor_is_spec_build_say(name: str) -> None:
    parameters = inspect.signature(provider_class(name)).parameters
    assert list(parameters)[:2] == ["spec", "build"]
    assert parameters["say"].kind is inspect.Parameter.KEYWORD_ONLY


def test_an_object_missing_a_method_is_not_a_provider() -> None:
    class HalfProvider:
        name = "half"
        capabilities = None

        def up(self) -> None: ...

    assert not isinstance(HalfProvider(), Provider)


def test_unknown_provider_is_a_usage_error_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(UnknownName, match="choose one of: vagrant, libvirt, local"):
        provider_class("bogus")
    result = run_inv("lab.up", "--provider", "bogus", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "unknown provider 'bogus'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
