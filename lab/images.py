"""Offline images: built from Debian and PyPI packages into the lab's mirror.

Each image is a :class:`Recipe` whose inputs are hashed into a label, so an image
is rebuilt only when its recipe changes. Builds run in a kit-private dockerd
(:class:`Builder`) and are pushed into the mirror (:mod:`lab.host.mirror`), which
every node pulls from. :func:`substitutes` says which images a lab on this host's
mirror can really run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab.errors import ProviderError
from lab.host import LabHost, require_root
from lab.host.cgroups import kill_processes_of, remove_cgroup_tree
from lab.host.mirror import Mirror, mirror_path
from lab.host.mounts import RUN_ROOT, ensure_host_dir, remove_created_dirs_if_last
from lab.host.proc import (
    clean_env,
    docker_client,
    docker_ping,
    read_pid,
    require_tools,
    run,
    spawn,
    stop_pid,
    tool_path,
    wait_until,
)
from lab.paths import cache_dir
from lab.spec import LabSpec

LOCAL_BUILD_LABEL = "org.ha-registry-lab.local-build"
RECIPE_LABEL = "org.ha-registry-lab.recipe"


# ------------------------------------------------------------------ recipes

BASE_TAG = "ha-registry-lab/base:bookworm"
BASE_RECIPE = "debootstrap --variant=minbase bookworm + host apt sources, v1"
S3_STANDIN = "ha-registry-lab/s3-standin:quorum"
# An S3 server with MinIO's checks and quorum (lab/standin, standard library only)
STANDIN_SCRIPT = Path(__file__).resolve().parent / "standin" / "s3_standin.py"
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
APT_INSTALL = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "--no-install-recommends {packages} && rm -rf /var/lib/apt/lists/*"
)


@dataclass(frozen=True)
class Recipe:
    """One image: a Dockerfile (legacy builder) and the files of its build context."""

    key: str
    reference: str
    dockerfile: str
    files: dict[str, str] = field(default_factory=dict)
    wheels: tuple[str, ...] = ()  # pip requirements downloaded on the host into wheels/
    after: tuple[str, ...] = ()  # recipes whose images this one uses

    def digest(self, *, wheel_names: Iterable[str] = ()) -> str:
        """What the cache compares: change anything that shapes the image, rebuild it."""
        text = json.dumps(
            [
                BASE_RECIPE,
                self.reference,
                self.dockerfile,
                self.files,
                list(self.wheels),
                sorted(wheel_names),
            ],  # fmt: skip
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# What the offline images really hold: Debian bookworm's packages. Each is tagged by its
# own version, not by the version lab.yaml names (Docker Hub's image a VirtualBox lab
# pulls), so `docker images` on a node tells the truth. key -> tag (Debian's version:
# busybox-static 1.35, docker-registry 2.8.2, redis-server 7.0, haproxy 2.6, nginx 1.22).
OFFLINE_VERSIONS = {
    "busybox": "1.35",
    "registry": "2.8.2",
    "redis": "7.0",
    "haproxy": "2.6",
    "nginx": "1.22",
}


def offline_reference(key: str, reference: str) -> str:
    """The reference an offline image gets: lab.yaml's name with the tag of what it holds."""
    if key not in OFFLINE_VERSIONS:
        return reference
    name = reference.split("@", 1)[0].rpartition(":")[0] or reference
    return f"{name}:{OFFLINE_VERSIONS[key]}"


def _apt(*packages: str) -> str:
    return "RUN " + APT_INSTALL.format(packages=" ".join(packages))


def _labels(source: str) -> str:
    return f'LABEL {LOCAL_BUILD_LABEL}="true" org.ha-registry-lab.source="{source}"'


REGISTRY_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""

# Like the official image: `redis-server ARGS` or just ARGS, reachable from other hosts.
REDIS_ENTRYPOINT = """\
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ] || [ -z "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then
  case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
fi
exec "$@"
"""

HAPROXY_ENTRYPOINT = """\
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ]; then set -- haproxy "$@"; fi
if [ "$1" = haproxy ]; then shift; set -- haproxy -W -db "$@"; fi
exec "$@"
"""

NGINX_CONF = """\
user www-data;
worker_processes auto;
error_log /dev/stderr notice;
pid /run/nginx.pid;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
"""

NGINX_DEFAULT_SITE = """\
server {
    listen 80;
    server_name localhost;
    location / { root /usr/share/nginx/html; index index.html; }
}
"""

# keepalived in the foreground, logging to the container's output, VRRP only (no IPVS).
# A restarted container keeps its files, and a pid file left by the last run names a PID
# that is alive again (this one): keepalived would refuse to start. Start from none.
KEEPALIVED_ENTRYPOINT = """\
#!/bin/sh
set -e
rm -rf /run/keepalived && mkdir -p /run/keepalived
exec keepalived --dont-fork --log-console --log-detail --vrrp \\
  --pid /run/keepalived/keepalived.pid --vrrp_pid /run/keepalived/vrrp.pid "$@"
"""

HELLO_TEXT = """
Hello from Docker!
This message shows that your installation appears to be working correctly.
(ha-registry-lab local build: a stand-in for the official hello-world image)
"""


def recipes(spec: LabSpec) -> list[Recipe]:
    """The images the phases use, under the names lab.yaml gives them."""
    return _tutorial_recipes(spec) + ([_keepalived_recipe(spec)] if spec.loadbalancer.vip else [])


def _keepalived_recipe(spec: LabSpec) -> Recipe:
    """keepalived for a virtual IP in front of the load balancers; curl for its health check."""
    return Recipe(
        "keepalived",
        spec.loadbalancer.keepalived_image,
        f"FROM {BASE_TAG}\n{_apt('keepalived', 'curl')}\n"
        "COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
        "RUN chmod 755 /usr/local/bin/docker-entrypoint.sh\n"
        f"{_labels('debian keepalived 2.2')}\n"
        'ENTRYPOINT ["docker-entrypoint.sh"]\n'
        'CMD ["--use-file", "/etc/keepalived/keepalived.conf"]\n',
        files={"docker-entrypoint.sh": KEEPALIVED_ENTRYPOINT},
    )


def _tutorial_recipes(spec: LabSpec) -> list[Recipe]:
    busybox = offline_reference("busybox", spec.demo.busybox_image)
    return [
        replace(recipe, reference=offline_reference(recipe.key, recipe.reference))
        for recipe in _spec_named_recipes(spec, busybox)
    ]


def _spec_named_recipes(spec: LabSpec, busybox: str) -> list[Recipe]:
    return [
        Recipe(
            "busybox",
            busybox,
            f"FROM {BASE_TAG} AS debian\n{_apt('busybox-static')}\n"
            "FROM scratch\nCOPY --from=debian /bin/busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            'RUN ["/bin/mkdir", "-p", "/tmp", "/etc", "/root", "/var"]\n'
            f'{_labels("debian busybox-static")}\nCMD ["sh"]\n',
        ),
        Recipe(
            "hello-world",
            spec.demo.hello_image,
            f"FROM {busybox} AS busybox\nFROM scratch\n"
            "COPY --from=busybox /bin/busybox /busybox\nCOPY hello.txt /hello.txt\n"
            f"{_labels('debian busybox-static')}\n"
            'CMD ["/busybox", "cat", "/hello.txt"]\n',
            files={"hello.txt": HELLO_TEXT},
            after=("busybox",),
        ),
        Recipe(
            "registry",
            spec.registry.image,
            f"FROM {BASE_TAG}\n{_apt('docker-registry', 'ca-certificates')}\n"
            "RUN ln -s /usr/bin/docker-registry /bin/registry && mkdir -p /var/lib/registry\n"
            "COPY config.yml /etc/docker/registry/config.yml\n"
            f"{_labels('debian docker-registry 2.8')}\n"
            "VOLUME /var/lib/registry\nEXPOSE 5000\n"
            'ENTRYPOINT ["/usr/bin/docker-registry", "serve"]\n'
            'CMD ["/etc/docker/registry/config.yml"]\n',
            files={"config.yml": REGISTRY_CONFIG},
        ),
        Recipe(
            "redis",
            spec.redis.image,
            f"FROM {BASE_TAG}\n{_apt('redis-server')}\n"
            "COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
            "RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && mkdir -p /data\n"
            f"{_labels('debian redis-server')}\n"
            "WORKDIR /data\nVOLUME /data\nEXPOSE 6379\n"
            'ENTRYPOINT ["docker-entrypoint.sh"]\nCMD ["redis-server"]\n',
            files={"docker-entrypoint.sh": REDIS_ENTRYPOINT},
        ),
        Recipe(
            "haproxy",
            spec.loadbalancer.haproxy_image,
            f"FROM {BASE_TAG}\n{_apt('haproxy')}\n"
            "COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
            "RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && mkdir -p /usr/local/etc/haproxy"
            " && cp /etc/haproxy/haproxy.cfg /usr/local/etc/haproxy/haproxy.cfg\n"
            f"{_labels('debian haproxy')}\nSTOPSIGNAL SIGUSR1\n"
            'ENTRYPOINT ["docker-entrypoint.sh"]\n'
            'CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]\n',
            files={"docker-entrypoint.sh": HAPROXY_ENTRYPOINT},
        ),
        Recipe(
            "nginx",
            spec.loadbalancer.nginx_image,
            f"FROM {BASE_TAG}\n{_apt('nginx')}\n"
            "RUN rm -f /etc/nginx/sites-enabled/*\n"
            "COPY nginx.conf /etc/nginx/nginx.conf\n"
            "COPY default.conf /etc/nginx/conf.d/default.conf\n"
            "COPY index.html /usr/share/nginx/html/index.html\n"
            f"{_labels('debian nginx')}\nEXPOSE 80\nSTOPSIGNAL SIGQUIT\n"
            'CMD ["nginx", "-g", "daemon off;"]\n',
            files={
                "nginx.conf": NGINX_CONF,
                "default.conf": NGINX_DEFAULT_SITE,
                "index.html": "<h1>Welcome to nginx!</h1>\n<p>ha-registry-lab local build</p>\n",
            },
        ),
        Recipe(
            "s3-standin",
            S3_STANDIN,
            f"FROM {BASE_TAG}\n{_apt('python3', 'curl')}\n"
            "COPY s3_standin.py /usr/local/bin/s3_standin.py\n"
            "RUN chmod 755 /usr/local/bin/s3_standin.py\n"
            f"{_labels('S3 stand-in for MinIO: four drives, MinIO quorum')}\n"
            # Its drives are host directories (the shared directory): a node that dies
            # leaves the host's page cache, so fsyncs would only cost the 2 cores time.
            "ENV STANDIN_FSYNC=0\nEXPOSE 9000\n"
            # The stack's command (server http://minio{1...4}/export) arrives as
            # arguments, as MinIO's image takes it: every instance serves its drive.
            'ENTRYPOINT ["python3", "/usr/local/bin/s3_standin.py"]\n'
            'CMD ["server", "/export"]\n',
            files={"s3_standin.py": STANDIN_SCRIPT.read_text()},
        ),
    ]


def debian_mirror_url(sources: Path = APT_SOURCES) -> str:
    """The Debian mirror this machine's apt uses (never a hard-coded host)."""
    try:
        text = sources.read_text()
    except FileNotFoundError:
        raise ProviderError(
            f"{sources} is missing: cannot tell which Debian mirror to use"
        ) from None
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[0] != "#"
        )
        suites = fields.get("Suites", "").split()
        if "bookworm" in suites and fields.get("URIs"):
            return fields["URIs"].split()[0]
    raise ProviderError(f"no bookworm entry with URIs: in {sources}")


# ------------------------------------------------------------------ builder


class Builder:
    """A lab-private dockerd for builds: host network, own mount namespace, all under
    the cache dir and RUN_ROOT/_builder; started and stopped by the kit, killed by PID."""

    def __init__(
        self,
        say: Callable[[str], None] = print,
        *,
        name: str = "_builder",
        data_root: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        self.say = say
        self.run_dir = RUN_ROOT / name
        self.data_root = data_root or cache_dir() / "builder"
        self.socket = self.run_dir / "docker.sock"
        self.pidfile = self.run_dir / "docker.pid"
        self.exec_root = self.run_dir / "x"
        self.cgroup_parent = f"/ha-registry-lab/{name}"
        self.log = cache_dir() / "logs" / f"{name.strip('_')}.log"
        self.extra_args = extra_args

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, mirror: str) -> None:
        self.stop()  # a builder left by a killed run
        for directory in (self.run_dir, self.data_root, self.run_dir / "containerd"):
            directory.mkdir(parents=True, exist_ok=True)
        ensure_host_dir(Path("/run/containerd"))
        dockerd = [
            tool_path("dockerd"),
            "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
            "--host", self.host, "--pidfile", str(self.pidfile),
            "--cgroup-parent", self.cgroup_parent, "--config-file", str(self._daemon_json()),
            "--bridge=none", "--iptables=false", "--ip-masq=false",
            "--registry-mirror", f"http://{mirror}", "--insecure-registry", mirror,
            *self.extra_args,
        ]  # fmt: skip
        # A private mount namespace keeps its overlay and shim mounts off the host.
        script = f'mount --bind {self.run_dir}/containerd /run/containerd && exec "$@"'
        pid = spawn(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *dockerd],
            self.log,
        )
        if not wait_until(lambda: docker_ping(self.socket) or exited(pid), 60):
            raise ProviderError(f"the image builder dockerd did not start, see {self.log}")
        if not docker_ping(self.socket):
            raise ProviderError(f"the image builder dockerd died, see {self.log}")

    def _daemon_json(self) -> Path:
        path = self.run_dir / "daemon.json"
        path.write_text("{}\n")
        return path

    def stop(self) -> None:
        stop_pid(read_pid(self.pidfile, "dockerd"), grace=20)
        kill_processes_of(self.cgroup_parent, self.exec_root)
        remove_cgroup_tree(self.cgroup_parent.lstrip("/"))
        shutil.rmtree(self.run_dir, ignore_errors=True)
        remove_created_dirs_if_last()

    def docker(self, *args: str, timeout: float = 900, **env: str) -> str:
        argv = [docker_client(), "-H", self.host, *args]
        return run(argv, timeout=timeout, env=clean_env(**env), log=self.log).stdout

    def image_label(self, reference: str, label: str) -> str | None:
        try:
            out = self.docker("image", "inspect", "--format", "{{json .Config.Labels}}", reference)
        except ProviderError:
            return None
        return (json.loads(out) or {}).get(label)


def exited(pid: int) -> bool:
    """True once ``pid`` has exited (used to stop waiting for a daemon that died)."""
    return not Path(f"/proc/{pid}").exists()


# ------------------------------------------------------------------- builds


@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    seconds: float = 0.0


def build_images(
    spec: LabSpec,
    build: Path,
    *,
    say: Callable[[str], None] = print,
    only: Iterable[str] | None = None,
) -> BuildReport:
    """Build what is missing from the mirror (or changed), push it there; skip the rest."""
    started = time.monotonic()
    require_root(("dockerd", "unshare", "skopeo", "debootstrap"))
    mirror = LabHost(spec, build).ensure()
    wanted = [r for r in recipes(spec) if only is None or r.key in set(only)]
    report = BuildReport()
    contexts = {r.key: _prepare_context(r) for r in wanted}
    todo = []
    for recipe in wanted:
        digest = contexts[recipe.key][1]
        labels = mirror.labels(recipe.reference) or {}
        if labels.get(RECIPE_LABEL) == digest:
            report.cached.append(recipe.reference)
        else:
            todo.append(recipe)
    if todo:
        builder = Builder(say)
        builder.start(mirror.address)
        try:
            _ensure_base(builder, say)
            cached = {r.key for r in recipes(spec)} - {r.key for r in todo}
            _build_all(builder, todo, contexts, mirror, say, cached)
        finally:
            builder.stop()
        report.built = [r.reference for r in todo]
    report.seconds = time.monotonic() - started
    say(
        f"images: {len(report.built)} built, {len(report.cached)} cached, "
        f"mirror {mirror.url} ({report.seconds:.0f}s)"
    )
    return report


def _prepare_context(recipe: Recipe) -> tuple[Path, str]:
    """Write the build context; download wheels on the host (builds reach no index)."""
    context = cache_dir() / "contexts" / recipe.key
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for name, text in recipe.files.items():
        (context / name).write_text(text)
    wheel_names: list[str] = []
    if recipe.wheels:
        key = hashlib.sha256(" ".join(recipe.wheels).encode()).hexdigest()[:12]
        wheels = cache_dir() / "wheels" / key
        if not (wheels / ".complete").exists():
            wheels.mkdir(parents=True, exist_ok=True)
            run(["python3", "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                 "--dest", str(wheels), *recipe.wheels], timeout=900)  # fmt: skip
            (wheels / ".complete").touch()
        shutil.copytree(wheels, context / "wheels")
        wheel_names = sorted(p.name for p in wheels.glob("*.whl"))
    digest = recipe.digest(wheel_names=wheel_names)
    dockerfile = recipe.dockerfile + f'LABEL {RECIPE_LABEL}="{digest}"\n'
    (context / "Dockerfile").write_text(dockerfile)
    return context, digest


def _ensure_base(builder: Builder, say: Callable[[str], None]) -> None:
    """debootstrap a minimal bookworm with the host's mirror and import it (once)."""
    if builder.image_label(BASE_TAG, RECIPE_LABEL) == _base_digest():
        return
    rootfs = cache_dir() / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    mirror = debian_mirror_url()
    say(f"base image: debootstrap --variant=minbase bookworm from {mirror}")
    run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror], timeout=1200)
    try:
        # inside builds apt sees what the host sees (updates and security included)
        shutil.copy(APT_SOURCES, rootfs / "etc/apt/sources.list.d/debian.sources")
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [docker_client(), "-H", builder.host, "import",
             "-c", f'LABEL {LOCAL_BUILD_LABEL}="true" {RECIPE_LABEL}="{_base_digest()}"',
             "-", BASE_TAG],
            stdin=tar.stdout, check=True, capture_output=True, env=clean_env(),
        )  # fmt: skip
        tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def _base_digest() -> str:
    return hashlib.sha256(BASE_RECIPE.encode()).hexdigest()[:16]


def _build_all(
    builder: Builder,
    todo: list[Recipe],
    contexts: dict[str, tuple[Path, str]],
    mirror: Mirror,
    say: Callable[[str], None],
    cached_keys: set[str],
) -> None:
    """Build in waves (a recipe waits for those it uses), a few at once, pushing each."""
    pending = list(todo)
    done = set(cached_keys)  # already in the mirror: the builder pulls them from there

    def build_one(recipe: Recipe) -> None:
        begun = time.monotonic()
        context = contexts[recipe.key][0]
        builder.docker("build", "--network", "host", "-t", recipe.reference, str(context),
                       DOCKER_BUILDKIT="0")  # fmt: skip
        push(builder.host, recipe.reference, mirror)
        say(f"  built {recipe.reference} in {time.monotonic() - begun:.0f}s")

    while pending:
        wave = [r for r in pending if all(dep in done for dep in r.after)]
        if not wave:
            raise ProviderError("image recipes depend on each other in a cycle")
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(build_one, wave))
        done |= {r.key for r in wave}
        pending = [r for r in pending if r not in wave]


def push(daemon_host: str, reference: str, mirror: Mirror) -> None:
    """Copy an image from a dockerd into the mirror under its pull-through path."""
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
         "--src-daemon-host", daemon_host, f"docker-daemon:{reference}",
         f"docker://{mirror.address}/{mirror_path(reference)}"], timeout=900)  # fmt: skip


def load_archive(spec: LabSpec, build: Path, archive: Path, *, say=print) -> list[str]:
    """Put every tagged image of a `docker save` tarball into the mirror."""
    if not archive.is_file():
        raise ProviderError(f"{archive}: no such file (give a `docker save` tarball)")
    require_tools(("skopeo",))
    mirror = LabHost(spec, build).ensure()
    references = archive_tags(archive)
    for reference in references:
        target = f"docker://{mirror.address}/{mirror_path(reference)}"
        run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
             f"docker-archive:{archive}:{reference}", target], timeout=1800)  # fmt: skip
        say(f"  loaded {reference} -> {mirror.address}/{mirror_path(reference)}")
    return references


def archive_tags(archive: Path) -> list[str]:
    """The RepoTags listed in a `docker save` tarball's manifest.json."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.load(member) if member else []
    except (tarfile.TarError, KeyError, ValueError) as exc:
        raise ProviderError(f"{archive} is not a `docker save` tarball: {exc}") from None
    tags = [tag for entry in manifest for tag in entry.get("RepoTags") or []]
    if not tags:
        raise ProviderError(f"{archive} holds no tagged image: save it with `docker save NAME:TAG`")
    return tags


# lab.yaml's image fields that name an offline image, by recipe key.
OFFLINE_FIELDS = {
    "busybox": ("demo", "busybox_image"),
    "registry": ("registry", "image"),
    "redis": ("redis", "image"),
    "haproxy": ("loadbalancer", "haproxy_image"),
    "nginx": ("loadbalancer", "nginx_image"),
}


def offline_images(spec: LabSpec, mirror: Mirror) -> dict[str, str]:
    """lab.yaml's image -> the offline image of what it really holds, for every image
    that differs, unless an instructor loaded the real one (`inv lab.images --load`)."""
    swaps = {}
    for key, (section, name) in OFFLINE_FIELDS.items():
        wanted = getattr(getattr(spec, section), name)
        honest = offline_reference(key, wanted)
        labels = mirror.labels(wanted)
        loaded = labels is not None and LOCAL_BUILD_LABEL not in labels
        if honest != wanted and not loaded:
            swaps[wanted] = honest
    return swaps


def substitutes(spec: LabSpec, mirror: Mirror) -> tuple[str, str]:
    """(MinIO image, load balancer kind) that nodes pulling from ``mirror`` can run: MinIO
    and Traefik only if an instructor loaded them (`inv lab.images --load`), else the
    S3 stand-in and HAProxy."""
    minio = spec.minio.image
    if mirror.labels(minio) is None:
        minio = S3_STANDIN
    kind = spec.loadbalancer.kind
    if kind == "traefik" and mirror.labels(spec.loadbalancer.traefik_image) is None:
        kind = "haproxy"
    return minio, kind


def phase_images(spec: LabSpec, mirror: Mirror) -> list[str]:
    """The images the phases run on the nodes, without the demo's: stand-ins substituted,
    offline builds under the tag of what they hold."""
    minio, kind = substitutes(spec, mirror)
    lb = spec.loadbalancer
    balancer = {"traefik": lb.traefik_image, "haproxy": lb.haproxy_image}.get(kind, lb.nginx_image)
    images = [minio, spec.redis.image, spec.registry.image, balancer, spec.demo.hello_image]
    images += [lb.keepalived_image] if lb.vip else []
    swaps = offline_images(spec, mirror)  # what the nodes really run under its own tag
    return [swaps.get(image, image) for image in images]


def images_task(spec: LabSpec, build: Path, *, load: str | None = None) -> None:
    """What `inv lab.images [--load FILE.tar]` does."""
    if load:
        load_archive(spec, build, Path(load))
    else:
        build_images(spec, build)
