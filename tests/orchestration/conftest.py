import pytest

from lamina.testing import LocalServer, upstreams


@pytest.fixture
def api(lamina_server: LocalServer) -> LocalServer:
    """The local server with the sample upstream routes."""
    return upstreams.install(lamina_server)
