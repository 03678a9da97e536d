"""One builder per cloud: `build(cfg, stack) -> dict of stack outputs`."""
