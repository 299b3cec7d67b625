"""Who is grading: the logged-in user, never a free textbox.

Locally the app uses Gradio's own login (``launch(auth=...)``) with users from
``UNINOTE_USERS="alice:pw,bob:pw"`` or a file named by ``UNINOTE_USERS_FILE`` (one ``user:password``
per line, ``#`` comments). On Hugging Face Spaces (``SPACE_ID`` set) annotators sign in with
their Hugging Face account (``gr.LoginButton``) and the OAuth profile names them.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import gradio as gr  # module level: Gradio resolves the callbacks' string type hints here

from uninote.errors import ConfigError


def on_spaces() -> bool:
    """Running on Hugging Face Spaces (what Gradio's own OAuth support checks)."""
    return os.environ.get("SYSTEM") == "spaces" and bool(os.environ.get("SPACE_ID"))


def _parse(lines: list[str], where: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for i, raw in enumerate(lines, 1):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        name, sep, password = item.partition(":")
        if not sep or not name.strip() or not password:
            raise ConfigError(f"{where}: entry {i} must look like 'user:password'")
        users[name.strip()] = password
    return users


def load_users() -> dict[str, str]:
    """Users allowed to log in: $UNINOTE_USERS ("a:pw,b:pw") plus $UNINOTE_USERS_FILE."""
    users: dict[str, str] = {}
    if os.environ.get("UNINOTE_USERS"):
        users.update(_parse(os.environ["UNINOTE_USERS"].split(","), "UNINOTE_USERS"))
    if os.environ.get("UNINOTE_USERS_FILE"):
        path = Path(os.environ["UNINOTE_USERS_FILE"])
        if not path.is_file():
            raise ConfigError(f"UNINOTE_USERS_FILE={path}: file not found")
        users.update(_parse(path.read_text().splitlines(), str(path)))
    return users


def make_auth(users: dict[str, str]):
    """A constant-time ``auth(user, password) -> bool`` for ``launch(auth=...)``, or None."""
    if not users:
        return None

    def check(username: str, password: str) -> bool:
        expected = users.get(username)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    return check


def annotator_of(request, profile=None) -> str | None:
    """The signed-in annotator: the OAuth profile on Spaces, else the Gradio-auth username."""
    if profile is not None:
        name = getattr(profile, "username", None) or getattr(profile, "name", None)
        if name:
            return f"hf:{name}"
    return getattr(request, "username", None) if request is not None else None



def with_annotator(fn, n_inputs: int):
    """Wrap ``fn(who, *inputs)`` (0, 1 or 2 inputs) as a Gradio callback given the signed-in annotator.

    On Spaces the wrapper also asks Gradio for the OAuth profile; elsewhere it takes only the
    request, so no OAuth session is created where there is no Hugging Face login. Gradio injects
    ``gr.Request`` / ``gr.OAuthProfile`` by type hint, hence the fixed signatures.
    """
    if n_inputs not in (0, 1, 2):
        raise ValueError("with_annotator wraps callbacks with 0, 1 or 2 inputs")
    if on_spaces() and n_inputs == 2:
        def callback(value, other, request: gr.Request, profile: gr.OAuthProfile | None = None):
            return fn(annotator_of(request, profile), value, other)
    elif n_inputs == 2:
        def callback(value, other, request: gr.Request):
            return fn(annotator_of(request), value, other)
    elif on_spaces() and n_inputs == 1:
        def callback(value, request: gr.Request, profile: gr.OAuthProfile | None = None):
            return fn(annotator_of(request, profile), value)
    elif on_spaces():
        def callback(request: gr.Request, profile: gr.OAuthProfile | None = None):
            return fn(annotator_of(request, profile))
    elif n_inputs == 1:
        def callback(value, request: gr.Request):
            return fn(annotator_of(request), value)
    else:
        def callback(request: gr.Request):
            return fn(annotator_of(request))
    return callback


# Gradio checks the login on its own /monitoring and /gradio_api/openapi.json routes, but not on
# /monitoring/summary (the event analytics) nor on FastAPI's /openapi.json (every route's schema).
GUARDED_PATHS = ("/monitoring", "/openapi.json")


class LoginRequired:
    """ASGI middleware: the guarded paths answer 401 unless the request carries a login cookie.

    The session is looked up the way Gradio's own ``login_check`` does, in the app's ``tokens``
    under the ``access-token[-unsecure]-<cookie_id>`` cookie. Other paths pass through untouched
    (Gradio guards those itself), streamed responses included.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and any(path == p or path.startswith(p + "/") for p in GUARDED_PATHS) \
                and not self._signed_in(scope):
            from starlette.responses import JSONResponse

            response = JSONResponse({"detail": {"error": "Not authenticated"}}, status_code=401)
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)

    @staticmethod
    def _signed_in(scope) -> bool:
        from starlette.requests import Request

        app, cookies = scope.get("app"), Request(scope).cookies
        cookie_id = getattr(app, "cookie_id", None)
        tokens = getattr(app, "tokens", None) or {}
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        return cookie_id is not None and token is not None and tokens.get(token) is not None
