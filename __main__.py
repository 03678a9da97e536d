"""remote-kpo: read the stack config, build the chosen cloud's stack, export its outputs."""

import gc
import importlib

import pulumi

import config


def main() -> None:
    try:
        cfg = config.from_pulumi()
        # stacks/<cloud>.py; imported lazily so a stack loads only its own cloud's SDK.
        builder = importlib.import_module(f"stacks.{cfg.cloud}")
        # Garbage collection was a quarter of the program's CPU time (bench/README.md, "The
        # program"). The SDKs are imported now: about 100,000 objects that live as long as the
        # program; frozen, full collections no longer walk them. And registering a resource
        # allocates thousands of short-lived objects (futures, protobufs), so collect young
        # objects every 50,000 allocations instead of 700: a few MB more at most, for a run of
        # seconds.
        gc.freeze()
        gc.set_threshold(50_000)
        outputs = builder.build(cfg, pulumi.get_stack())
    except config.ConfigError as exc:
        # One message naming the key, before any resource is registered; no traceback.
        raise pulumi.RunError(str(exc)) from None
    for name, value in outputs.items():
        pulumi.export(name, value)


main()
