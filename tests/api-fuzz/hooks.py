"""schemathesis hooks for scripts/api-fuzz (loaded by schemathesis.toml's `hooks`).

The exceptions that no schema can express and that only a request or response body tells apart:
one request rewrite (`owner_id`) and the failures dropped by `filter_failure`, each in its exact
form only, so that anything else still fails the run. Add one only with its reason.
"""

import atexit
import collections
import json
import os
import sys
import re
from urllib.parse import urlsplit

import schemathesis

# The seeded tenant's one user (scripts/api-fuzz sets it).
OWNER_ID = os.environ["TESSERA_API_FUZZ_OWNER_ID"]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


@schemathesis.hook
def before_call(context, case, kwargs):
    """`owner_id` must name a user of the tenant (else 422 `owner_id` `not_found`), and which
    users exist is data, not shape: no schema can say it. So a well-formed `owner_id` is sent as
    the seeded owner; a malformed one is left alone, and must still be refused.
    """
    body = case.body
    if (
        case.operation.path.startswith("/v1/contacts")
        and isinstance(body, dict)
        and isinstance(body.get("owner_id"), str)
        and UUID.match(body["owner_id"])
    ):
        body["owner_id"] = OWNER_ID


def _problem(response):
    try:
        return json.loads(response.content)
    except ValueError:
        return {}


def _key_reused(failure, response):
    """The same Idempotency-Key sent again with another body: 422 `idempotency_key_reused`.

    That is the key doing its job (../shared/API.md §4): a key names one request, and a client mints a fresh
    one per distinct request. The generator reuses small values (`0`, `!`) across bodies, and a
    schema can describe a key's form but not that it is fresh.
    """
    return (
        failure.code == "ST202"
        and response.status_code == 422
        and _problem(response).get("code") == "idempotency_key_reused"
    )


# Locations that a create answered as an idempotent replay (`Idempotent-Replayed: true`).
_REPLAYED = set()


def _header(response, name):
    for key, value in response.headers.items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) else value
    return None


@schemathesis.hook
def after_call(context, case, response):
    if _header(response, "idempotent-replayed") == "true":
        location = _header(response, "location")
        if location:
            _REPLAYED.add(location)


def _replay_of_deleted(failure, response):
    """A create replayed by its Idempotency-Key names a record deleted since: 404 when fetched.

    A replay returns the stored response (../shared/API.md §4), Location included, so a record deleted
    between the first request and the retry is gone; creating it again would break the key's
    promise that a retry never creates twice. The stateful phase reuses keys across scenarios.
    """
    if failure.code != "ST302" or response.status_code != 404:
        return False
    path = urlsplit(response.request.url).path
    return path in _REPLAYED


_DROPPED = collections.Counter()


@schemathesis.hook
def filter_failure(context, failure, case, response):
    for reason in (_key_reused, _replay_of_deleted):
        if reason(failure, response):
            _DROPPED[reason.__name__.strip("_")] += 1
            return False
    return True


@atexit.register
def _report():
    if _DROPPED:
        counts = ", ".join(f"{name} {n}" for name, n in sorted(_DROPPED.items()))
        print(f"api-fuzz hooks dropped as inherent: {counts}", file=sys.stderr)
