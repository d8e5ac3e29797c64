"""Generators of what users type: URLs, config values, manifests, SQL, parameters and secrets."""

from __future__ import annotations

import string
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

SECRET_KEYS = ["password", "token", "access_token", "private_key_passphrase", "credentials", "api_key"]

# a secret is long and random enough never to appear by coincidence in a message
secrets = st.text(alphabet=string.ascii_letters + string.digits + "-_.~", min_size=12, max_size=24).map(
    lambda s: f"Zq{s}9x"
)
identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
sizes = st.one_of(
    anything,
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.one_of(
            st.integers(min_value=-5, max_value=10**30), st.floats(allow_nan=True, allow_infinity=True)
        ),
        st.sampled_from(["", "B", "KB", "MB", "GB", "GiB", "TB", "XB", " gb", "parsecs"]),
    ),
)
durations = st.one_of(
    anything, st.sampled_from(["inf", "-inf", "nan", "1e400", "0", "-1", "10", "0.5", "soon"])
)

CONFIG_FIELDS: dict[tuple[str, str], Any] = {
    ("pool", "size"): anything,
    ("pool", "max_overflow"): anything,
    ("pool", "timeout"): durations,
    ("pool", "recycle"): durations,
    ("pool", "pre_ping"): anything,
    ("timeouts", "query"): durations,
    ("timeouts", "connect"): durations,
    ("limits", "memory_limit"): sizes,
    ("limits", "max_temp_directory_size"): sizes,
    ("limits", "threads"): anything,
    ("limits", "max_result_rows"): anything,
    ("health", "monitor_interval"): durations,
    ("health", "slow_ping_ms"): durations,
    ("errors", "keep_driver_cause"): anything,
}


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str]:
    """A URL as a user might write it, holding a generated secret somewhere; and that secret."""
    secret = draw(secrets)
    scheme = draw(
        st.sampled_from(["postgresql+psycopg", "postgresql", "duckdb", "nosuch", "postgresql+psycopg2"])
    )
    user = draw(identifiers)
    host = draw(st.sampled_from(["db.internal", "127.0.0.1", "h", "[::1]", ""]))
    where = draw(st.sampled_from(["userinfo", "query", "both"]))
    key = draw(st.sampled_from(SECRET_KEYS))
    query = draw(st.dictionaries(identifiers.filter(lambda k: k not in SECRET_KEYS), identifiers, max_size=2))
    if where in ("query", "both"):
        query[key] = secret
    userinfo = f"{user}:{secret}@" if where in ("userinfo", "both") else f"{user}@"
    text = "&".join(f"{k}={v}" for k, v in query.items())
    junk = draw(st.sampled_from(["", "", "/", "%zz", " ", "?&", "#frag"]))
    url = f"{scheme}://{userinfo}{host}/db{('?' + text) if text else ''}{junk}"
    return url, secret


yaml_scalars = st.one_of(
    st.sampled_from(
        ["local", "[local]", "{a: 1}", "yes", "~", "'9'", "*a", "&a x", "!!python/object:os.system"]
    ),
    st.text(max_size=20),
    st.integers(),
)


@st.composite
def manifests(draw: st.DrawFn) -> str:
    """Manifest text: mostly the right shape with wrong values, sometimes garbage."""
    target = draw(identifiers)
    default = draw(st.one_of(st.just(target), yaml_scalars))
    url = draw(st.sampled_from(["'duckdb:///:memory:'", "'nosuch://x'", "[duckdb]", "42", "''"]))
    section, key = draw(st.sampled_from(sorted(CONFIG_FIELDS)))
    value = draw(yaml_scalars)
    body = draw(
        st.sampled_from(
            [
                f"compute:\n  default: {default}\n  targets:\n"
                f"    {target}: {{url: {url}, {section}: {{{key}: {value}}}}}\n",
                f"compute:\n  targets:\n    {target}: {value}\n",
                f"compute: {value}\n",
                f"compute:\n  default: {default}\n  targets: {value}\n",
            ]
        )
    )
    return draw(st.one_of(st.just(body), st.text(max_size=200)))


@st.composite
def nested_secrets(draw: st.DrawFn) -> tuple[Any, str]:
    """A list, tuple or dict (nested up to three deep, beside other values) that holds a generated
    secret, as text or bytes; and that secret."""
    secret = draw(secrets)
    value: Any = secret.encode() if draw(st.booleans()) else secret
    for wrap in draw(st.lists(st.sampled_from(["list", "tuple", "dict"]), min_size=1, max_size=3)):
        others = draw(st.lists(anything, max_size=2))
        at = draw(st.integers(min_value=0, max_value=len(others)))
        items = [*others[:at], value, *others[at:]]
        if wrap == "dict":
            value = {f"k{i}": item for i, item in enumerate(items)}
        else:
            value = items if wrap == "list" else tuple(items)
    return value, secret


@st.composite
def secret_decimals(draw: st.DrawFn) -> tuple[Decimal, str]:
    """A Decimal with at least twelve integer digits (a card number, an account balance), and those
    digits."""
    whole = draw(st.integers(min_value=10**11, max_value=10**19))
    fraction = draw(st.sampled_from(["", ".5", ".49", ".0", ".123456"]))
    sign = draw(st.sampled_from(["", "-"]))
    return Decimal(f"{sign}{whole}{fraction}"), str(whole)
