"""Shell fragments several phases share: quoting, installing configs, running containers."""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path

from lab.phases.context import PhaseContext
from lab.plan import Step, Upload
from lab.render import certs_d_path, registry_addresses
from lab.secrets import PUSH_USER, READ_USER

CONFIG_LABEL = "org.ha-registry-lab.config"
# On every node, in the login user's home: curl's config with the push account (0600),
# so a password is never on a command line or in the kit's output.
CURLRC = ".ha-registry-lab/curlrc"
# A docker client config of the read-only account (docker --config DIR), in the
# login user's home beside the trainee's other lab files.
READER_CONFIG = "lab/docker-read-only"
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


def same_digest(
    registry: str,
    repo: str,
    tag: str,
    pull_ref: str,
    ctx: PhaseContext | None = None,
    docker: str = "docker",
) -> str:
    """Shell: pull ``pull_ref``; say 'same digest' if it matches ``registry``'s manifest.

    ``repo`` and ``tag`` may be shell variables a probe set before (``$repo``). Without
    ``ctx``: plain HTTP and no login (the tutorial's registry)."""
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    path = f"/v2/{repo}/manifests/{tag}"
    manifest = registry_url(ctx, registry, path) if ctx else f"http://{registry}{path}"
    curl = registry_curl(ctx) if ctx else "curl"
    word = expanding if "$" in repo + tag else sh
    return (
        f"want=$({curl} -s -I -m 10 -H 'Accept: {accept}' "
        f"{word(manifest)} | tr -d '\\r' "
        "| awk -F': ' 'tolower($1)==\"docker-content-digest\"{print $2}'); "
        f"{docker} pull -q {word(pull_ref)} >/dev/null 2>&1 "
        f"|| {{ echo {word(f'pull of {pull_ref} failed')}; exit 0; }}; "
        "got=$(docker image inspect -f '{{range .RepoDigests}}{{.}} {{end}}' "
        f"{word(pull_ref)}); "
        'case " $got" in *"@$want "*) echo "same digest";; '
        '*) echo "pulled ${got:-nothing}, registry has ${want:-nothing}";; esac'
    )


def http_code(url: str, curl: str = "curl") -> str:
    return f"{curl} -s -o /dev/null -m 5 -w '%{{http_code}}' {sh(url)}"


def registry_url(ctx: PhaseContext, address: str, path: str = "/v2/") -> str:
    """The URL of ``path`` on the registry (or load balancer) at ``address`` (host:port)."""
    return f"{'https' if ctx.spec.registry.tls else 'http'}://{address}{path}"


def registry_curl(ctx: PhaseContext) -> str:
    """curl as the push account, trusting only the lab CA (with registry.tls)."""
    if not ctx.spec.registry.tls:
        return "curl"
    return f"curl -K {CURLRC} --cacert {sh(certs_d_path(ctx.lb_address))}"


def trust_step(ctx: PhaseContext) -> Step:
    """Every node's docker trusts the lab CA for every registry address (certs.d), and
    curl gets the push account in a 0600 file. Idempotent; a trainee needs it too."""
    ca = ctx.file("secrets/ca.crt")
    staged = ctx.staged("{node}", "ca.crt")
    installs = [install(staged, certs_d_path(a)) for a in registry_addresses(ctx.spec)]
    return Step(
        "trust the lab CA on every node (/etc/docker/certs.d/) and stage curl's login",
        tuple(ctx.node_names),
        " && ".join([*installs, f"chmod 0600 {CURLRC}"]),
        uploads=(Upload(ca, staged), Upload(ctx.file("secrets/curlrc"), CURLRC, 0o600)),
        prepares=True,
    )


def push_login(ctx: PhaseContext, address: str) -> str:
    """Shell: docker login at ``address`` as the push account, the password read from
    curl's config on the node (never on the command line). For checks, which must also
    pass after a trainee did the phase by hand and logged in elsewhere or not at all."""
    if not ctx.spec.registry.tls:
        return ""
    password = f"sed -n 's/^user = \"{PUSH_USER}:\\(.*\\)\"$/\\1/p' {CURLRC}"
    return (
        f"{password} | docker login -u {PUSH_USER} --password-stdin {sh(address)} >/dev/null 2>&1; "
    )


def login_step(ctx: PhaseContext, address: str, nodes: tuple[str, ...], reader: bool) -> Step:
    """docker login at ``address`` on ``nodes``: the push account in the default config,
    or the read-only account in READER_CONFIG. The password arrives on stdin."""
    user, secret = (
        (READ_USER, "registry_read_password") if reader else (PUSH_USER, "registry_push_password")
    )
    config = f"--config {READER_CONFIG} " if reader else ""
    return Step(
        f"docker login {address} as {user} on {', '.join(nodes)}",
        nodes,
        f"docker {config}login -u {sh(user)} --password-stdin {sh(address)} >/dev/null",
        stdin_file=ctx.file(f"secrets/{secret}"),
        retry_for=60,
    )


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
    own = registry_url(ctx, f"{{node_ip}}:{ctx.registry_port}")
    return Step(
        "wait until every registry answers /v2/",
        tuple(ctx.node_names),
        f"{registry_curl(ctx)} -sf -m 5 -o /dev/null {own}",
        retry_for=120,
    )
