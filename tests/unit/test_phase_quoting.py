"""No value from lab.yaml escapes its quoting on the way to a shell.

Two lines of defence, each proven on its own:

1. The spec refuses shell metacharacters in every string field (alias commands
   aside: they are shell by design, and rendered quoted).
2. Even with the spec bypassed, the phases quote every value they put in a
   command. The commands `inv phase X --dry-run` shows (every step, guard and
   check of every phase, placeholders filled in as the engine does) are run by
   bash with an empty PATH: every command becomes a call to a recorder, so the
   test sees each argument exactly as a node's shell would pass it. A payload
   that escaped would run ``hrlpwned`` or write a file; neither may happen, and
   the payload must arrive whole inside an argument.

Node names and addresses are the exception to 2: the engine substitutes them into
commands after the phases quoted (``{node}``, ``{node_ip}``), so only the spec's
grammar keeps them safe; 1 proves it does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from lab.engine import Engine, _render_command
from lab.phases import PHASES, phase_module
from lab.phases.context import PhaseContext
from lab.providers.base import Capabilities
from lab.remote import CommandResult
from lab.render import render
from lab.spec import LabSpec, SpecError, parse_spec
from tests.helpers import REPO

CANARY = "hrlpwned"
# Each breaks out of one quoting context (none, '...', "...", a line) to run the canary.
PAYLOADS = [
    f"x;{CANARY};y",
    f"x$({CANARY})y",
    f"x`{CANARY}`y",
    f"x';{CANARY};'y",
    f'x";{CANARY};"y',
    f"x\n{CANARY}\ny",
    f"x|{CANARY}&&{CANARY}>{CANARY}.out y",
]
# Fields whose values the engine, not the phases, puts into commands.
ENGINE_PLACEHOLDERS = ("nodes", "minio.instances[].node", "loadbalancer.node")

Path_ = tuple[str | int, ...]


def _string_fields(model: BaseModel, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every string field of a spec (optional ones included), as a path of keys."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        path = (*prefix, name)
        if isinstance(value, BaseModel):
            yield from _string_fields(value, path)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from _string_fields(item, (*path, index))
        elif isinstance(value, dict):
            for key in value:
                yield (*path, key)
        elif isinstance(value, str) or "str" in str(field.annotation):
            yield path


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def _kind(path: Path_) -> str:
    """``minio.instances[].name`` for ``minio.instances.2.name``: one name per field."""
    return ".".join("[]" if isinstance(p, int) else str(p) for p in path).replace(".[]", "[]")


def _set_data(data: Any, path: Path_, value: Any) -> Any:
    target = data
    for part in path[:-1]:
        target = target.setdefault(part, {}) if isinstance(target, dict) else target[part]
    target[path[-1]] = value
    return data


def _bypass(model: Any, path: Path_, value: Any) -> Any:
    """``model`` with ``value`` at ``path``, the spec's validation bypassed."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(model, list):
        items = list(model)
        items[head] = _bypass(items[head], rest, value)  # type: ignore[index]
        return items
    if isinstance(model, dict):
        return {**model, head: _bypass(model.get(head), rest, value)}
    return model.model_copy(update={head: _bypass(getattr(model, str(head)), rest, value)})


@pytest.fixture(scope="module")
def default_spec() -> LabSpec:
    return parse_spec(yaml.safe_load((REPO / "lab.yaml").read_text()))


# ------------------------------------------------ 1: the spec refuses them


def _field_cases() -> list[tuple[str, str]]:
    spec = parse_spec(yaml.safe_load((REPO / "lab.yaml").read_text()))
    fields = sorted({_dotted(p) for p in _string_fields(spec)})
    return [(f, p) for f in fields if not f.startswith("aliases.") for p in PAYLOADS]


@pytest.mark.parametrize(("field", "payload"), _field_cases())
def test_the_spec_refuses_a_shell_payload_in_every_string_field(
    lab_data: dict[str, Any], field: str, payload: str
) -> None:
    path: Path_ = tuple(int(p) if p.isdigit() else p for p in field.split("."))
    with pytest.raises(SpecError):
        parse_spec(_set_data(lab_data, path, payload))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_spec_refuses_a_shell_payload_as_an_alias_name(
    lab_data: dict[str, Any], payload: str
) -> None:
    lab_data["aliases"] = {payload: "docker ps"}
    with pytest.raises(SpecError):
        parse_spec(lab_data)


# ------------------------------------- 2: the phases quote, spec or no spec


class _Shell:
    """Enough of the engine's shell to fill placeholders in: the login user."""

    def run(self, node: str, command: str, *, timeout: float, echo: bool) -> CommandResult:
        raise AssertionError("nothing runs here")

    def upload(self, node: str, local: Path, remote: str, mode: int) -> None:
        raise AssertionError("nothing is uploaded here")

    def user(self, node: str) -> str:
        return "core"


class _NoSnapshots:
    name = "none"
    capabilities = Capabilities()


CAPABILITIES = [Capabilities(), Capabilities(fleet=True), Capabilities(ipvs=False, systemd=False)]


def node_commands(spec: LabSpec, build: Path, secrets: Any) -> set[str]:
    """What every phase would run on the nodes (steps, guards, checks), placeholders
    filled in by the engine's own code, for every load balancer and capability set."""
    commands: set[str] = set()
    for lb_kind in ("traefik", "haproxy", "nginx"):
        for caps in CAPABILITIES:
            ctx = PhaseContext(spec, build, caps, secrets, lb_kind, demo=True)
            ctx.vars["join_token"] = "SWMTKN-1-token"
            engine = Engine(ctx, _NoSnapshots(), _Shell())  # type: ignore[arg-type]
            for phase in PHASES:
                module = phase_module(phase)
                steps = module.plan(ctx)
                runs = [(s.nodes, s.command) for s in steps]
                runs += [(s.nodes, s.guard) for s in steps if s.guard]
                runs += [((c.node,), c.command) for c in module.checks(ctx) if c.node]
                for nodes, command in runs:
                    for node in nodes:
                        commands.add(_render_command(command, engine._node_values(node)))
    return {c for c in commands if c}


RECORDER = r"""
PATH=/nonexistent-hrl
command_not_found_handle() { printf '%s\0' "$@" >> "$HRL_LOG"; printf '\1\0' >> "$HRL_LOG"; }
"""


def run_recorded(commands: list[str], workdir: Path) -> list[list[str]]:
    """Run each command in a subshell of bash where every program is the recorder;
    return the argv of every program call."""
    log = workdir / "calls.log"
    script = RECORDER + "".join(f"( eval {_single_quoted(c)} )\n" for c in commands)
    subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        cwd=workdir,
        env={"HRL_LOG": str(log)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    raw = log.read_bytes().decode() if log.exists() else ""
    calls = [record.split("\0")[:-1] for record in raw.split("\1\0") if record]
    return [[arg for arg in call if arg] or [""] for call in calls]


def _single_quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture(scope="module")
def build(default_spec: LabSpec, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    result = render(default_spec, tmp_path_factory.mktemp("quoting") / "build")
    return result.build, result.secrets


def _phase_fields(spec: LabSpec) -> list[Path_]:
    return [
        p
        for p in _string_fields(spec)
        if not _kind(p).startswith(ENGINE_PLACEHOLDERS) and p[0] != "aliases"
    ]


def test_the_recorder_sees_what_a_shell_passes(tmp_path: Path) -> None:
    calls = run_recorded(["docker run 'a b' c\"d\"", f"echo hi; {CANARY} now"], tmp_path)
    assert calls == [["docker", "run", "a b", "cd"], [CANARY, "now"]]


def test_no_payload_escapes_the_phases_quoting_in_any_field(
    default_spec: LabSpec, build: tuple[Path, Any], tmp_path: Path
) -> None:
    build_dir, secrets = build
    baseline = node_commands(default_spec, build_dir, secrets)
    reached: set[str] = set()
    for field in _phase_fields(default_spec):
        marked = _bypass(default_spec, field, "v:hrlmarker")
        if not any("hrlmarker" in c for c in node_commands(marked, build_dir, secrets)):
            continue  # this field never reaches a node's shell (e.g. the S3 region)
        reached.add(_kind(field))
        for payload in PAYLOADS:
            value = f"v:{payload}"  # images need a tag to split on
            spec = _bypass(default_spec, field, value)
            changed = sorted(node_commands(spec, build_dir, secrets) - baseline)
            workdir = tmp_path / f"{_dotted(field)}-{PAYLOADS.index(payload)}"
            workdir.mkdir()
            calls = run_recorded(changed, workdir)
            where = f"{_dotted(field)} = {value!r}"
            assert not [c for c in calls if CANARY in c[0]], f"{where} ran a command"
            assert [p.name for p in workdir.iterdir()] == ["calls.log"], f"{where} wrote a file"
            assert any(value in arg for call in calls for arg in call[1:]), (
                f"{where} did not arrive whole in any argument"
            )
    # The fields the phases put on command lines: all of them were tried.
    assert {
        "minio.stack",
        "minio.instances[].name",
        "minio.instances[].data",
        "redis.image",
        "registry.image",
        "registry.config_dir",
        "loadbalancer.traefik_image",
        "loadbalancer.haproxy_image",
        "loadbalancer.nginx_image",
        "demo.busybox_image",
        "demo.hello_image",
    } <= reached


def test_alias_commands_are_shell_and_stay_one_alias_each(
    lab_data: dict[str, Any], tmp_path: Path
) -> None:
    lab_data["aliases"] = {
        f"a{i}": payload for i, payload in enumerate(PAYLOADS) if "\n" not in payload
    }
    spec = parse_spec(lab_data)
    aliases_file = render(spec, tmp_path / "build").build / "files/docker-aliases.sh"
    script = (
        RECORDER
        + f"source {_single_quoted(str(aliases_file))}\n"
        + 'for name in "${!BASH_ALIASES[@]}"; do '
        + 'printf \'%s\\0\' "$name=${BASH_ALIASES[$name]}" >> "$HRL_LOG.aliases"; done\n'
    )
    log = tmp_path / "calls.log"
    subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        cwd=tmp_path,
        env={"HRL_LOG": str(log)},
        check=True,
        timeout=30,
    )
    assert not log.exists(), "sourcing the aliases ran a command"
    defined = set((tmp_path / "calls.log.aliases").read_text().split("\0")[:-1])
    assert defined == {f"{name}={command}" for name, command in spec.aliases.items()}


def test_a_check_that_finds_its_image_first_lets_the_shell_expand_it() -> None:
    """registry's check picks $repo and $tag from the catalogue, then pulls them: those
    words are double-quoted (they must expand), everything else stays single-quoted."""
    from lab.phases.common import same_digest

    command = same_digest("10.0.0.1:5000", "$repo", "$tag", "10.0.0.2:5000/$repo:$tag")
    assert 'docker pull -q "10.0.0.2:5000/$repo:$tag"' in command
    plain = same_digest("10.0.0.1:5000", "lab/hello", "linux", "10.0.0.2:5000/lab/hello:linux")
    assert "docker pull -q 10.0.0.2:5000/lab/hello:linux" in plain
    with pytest.raises(ValueError, match="not safe inside double quotes"):
        same_digest("10.0.0.1:5000", "$repo", "$tag", "x/$(reboot):$tag")
