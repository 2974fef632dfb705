import pytest

from bridge import provider
from tests.diagnostics.tracing.standins import CollectorStandIn


@pytest.fixture
def fresh_provider():
    """A provider made after the test's tracing client named the service."""
    provider.reset_state()
    yield
    provider.reset_state()


@pytest.fixture
def collector():
    """A trace collector (Zipkin, OTLP/HTTP) stand-in on 127.0.0.1."""
    stand_in = CollectorStandIn()
    yield stand_in
    stand_in.close()
