"""Keep a trainee's lab to itself: iptables chains the kit owns, one pair per lab.

A node is root in its own network namespace, so a trainee can add any route; what
stops them is the host. For traffic that enters from the lab's bridge:

- FORWARD (to another lab, the host's other networks, the outside): only frames that
  stay on the lab's own bridge, and answers to connections the host opened;
- INPUT (the host itself, on any of its addresses): only the lab's image mirror, and
  answers to the host's own connections (the kit's SSH, checks and drills).

Each chain is jumped to from INPUT/FORWARD by one rule carrying the lab's name as a
comment; removal deletes the jumps, flushes and deletes the chains, and is safe to run
twice or after a half-made setup.
"""

from __future__ import annotations

from lab.host.bridge import bridge_name, short_tag
from lab.host.proc import run
from lab.spec import LabSpec

CHAIN_PREFIX = "HRLC"  # every chain of a class lab starts with this
MAX_CHAIN = 28  # iptables' limit on a chain name


def chain_names(spec: LabSpec) -> dict[str, str]:
    """{built-in chain: our chain} for this lab, within iptables' 28 characters."""
    tag = short_tag(spec.name, MAX_CHAIN - len(CHAIN_PREFIX) - 3)
    return {"INPUT": f"{CHAIN_PREFIX}-I-{tag}", "FORWARD": f"{CHAIN_PREFIX}-F-{tag}"}


def _jump(spec: LabSpec, builtin: str, chain: str) -> list[str]:
    comment = f"ha-registry-lab class {spec.name}"
    return [builtin, "-i", bridge_name(spec), "-m", "comment", "--comment", comment, "-j", chain]


def _rules(spec: LabSpec) -> dict[str, list[list[str]]]:
    bridge = bridge_name(spec)
    answers = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"]
    mirror_host, _, mirror_port = spec.mirror.rpartition(":")
    return {
        "FORWARD": [
            ["-o", bridge, "-j", "RETURN"],  # node to node on the lab's own bridge
            answers,
            ["-j", "DROP"],
        ],
        "INPUT": [
            answers,
            ["-d", mirror_host, "-p", "tcp", "--dport", mirror_port, "-j", "RETURN"],
            ["-j", "DROP"],
        ],
    }


def isolate(spec: LabSpec) -> None:
    """Make (or remake) the lab's chains and put their jumps first; idempotent."""
    names = chain_names(spec)
    rules = _rules(spec)
    for builtin, chain in names.items():
        if run(["iptables", "-n", "-L", chain], check=False).returncode != 0:
            run(["iptables", "-N", chain])
        run(["iptables", "-F", chain])
        for rule in rules[builtin]:
            run(["iptables", "-A", chain, *rule])
        jump = _jump(spec, builtin, chain)
        if run(["iptables", "-C", *jump], check=False).returncode != 0:
            run(["iptables", "-I", *jump])


def release(spec: LabSpec) -> None:
    """Remove the lab's jumps and chains (nothing else); safe when they are gone."""
    for builtin, chain in chain_names(spec).items():
        jump = _jump(spec, builtin, chain)
        while run(["iptables", "-D", *jump], check=False).returncode == 0:
            pass
        if run(["iptables", "-n", "-L", chain], check=False).returncode == 0:
            run(["iptables", "-F", chain])
            run(["iptables", "-X", chain])


def leftover_rules(spec: LabSpec) -> list[str]:
    """Every iptables line that still names this lab's chains (empty after release)."""
    listing = run(["iptables", "-S"]).stdout.splitlines()
    ours = tuple(chain_names(spec).values())
    return [line for line in listing if any(chain in line.split() for chain in ours)]
