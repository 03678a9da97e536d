"""Every fixed port of the local clusters (make dev, the e2e sessions, the benches) lies below
Linux's ephemeral range, so no outgoing connection can hold one when a cluster starts, and no
two clusters share one."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPHEMERAL_START = 32768  # net.ipv4.ip_local_port_range's default lower bound

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import realenv  # noqa: E402


def _defaults(path: str, pattern: str) -> list[int]:
    found = re.findall(pattern, (ROOT / path).read_text(), re.MULTILINE)
    return [int(port) for match in found for port in (match if isinstance(match, tuple) else (match,))]


def cluster(api: int, etcd: int, peer: int) -> list[int]:
    """A cluster's ports: its own three and its API server's neighbours (kwok-front, Karpenter's
    two, kwok's server, Kueue's two)."""
    return [api, etcd, peer, *(api + offset for offset in realenv.NEIGHBOUR_PORTS)]


def fixed_ports() -> dict[str, list[int]]:
    etcd, peer, api = _defaults("scripts/local-cluster", r'_PORT:-(\d+)\}')
    return {
        "make dev": cluster(api, etcd, peer),
        "e2e session": cluster(realenv.API_PORT, realenv.ETCD_PORT, realenv.ETCD_PEER_PORT),
        "e2e faults": cluster(realenv.FAULTS_API_PORT, realenv.FAULTS_ETCD_PORT, realenv.FAULTS_ETCD_PEER_PORT),
        "e2e other checkout": cluster(realenv.OTHER_API_PORT, realenv.OTHER_ETCD_PORT, realenv.OTHER_ETCD_PEER_PORT),
        "e2e README checkout": cluster(realenv.README_API_PORT, realenv.README_ETCD_PORT, realenv.README_ETCD_PEER_PORT),
        "e2e tokens": cluster(realenv.TOKENS_API_PORT, realenv.TOKENS_ETCD_PORT, realenv.TOKENS_ETCD_PEER_PORT),
        "bench/tokens.py": cluster(*_defaults("bench/tokens.py", r"^PORTS = \((\d+), (\d+), (\d+)\)")),
        "bench/kpo.py": cluster(*_defaults("bench/kpo.py", r"^PORTS = \((\d+), (\d+), (\d+)\)")),
        "bench/up.py": cluster(*_defaults("bench/up.py", r'_PORT": "(\d+)"')),
        "bench/gpu.py": cluster(*_defaults("bench/gpu.py", r"^PORTS = \((\d+), (\d+), (\d+)\)")),
        "bench/queueing.py": cluster(*_defaults("bench/queueing.py", r"^PORTS = \((\d+), (\d+), (\d+)\)")),
    }


def test_every_fixed_port_is_below_the_ephemeral_range():
    ports = fixed_ports()
    assert all(len(found) >= 4 for found in ports.values()), ports
    above = {name: [p for p in found if p >= EPHEMERAL_START] for name, found in ports.items()}
    assert not any(above.values()), above


def test_no_two_clusters_share_a_port():
    seen: dict[int, str] = {}
    for name, found in fixed_ports().items():
        for port in found:
            assert port not in seen, f"{name} and {seen[port]} both use {port}"
            seen[port] = name


def test_an_e2e_port_base_spans_less_than_2000_so_bases_2000_apart_never_meet():
    # The README tells two checkouts to run `make test` on port bases 2000 apart.
    e2e = [port for name, found in fixed_ports().items() if name.startswith("e2e") for port in found]
    assert realenv.PORT_BASE <= min(e2e) and max(e2e) < realenv.PORT_BASE + 2000, sorted(e2e)
