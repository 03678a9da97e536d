import gc
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The DAGs' own modules, as Airflow finds them (it puts its dags folder on the path).
sys.path.insert(1, str(ROOT / "dags"))


@pytest.fixture(autouse=True)
def _collector_as_before():
    """The program freezes what is alive and collects less often, for its one run in a language
    host (__main__.py); a test process runs it many times, so each test puts the collector back."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.fixture
def admin_kubeconfig(tmp_path, monkeypatch):
    """An `existing` stack's admin kubeconfig, found through $KUBECONFIG as the program finds it."""
    from harness import ADMIN_KUBECONFIG

    path = tmp_path / "admin.kubeconfig"
    path.write_text(ADMIN_KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path
