"""Shell fragments several phases share: quoting, installing configs, running containers."""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path

from lab.phases.context import PhaseContext
from lab.plan import Step, Upload

CONFIG_LABEL = "org.ha-registry-lab.config"
EXPANDABLE = re.compile(r"[A-Za-z0-9.:/_@$ -]*")  # no quotes, backticks or $( )


def sh(*words: object) -> str:
    """Shell words, each quoted: a value from lab.yaml stays one argument, whatever it holds.

    The spec's grammars already keep metacharacters out of names, paths and images;
    quoting here is the second line of defence, and the one place phases quote. Words
    that are plain (``coreos1``, ``minio4=true``) come out unchanged. The placeholders
    the engine fills in later (``{node}``, ``{node_ip}``, ``{sudo}``, captured values)
    are left outside: quoting cannot protect what is substituted afterwards, and node
    names and addresses are DNS labels and IPv4 addresses by the spec.
    """
    return " ".join(shlex.quote(str(word)) for word in words)


def config_hash(*files: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def install(staged: str, dest: str, mode: str = "0644") -> str:
    return f"{{sudo}}install -D -m {mode} {staged} {sh(dest)}"


def container_step(
    ctx: PhaseContext,
    title: str,
    nodes: tuple[str, ...],
    name: str,
    configs: list[tuple[str, str, str]],
    run_args: str,
) -> Step:
    """(Re)create container ``name`` on ``nodes`` unless it already runs this config.

    ``configs`` are (build-relative source, destination on the node, mode); a
    source may name ``{node}`` for a file per node. The container carries a hash
    of them all, so a changed config replaces it and an unchanged one is left
    alone (the phase is idempotent).
    """
    sources = [ctx.file(src.replace("{node}", node)) for src, _, _ in configs for node in nodes]
    tag = config_hash(*sources) if sources else "none"
    uploads = tuple(
        Upload(ctx.file(src), ctx.staged("{node}", Path(dst).name)) for src, dst, _ in configs
    )
    installs = [
        install(ctx.staged("{node}", Path(dst).name), dst, mode) for _, dst, mode in configs
    ]
    command = " && ".join(
        [
            *installs,
            f"(docker rm -f {name} >/dev/null 2>&1 || true)",
            f"docker run -d --name {name} --restart unless-stopped "
            f"--label {CONFIG_LABEL}={tag} {run_args}",
        ]
    )
    guard = (
        f'test "$(docker inspect -f \'{{{{index .Config.Labels "{CONFIG_LABEL}"}}}} '
        f"{{{{.State.Running}}}}' {name} 2>/dev/null)\" = '{tag} true'"
    )
    return Step(title, nodes, command, guard=guard, uploads=uploads)


def expanding(word: str) -> str:
    """A word that names shell variables the command itself set ($repo, $tag): double
    quotes let them expand, and the rest may only be address and path characters."""
    if not EXPANDABLE.fullmatch(word):
        raise ValueError(f"{word!r} is not safe inside double quotes")
    return f'"{word}"'


def same_digest(registry: str, repo: str, tag: str, pull_ref: str) -> str:
    """Shell: pull ``pull_ref``; say 'same digest' if it matches ``registry``'s manifest.

    ``repo`` and ``tag`` may be shell variables a probe set before (``$repo``)."""
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = f"http://{registry}/v2/{repo}/manifests/{tag}"
    word = expanding if "$" in repo + tag else sh
    return (
        f"want=$(curl -s -I -m 10 -H 'Accept: {accept}' "
        f"{word(manifest)} | tr -d '\\r' "
        "| awk -F': ' 'tolower($1)==\"docker-content-digest\"{print $2}'); "
        f"docker pull -q {word(pull_ref)} >/dev/null 2>&1 "
        f"|| {{ echo {word(f'pull of {pull_ref} failed')}; exit 0; }}; "
        "got=$(docker image inspect -f '{{range .RepoDigests}}{{.}} {{end}}' "
        f"{word(pull_ref)}); "
        'case " $got" in *"@$want "*) echo "same digest";; '
        '*) echo "pulled ${got:-nothing}, registry has ${want:-nothing}";; esac'
    )


def http_code(url: str) -> str:
    return f"curl -s -o /dev/null -m 5 -w '%{{http_code}}' {sh(url)}"


def wait_for_storage(ctx: PhaseContext) -> Step:
    """Every node's MinIO answers: after a checkpoint the swarm needs a moment."""
    urls = [f"{ctx.spec.minio_endpoint(n)}/minio/health/cluster" for n in ctx.spec.nodes]
    return Step(
        "wait until MinIO answers for every node",
        (ctx.leader,),
        f'for u in {sh(*urls)}; do curl -sf -m 3 -o /dev/null "$u" || exit 1; done',
        retry_for=180,
    )


def wait_for_registries(ctx: PhaseContext) -> Step:
    return Step(
        "wait until every registry answers /v2/",
        tuple(ctx.node_names),
        f"curl -sf -m 5 -o /dev/null http://{{node_ip}}:{ctx.registry_port}/v2/",
        retry_for=120,
    )
