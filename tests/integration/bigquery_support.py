"""Names the BigQuery tests share (a plain module: ``bigquery_fixtures`` is loaded as a plugin)."""

from __future__ import annotations

from typing import Any

import pytest

PROJECT = "floe-test"
bigquery_tests = [pytest.mark.bigquery]
"""Every BigQuery test module's marks (the workers share one emulator: ``bigquery_fixtures.py``)."""


def job_inserts(proxy: Any) -> list[Any]:
    """The ``jobs.insert`` requests the proxy saw, in order."""
    return [x for x in proxy.exchanges if x.method == "POST" and x.path.endswith(f"/projects/{PROJECT}/jobs")]


def is_insert_of(marker: str) -> Any:
    """A proxy predicate: the ``jobs.insert`` of a query whose SQL contains ``marker``."""

    def predicate(x: Any) -> bool:
        return bool(
            x.method == "POST"
            and x.path.endswith("/jobs")
            and marker in x.json["configuration"]["query"]["query"]
        )

    return predicate


def private_key_pem() -> str:
    """A fresh RSA private key, PEM-encoded."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_key(token_uri: str, pem: str | None = None) -> dict[str, str]:
    """A well-formed service account key with a fresh RSA key (no Google account behind it)."""
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": pem or private_key_pem(),
        "client_email": f"floe@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }


def bq_error(code: int, status: str, reason: str, message: str | None = None) -> dict[str, Any]:
    """An error response of the BigQuery REST API, in its documented shape."""
    message = message or f"injected {reason}"
    errors = [{"message": message, "domain": "global", "reason": reason}]
    return {"error": {"code": code, "message": message, "errors": errors, "status": status}}
