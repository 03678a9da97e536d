"""remote-kpo: read the stack config, build the chosen cloud's stack, export its outputs."""

import importlib

import pulumi

import config


def main() -> None:
    try:
        cfg = config.from_pulumi()
        # stacks/<cloud>.py; imported lazily so a stack loads only its own cloud's SDK.
        builder = importlib.import_module(f"stacks.{cfg.cloud}")
        outputs = builder.build(cfg, pulumi.get_stack())
    except config.ConfigError as exc:
        # One message naming the key, before any resource is registered; no traceback.
        raise pulumi.RunError(str(exc)) from None
    for name, value in outputs.items():
        pulumi.export(name, value)


main()
