"""The API's doors, on a real coordinator with no model deployed: the bearer key beyond loopback, no
key on loopback, OpenAI-shaped errors, and a clear 503 while nothing is deployed."""

from __future__ import annotations

import httpx
import openai
import pytest

from engine.api.server import api_key_for, is_loopback, parse_bind
from engine.coordinator.embedded import EmbeddedCoordinator
from engine.errors import InvalidInput

pytestmark = pytest.mark.timeout(120)


def coordinator(tmp_path, api_bind: str) -> EmbeddedCoordinator:
    return EmbeddedCoordinator(f"sqlite:{tmp_path}/prismn.sqlite3", transport="tcp", bind_host="127.0.0.1",
                               api_bind=api_bind)


def local_url(api_url: str) -> str:
    """Connect through loopback whatever the bind address: the bind is what decides about the key."""
    port = api_url.rsplit(":", 1)[1]
    return f"http://127.0.0.1:{port}"


def test_bound_beyond_loopback_the_api_wants_the_generated_key(tmp_path, monkeypatch):
    monkeypatch.delenv("PRISMN_API_KEY", raising=False)
    with coordinator(tmp_path, "0.0.0.0:0") as running:
        key = running.api_key
        assert key and len(key) >= 24
        base = local_url(running.api_url)
        with pytest.raises(openai.AuthenticationError) as refused:
            openai.OpenAI(base_url=base, api_key="wrong-key", max_retries=0).models.list()
        assert refused.value.status_code == 401
        assert refused.value.body["code"] == "invalid_api_key"
        assert httpx.get(base + "/models").status_code == 401          # no Authorization header at all
        assert openai.OpenAI(base_url=base, api_key=key, max_retries=0).models.list().data == []


def test_prismn_api_key_is_used_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv("PRISMN_API_KEY", "a-key-chosen-by-the-operator")
    with coordinator(tmp_path, "0.0.0.0:0") as running:
        assert running.api_key == "a-key-chosen-by-the-operator"
        client = openai.OpenAI(base_url=local_url(running.api_url), api_key="a-key-chosen-by-the-operator",
                               max_retries=0)
        assert client.models.list().data == []


def test_on_loopback_no_key_and_nothing_deployed_is_a_503(tmp_path):
    with coordinator(tmp_path, "127.0.0.1:0") as running:
        assert running.api_key is None
        client = openai.OpenAI(base_url=running.api_url, api_key="unused", max_retries=0)
        assert client.models.list().data == []
        with pytest.raises(openai.InternalServerError) as unavailable:
            client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}])
        assert unavailable.value.status_code == 503
        assert unavailable.value.body["code"] == "no_deployment"
        assert unavailable.value.response.headers["retry-after"] == "2"      # the official clients wait so long
        # a body that is not JSON: 400 in OpenAI's shape naming the body
        reply = httpx.post(running.api_url + "/chat/completions", content=b"{nope")
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "body"


def test_loopback_means_127_0_0_0_8_ipv6_one_and_localhost():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.org"))
    assert api_key_for("127.0.0.1", {}) == (None, False)
    key, generated = api_key_for("0.0.0.0", {})
    assert generated and len(key) >= 24
    with pytest.raises(InvalidInput, match="PRISMN_API_KEY"):
        api_key_for("0.0.0.0", {"PRISMN_API_KEY": "short"})
    assert parse_bind("[::1]:8080") == ("::1", 8080)
    with pytest.raises(InvalidInput, match="api_bind"):
        parse_bind("127.0.0.1")


def test_the_apps_api_takes_another_port_when_its_own_is_taken(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with coordinator(tmp_path, f"127.0.0.1:{port}") as running:
            assert running.api_url.startswith("http://127.0.0.1:") and f":{port}/" not in running.api_url
            assert openai.OpenAI(base_url=running.api_url, api_key="-", max_retries=0).models.list().data == []
