import pytest

from tests.vectors import SHARED_DIR, VENDORED_DIR


@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="no ../shared/vectors beside this checkout")
def test_vectors_copy_is_current():
    shared = {p.name: p.read_bytes() for p in SHARED_DIR.glob("*.json")}
    vendored = {p.name: p.read_bytes() for p in VENDORED_DIR.glob("*.json")}
    assert vendored == shared, "refresh tests/vectors from ../shared/vectors"
