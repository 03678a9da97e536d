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


def fixed_ports() -> dict[str, list[int]]:
    dev = _defaults("scripts/local-cluster", r'_PORT:-(\d+)\}')
    ports = {
        "make dev": dev + [dev[-1] + 1],  # kwok: the API server's port + 1
        "e2e session": [realenv.API_PORT, realenv.ETCD_PORT, realenv.ETCD_PEER_PORT, realenv.API_PORT + 1],
        "e2e faults": [realenv.FAULTS_API_PORT, realenv.FAULTS_ETCD_PORT, realenv.FAULTS_ETCD_PEER_PORT,
                       realenv.FAULTS_API_PORT + 1],
        "e2e tokens": [realenv.TOKENS_API_PORT, realenv.TOKENS_ETCD_PORT, realenv.TOKENS_ETCD_PEER_PORT,
                       realenv.TOKENS_API_PORT + 1],
        "bench/kpo.py": _defaults("bench/kpo.py", r"^PORTS = \((\d+), (\d+), (\d+)\)"),
        "bench/tokens.py": _defaults("bench/tokens.py", r"^PORTS = \((\d+), (\d+), (\d+)\)"),
        "bench/up.py": _defaults("bench/up.py", r'_PORT": "(\d+)"'),
        "bench/gpu.py": _defaults("bench/gpu.py", r"^PORTS = \((\d+), (\d+), (\d+)\)"),
    }
    for name in ("bench/kpo.py", "bench/up.py", "bench/tokens.py"):
        ports[name].append(ports[name][0] + 1)  # kwok
    # Karpenter's cluster: kwok, Karpenter's metrics and health ports at the API server's + 1 to + 3.
    ports["bench/gpu.py"] += [ports["bench/gpu.py"][0] + offset for offset in (1, 2, 3)]
    return ports


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
