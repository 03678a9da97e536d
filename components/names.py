"""Cloud names that fit their length limits.

A name that fits is used as it is; a longer one is cut and ends with a hash of the whole
name, so two long names that share a prefix stay distinct and the same config always gives
the same name (no replacement on the next `up`).
"""

import hashlib
import re

# Pulumi auto-naming appends "-" and 7 random hex characters to a resource's logical name.
AUTONAME_SUFFIX = 8


def fit(name: str, limit: int, *, suffix: str = "", digest_length: int = 8, separator: str = "-") -> str:
    """`name + suffix` if it is at most `limit` long, else `<cut name><separator><hash><suffix>`."""
    if len(name) + len(suffix) <= limit:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:digest_length]
    keep = limit - len(suffix) - digest_length - 1
    if keep < 1:
        raise ValueError(f"no room for {name!r} in {limit} characters with suffix {suffix!r}")
    return f"{name[:keep].rstrip(separator)}{separator}{digest}{suffix}"


def stack_scoped(stack: str, *parts: str, limit: int = 253) -> str:
    """`remote-kpo-<stack>[-<part>...]` for a cluster-scoped object: two stacks on one cluster
    never share one, and its name says which stack made it."""
    stack_part = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")
    return fit("-".join(["remote-kpo", stack_part, *parts]), limit)
