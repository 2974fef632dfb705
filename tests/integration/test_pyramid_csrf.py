"""TokenCSRFStoragePolicy in a real Pyramid app that requires CSRF tokens."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
    import webob  # noqa: F401

import base64
import datetime
import json
from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.csrf import new_csrf_token

from baseplate.integration.pyramid.csrf import TokenCSRFStoragePolicy
from baseplate.secrets import SecretsStore

SECRET_PATH = "secret/csrf/signing-key"
#: What the original Baseplate issued for user t2_1 at time 1000 with the
#: secret b"test" and the default hour: tokens must pass between versions.
ORIGINAL_TOKEN = "1.AQAA-BEAAF-br-ovnk0q8Wd0kA98-jsak9elbMqo0WbjT0GuyRTD"


class HeaderSecurityPolicy:
    """The user an authenticating proxy names in ``Authenticated-User``."""

    def identity(self, request: Any) -> str | None:
        return request.headers.get("Authenticated-User")

    def authenticated_userid(self, request: Any) -> str | None:
        return self.identity(request)

    def permits(self, request: Any, context: Any, permission: str) -> bool:
        return True


@pytest.fixture
def secrets(tmp_path) -> SecretsStore:
    secret = {
        "type": "versioned",
        "current": base64.b64encode(b"test").decode(),
        "encoding": "base64",
    }
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"secrets": {SECRET_PATH: secret}}))
    return SecretsStore(str(path))


@pytest.fixture
def policy(secrets) -> TokenCSRFStoragePolicy:
    return TokenCSRFStoragePolicy(secrets=secrets, secret_path=SECRET_PATH)


@pytest.fixture
def app(policy) -> webtest.TestApp:
    config = Configurator()
    config.set_security_policy(HeaderSecurityPolicy())
    config.set_csrf_storage_policy(policy)
    config.set_default_csrf_options(require_csrf=True)
    config.add_route("form", "/form")
    config.add_view(
        lambda request: {"token": new_csrf_token(request)},
        route_name="form",
        request_method="GET",
        renderer="json",
    )
    config.add_view(
        lambda request: {"saved": True}, route_name="form", request_method="POST", renderer="json"
    )
    return webtest.TestApp(config.make_wsgi_app())


def test_a_token_for_the_user_is_accepted(app, clock):
    alice = {"Authenticated-User": "t2_alice"}
    token = app.get("/form", headers=alice).json["token"]
    assert token.startswith("1.")
    assert app.post("/form", {"csrf_token": token}, headers=alice).json == {"saved": True}


def test_missing_foreign_tampered_and_expired_tokens_are_refused(app, clock):
    alice, bob = {"Authenticated-User": "t2_alice"}, {"Authenticated-User": "t2_bob"}
    token = app.get("/form", headers=alice).json["token"]
    app.post("/form", headers=alice, status=400)
    app.post("/form", {"csrf_token": token}, headers=bob, status=400)
    app.post("/form", {"csrf_token": "2" + token[1:]}, headers=alice, status=400)
    app.post("/form", {"csrf_token": "no-separator"}, headers=alice, status=400)
    clock.now += 3601
    app.post("/form", {"csrf_token": token}, headers=alice, status=400)


def test_tokens_are_the_originals(policy, clock):
    clock.now = 1000.0
    user = type("Request", (), {"authenticated_userid": "t2_1"})()
    assert policy.new_csrf_token(user) == ORIGINAL_TOKEN
    assert policy.check_csrf_token(user, ORIGINAL_TOKEN)
    assert not policy.check_csrf_token(user, None)


def test_no_token_without_an_authenticated_user(policy):
    anonymous = type("Request", (), {"authenticated_userid": None})()
    with pytest.raises(ValueError, match="authenticated user"):
        policy.new_csrf_token(anonymous)
    assert not policy.check_csrf_token(anonymous, ORIGINAL_TOKEN)


def test_max_age_and_param_are_settable(secrets, clock):
    custom = TokenCSRFStoragePolicy(
        secrets=secrets,
        secret_path=SECRET_PATH,
        param="token",
        max_age=datetime.timedelta(minutes=5),
    )
    request = type("Request", (), {"params": {"token": "abc", "csrf_token": "x"}})()
    assert custom.get_csrf_token(request) == "abc"
    user = type("Request", (), {"authenticated_userid": "t2_1"})()
    token = custom.new_csrf_token(user)
    clock.now += 301
    assert not custom.check_csrf_token(user, token)
