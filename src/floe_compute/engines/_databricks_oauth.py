"""OAuth machine-to-machine for the Databricks connector (a service principal's client credentials)."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from typing import Any

from pydantic import SecretStr

__all__ = ["ClientCredentials"]


class ClientCredentials:
    """OAuth machine-to-machine for the connector: a service principal's token from the workspace's
    ``/oidc/v1/token``, fetched again shortly before it expires."""

    def __init__(self, host: str, client_id: str, client_secret: SecretStr, timeout: float) -> None:
        self._url = f"https://{host}/oidc/v1/token"
        self._client_id, self._secret, self._timeout = client_id, client_secret, timeout
        self._lock = threading.Lock()
        self._token, self._expires = "", 0.0

    def auth_type(self) -> str:
        return "oauth-m2m"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._headers

    def _headers(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() > self._expires - 60:
                self._token, lifetime = self._fetch()
                self._expires = time.monotonic() + lifetime
            return {"Authorization": f"Bearer {self._token}"}

    def _fetch(self) -> tuple[str, float]:
        basic = base64.b64encode(f"{self._client_id}:{self._secret.get_secret_value()}".encode()).decode()
        request = urllib.request.Request(
            self._url,
            data=b"grant_type=client_credentials&scope=all-apis",
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            body = json.load(response)
        return str(body["access_token"]), float(body.get("expires_in", 3600))
