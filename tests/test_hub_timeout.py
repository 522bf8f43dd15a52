"""``hub.hub_timeout`` through huggingface_hub's public API: the limit reaches the requests of its
shared client, a client factory the user set stays in force, and nothing is left behind."""

from __future__ import annotations

import pytest

from avscene.checkpoint.resolve import hub_timeout, is_timeout
from hubserver import SilentServer


@pytest.fixture
def user_factory():
    """A client factory a user installed (say, for a proxy): its clients carry a marker header."""
    from huggingface_hub import get_session, set_client_factory
    from huggingface_hub.utils import _http  # the test restores the factory it found

    previous = _http._GLOBAL_CLIENT_FACTORY

    def factory():  # noqa: ANN202 - an httpx client
        client = previous()
        client.headers["x-user-factory"] = "yes"
        return client

    set_client_factory(factory)
    yield get_session
    set_client_factory(previous)


def test_a_silent_server_times_out_within_the_block(user_factory) -> None:
    with SilentServer() as server:
        with hub_timeout(0.5), pytest.raises(Exception) as raised:  # noqa: PT011 - any HTTP library's timeout
            user_factory().get(server.url)
    assert is_timeout(raised.value), repr(raised.value)


def test_the_users_factory_is_kept_and_the_block_leaves_nothing_behind(user_factory) -> None:
    from huggingface_hub import constants

    client = user_factory()
    hooks_before = list(client.event_hooks["request"])
    download_before = constants.HF_HUB_DOWNLOAD_TIMEOUT
    with hub_timeout(3.0):
        inside = user_factory()
        assert inside.headers.get("x-user-factory") == "yes"  # the user's client, not a new one
        assert len(inside.event_hooks["request"]) == len(hooks_before) + 1
        assert constants.HF_HUB_DOWNLOAD_TIMEOUT == 3.0
    after = user_factory()
    assert after.headers.get("x-user-factory") == "yes"
    assert after.event_hooks["request"] == hooks_before
    assert constants.HF_HUB_DOWNLOAD_TIMEOUT == download_before


def test_a_shorter_limit_of_a_request_is_kept(user_factory) -> None:
    """The block's limit caps a request's own limits; it never lengthens one."""
    import importlib

    with hub_timeout(5.0):
        client = user_factory()
        httpx = importlib.import_module(type(client).__module__.split(".")[0])  # httpx, or httpx2
        request = client.build_request("GET", "http://127.0.0.1:9/", timeout=httpx.Timeout(1.0, read=None))
        for hook in client.event_hooks["request"]:
            hook(request)
    assert request.extensions["timeout"] == {"connect": 1.0, "read": 5.0, "write": 1.0, "pool": 1.0}
