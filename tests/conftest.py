import gc
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _collector_as_before():
    """The program freezes what is alive and collects less often, for its one run in a language
    host (__main__.py); a test process runs it many times, so each test puts the collector back."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
