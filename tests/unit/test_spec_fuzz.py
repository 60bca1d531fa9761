"""Property-based fuzzing of lab.yaml through what `inv lab.render` runs.

Hypothesis makes 500 variations of the default lab.yaml: fields set to wrong
types, huge or deeply nested values, control characters, lone surrogates, shell
metacharacters, paths that leave the build directory or enter /proc, subnets
render.py cannot use, extra or missing keys, long lists; and hostile files
(alias bombs, deep nesting, 5 MB, undecodable bytes, duplicate keys, cut short).
Each goes through load_spec and, when accepted, render, as the task does.

Properties: the answer is a spec or SpecError/RenderError, never another
exception; a refusal is a few short printable lines and writes nothing; an
accepted spec renders files their parsers accept, alias commands stay one
shell-quoted alias each, no other value holds a shell metacharacter, units keep
their shape.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.render import RenderError, nfs_export_path, render
from lab.spec import MAX_PROBLEM_LINES, LabSpec, SpecError, load_spec
from tests.helpers import REPO

EXAMPLES = 500
DEFAULT = yaml.safe_load((REPO / "lab.yaml").read_text())
TMP = "@TMP@"  # replaced by the example's own directory: absolute paths stay in it

SHELL_PAYLOADS = [
    "$(touch /tmp/hrl-pwned)",
    "`id`",
    "; rm -rf /",
    "a && b",
    "x | y",
    "a\nb",
    "a\r\nExecStart=/bin/sh",
    "'quoted'",
    '"dq"',
    "${HOME}",
    "a > /etc/x",
    "{node}",
    "*",
]
PATHS = ["../../x", "nfs/../../..", "", ".", "/", "/proc/x", "/sys", "/dev/null", "/etc/passwd"]
PATHS += ["/etc", "secrets", "registry", "coreos1.ign", "nfs/", "./nfs", f"{TMP}/shared"]
SUBNETS = ["172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/8", "0.0.0.0/0", "8.8.8.0/24"]
SUBNETS += ["172.17.8.0/25", "172.17.8.0/16", "172.17.8.1/24", "fe80::/64"]

# Values that are fine where they go: some examples must be accepted and rendered.
VALID = {
    "name": ["lab-b", "x", "a" * 32],
    "user": ["vagrant", "lab_user"],
    "memory": [512, 4096],
    "cpus": [2, 64],
    "region": ["eu-west-1", "us-gov-west-1", "cn-north-1"],
    "interval": ["daily", "*:0/15", "Mon..Fri 03:00", "*-*-* 04:00:00"],
    "maxmemory": ["1gb", "64mb", "100000000"],
    "stack": ["store", "s_1"],
    "network": ["net2", "a.b"],
    "export": ["shared", "shared/data", f"{TMP}/export"],
    "kind": ["haproxy", "nginx"],
    "policy": ["public-readwrite"],
    "enabled": [False],
    "replicas": [1, 50],
    "rootdirectory": ["/r", "/a/b.c"],
    "config_dir": ["/opt/registry", "/etc/docker/lab"],
    "image": ["busybox:1.37", "localhost:5000/lab/x:v1"],
    "busybox_image": ["busybox:1.37"],
    "hello_image": ["hello-world:v2"],
    "bucket": ["images", "a.b-c"],
    "port": [8080, 9999],
    "mirror_port": [5001],
}

# ------------------------------------------------------------- strategies

_any_text = st.text(st.characters(exclude_categories=()), max_size=30)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    _any_text,
)
NASTY_VALUES = st.one_of(
    _scalars,
    st.sampled_from(SHELL_PAYLOADS),
    st.sampled_from(PATHS),
    st.sampled_from(SUBNETS),
    st.sampled_from([64, 1_000, 100_000]).map(lambda n: "a" * n),
    st.integers(min_value=1, max_value=60).map(lambda depth: _nested(depth)),
    st.lists(_scalars, max_size=4),
    st.dictionaries(_any_text, _scalars, max_size=3),
)


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the default lab: containers and leaves."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


DEFAULT_PATHS = _paths(DEFAULT)
NEW_KEYS = [
    ("box", "url"),
    ("box", "name"),
    ("network", "host_ip"),
    ("loadbalancer", "traefik_image"),
    ("aliases",),
    ("demo",),
    ("registry", "config_dir"),
    ("minio", "stack"),
    ("minio", "network"),
    ("nodez",),
    ("registry", "prot"),
]


@st.composite
def _value_for(draw: st.DrawFn, path: tuple[Any, ...]) -> Any:
    key = path[-1] if path and isinstance(path[-1], str) else ""
    choices = VALID.get("bucket" if path[:1] == ("bucket",) else key, [])
    if path[:1] == ("aliases",):  # alias commands are shell: metacharacters welcome
        return draw(st.one_of(st.sampled_from(SHELL_PAYLOADS), st.sampled_from(["ls", "echo hi"])))
    if choices and draw(st.booleans()):
        return draw(st.sampled_from(choices))
    original = _get(DEFAULT, path)
    if isinstance(original, str) and draw(st.booleans()):  # a good value made bad
        return original + draw(st.sampled_from(SHELL_PAYLOADS + ["\n", "\t", "\ud800", " "]))
    return draw(NASTY_VALUES)


MUTATION = st.one_of(
    st.sampled_from(DEFAULT_PATHS).flatmap(
        lambda p: _value_for(p).map(lambda v, p=p: ("set", p, v))
    ),
    st.sampled_from(DEFAULT_PATHS).map(lambda p: ("delete", p, None)),
    st.sampled_from(NEW_KEYS).flatmap(lambda p: _value_for(p).map(lambda v, p=p: ("set", p, v))),
    st.tuples(
        st.sampled_from([("nodes",), ("minio", "instances")]),
        st.sampled_from([1, 6, 14, 300]),
    ).map(lambda t: ("grow", t[0], t[1])),
    st.tuples(
        st.sampled_from(SHELL_PAYLOADS + ["ok", "d ps", "\ud800"]), st.sampled_from(SHELL_PAYLOADS)
    ).map(lambda t: ("set", ("aliases", t[0]), t[1])),
)

# Changes that keep the lab valid (mostly): they make the accepted half of the examples.
_TUNABLE = [p for p in DEFAULT_PATHS if isinstance(p[-1], str) and p[-1] in VALID]
GOOD_MUTATION = st.one_of(
    st.sampled_from(_TUNABLE).flatmap(
        lambda p: st.sampled_from(VALID[p[-1]]).map(lambda v, p=p: ("set", p, v))
    ),
    st.sampled_from(VALID["bucket"]).map(lambda v: ("set", ("bucket", "name"), v)),
    st.tuples(st.sampled_from(["ok", "d_ps", "x-1"]), st.sampled_from(SHELL_PAYLOADS)).map(
        lambda t: ("set", ("aliases", t[0]), t[1])
    ),
)

LAUGHS = 'lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{i}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)
RAW = st.one_of(
    st.just(("append", LAUGHS)),
    st.just(("append", "a: &x [*x]\n")),
    st.sampled_from([50, 1_000, 100_000]).map(lambda n: ("append", "deep: " + "[" * n + "]" * n)),
    st.just(("append", "# " + "x" * 5_000_000 + "\n")),
    st.just(("append", "nodes: []\n")),
    st.just(("append", "name: !!python/object/apply:os.system [id]\n")),
    st.just(("append", "when: 2024-13-45\n")),
    st.sampled_from([b"\xff", b"\x00", b"\xed\xa0\x80", b"\t", b"\xef\xbb\xbf"]).flatmap(
        lambda raw: st.integers(0, 2000).map(lambda at, raw=raw: ("insert", raw, at))
    ),
    st.integers(0, 2000).map(lambda at: ("truncate", at)),
    st.just(("crlf",)),
)


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _apply(data: dict[str, Any], mutation: tuple[Any, ...]) -> None:
    kind, path, value = mutation
    parent = _get(data, path[:-1]) if len(path) > 1 else data
    if kind == "grow":
        items = _get(data, path)
        if isinstance(items, list) and items:
            items += [copy.deepcopy(items[-1]) for _ in range(value)]
        return
    if isinstance(parent, dict):
        if kind == "delete":
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
    elif isinstance(parent, list) and isinstance(path[-1], int) and path[-1] < len(parent):
        if kind == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = value


def _lab_file(mutations: list[tuple[Any, ...]], raw: tuple[Any, ...] | None, tmp: Path) -> bytes:
    data = copy.deepcopy(DEFAULT)
    for mutation in mutations:
        _apply(data, mutation)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False).replace(TMP, str(tmp))
    content = text.encode("utf-8")  # allow_unicode=False: surrogates are \u escapes here
    if raw is None:
        return content
    if raw[0] == "append":
        return content + b"\n" + raw[1].encode()
    if raw[0] == "insert":
        at = min(raw[2], len(content))
        return content[:at] + raw[1] + content[at:]
    if raw[0] == "truncate":
        return content[: raw[1]]
    return content.replace(b"\n", b"\r\n")


# ------------------------------------------------------------- properties

FAST_YAML = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed
SHELL_META = set(";&|$`'\"\\<>(){}\n\r\t")
UNIT_LINE = re.compile(r"(|#.*|\[[A-Za-z-]+\]|[A-Za-z]+=.*)")


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}".lstrip("."))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{path}[{i}]")]
    return [(path, value)] if isinstance(value, str) else []


def check_refusal(problems: list[str], build: Path) -> None:
    assert problems, "a refusal says why"
    assert len(problems) <= MAX_PROBLEM_LINES + 1, len(problems)
    for line in problems:
        assert len(line) < 300, line[:300]
        assert line.isprintable(), ascii(line[:300])
    assert not build.exists(), "a refused lab must write nothing"


def check_rendered(spec: LabSpec, build: Path) -> None:
    for path in build.rglob("*"):
        if path.is_dir() or "secrets" in path.parts:
            continue
        text = path.read_text()
        if path.suffix in (".yml", ".yaml"):
            yaml.load(text, Loader=FAST_YAML)  # the files, not the kit, are under test here
        elif path.suffix in (".json", ".ign"):
            json.loads(text)
        elif path.parent.name in ("systemd", "libvirt") or path.suffix in (".service",):
            bad = [line for line in text.splitlines() if not UNIT_LINE.fullmatch(line)]
            assert not bad, f"{path.name}: {bad[:2]}"
    # Alias commands are shell by design: each stays one alias, exactly as written.
    lines = (build / "files/docker-aliases.sh").read_text().splitlines()[1:]
    defined = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert [shlex.split(line)[0] for line in lines] == ["alias"] * len(lines)
    assert defined == spec.aliases
    # The box URL is a Ruby literal in the Vagrantfile; everything else has no metacharacter.
    if spec.box.url:
        assert f"config.vm.box_url = '{spec.box.url}'" in (build / "Vagrantfile").read_text()
    for where, value in _strings(spec.model_dump()):
        if where.startswith("aliases.") or where == "box.url":
            continue
        assert not SHELL_META & set(value), f"{where} = {value!r} was accepted"
    if not Path(spec.nfs.export).is_absolute():  # the share stays inside the build directory
        assert build.resolve() in nfs_export_path(spec, build).resolve().parents


def test_fuzzed_lab_files_are_refused_cleanly_or_render_valid_files(tmp_path: Path) -> None:
    outcomes: Counter[str] = Counter()
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        mutations=st.one_of(
            st.lists(GOOD_MUTATION, max_size=3), st.lists(MUTATION, min_size=1, max_size=3)
        ),
        raw=st.one_of(st.none(), st.none(), st.none(), RAW),
    )
    def one_lab(mutations: list[tuple[Any, ...]], raw: tuple[Any, ...] | None) -> None:
        example = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            lab_file, build = example / "lab.yaml", example / "build"
            lab_file.write_bytes(_lab_file(mutations, raw, example))
            try:
                spec = load_spec(lab_file)
            except SpecError as refused:
                outcomes["refused"] += 1
                check_refusal(refused.problems, build)
                return
            try:
                render(spec, build)
            except RenderError as failed:
                outcomes["render refused"] += 1
                check_refusal([str(failed)], build)
                return
            outcomes["rendered"] += 1
            check_rendered(spec, build)
        finally:
            shutil.rmtree(example)

    one_lab()
    seconds = time.monotonic() - started
    print(f"\nfuzz: {dict(outcomes)} in {seconds:.1f} s")
    assert sum(outcomes.values()) >= EXAMPLES
    assert outcomes["rendered"] >= EXAMPLES // 8, "too few accepted labs to test rendering"
