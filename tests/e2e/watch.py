"""What the API server reports about objects as it happens: `kubectl get --watch` in the background.

A test (or bench/gpu.py) starts a Watch before it acts, then reads the whole history: every added,
modified and deleted object with the time its event arrived, so that short-lived states (a pod
Pending before a node exists, a node that came and went) are seen and not sampled.
"""

import json
import subprocess
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    at: float       # epoch seconds when the event arrived
    type: str       # ADDED, MODIFIED, DELETED
    object: dict

    @property
    def name(self) -> str:
        return self.object["metadata"]["name"]


class Watch:
    """`kubectl get <args> --watch`: the objects that exist when it starts arrive as ADDED."""

    def __init__(self, env: dict, *args: str):
        self._events: list[Event] = []
        self._changed = threading.Condition()
        self._process = subprocess.Popen(
            ["kubectl", "get", *args, "--watch", "--output-watch-events", "-o", "json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # One JSON document per event; decode each as soon as it is whole, whatever its layout.
        decoder, pending = json.JSONDecoder(), ""
        for line in self._process.stdout:
            pending += line
            while pending.strip():
                try:
                    event, end = decoder.raw_decode(pending.lstrip())
                except json.JSONDecodeError:
                    break
                pending = pending.lstrip()[end:]
                with self._changed:
                    self._events.append(Event(time.time(), event["type"], event["object"]))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def events(self, name: str | None = None) -> list[Event]:
        with self._changed:
            return [e for e in self._events if name is None or e.name == name]

    def wait_for(self, matches, timeout: float, what: str) -> Event:
        """The first event (past or future) for which `matches(event)` is true."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for event in self._events[seen:]:
                    if matches(event):
                        return event
                seen = len(self._events)
                left = deadline - time.monotonic()
                if self._process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"watch ended waiting for {what}: {self._process.stderr.read()}")
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout:.0f}s")
                self._changed.wait(min(left, 1.0))

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()
        self._reader.join()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
