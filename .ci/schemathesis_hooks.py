"""Schemathesis hooks for the Capacity API contract run (.ci/schemathesis.sh).

Idempotency keys: the API replays the first answer to a repeated
`Idempotency-Key` and refuses the same key with another request (422
`idempotency_key_reused`), as its OpenAPI document says. Generated data
repeats small keys ("0", "00", ...) across unrelated requests, which a real
client never does, so a schema-valid key is made unique per request here.
Negative cases are left alone (whatever they break, the server still has
to reject it; and editing them would make schemathesis revalidate the case
and re-add a header the case meant to leave out). Replays themselves are covered by the Rust tests
(crates/capacity-api/tests/idempotency.rs).
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode.is_negative:
        return
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        value = headers[name]
        if isinstance(value, str) and VALID_KEY.match(value):
            headers[name] = value[:200] + "-" + uuid.uuid4().hex


# The clock of the contract run is pinned (CAPACITY_NOW in .ci/schemathesis.sh).
NOW = "2026-04-15T06:00:00Z"
FUTURE = "2026-10-01T00:00:00Z"
LATER = "2027-01-01T00:00:00Z"


@schemathesis.hook("before_call")
def respect_the_clock(context, case, kwargs):
    """Time rules the schema cannot state (they depend on the clock or on
    another field), as documented per field: `ends_at` and `effective_at`
    are never in the past, and `ends_at` comes after `starts_at`. Schema-valid
    (positive) bodies are moved into the run's future so that they exercise
    the operation instead of its time checks; negative cases are untouched.
    The Rust tests cover each time rule's refusal."""
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode.is_negative:
        return
    body = case.body
    if not isinstance(body, dict):
        return

    def before(a, b):
        # RFC 3339 in UTC with `Z` compares as text only in the same form;
        # anything else is left to the server.
        return isinstance(a, str) and isinstance(b, str) and a.endswith("Z") and b.endswith("Z") and a[:19] < b[:19]

    # `effective_at` may be now; `ends_at` must come after the start, which
    # defaults to now.
    value = body.get("effective_at")
    if isinstance(value, str) and (not value.endswith("Z") or before(value, NOW)):
        body["effective_at"] = FUTURE
    value = body.get("ends_at")
    if isinstance(value, str) and (not value.endswith("Z") or not before(NOW, value)):
        body["ends_at"] = FUTURE
    # PATCH: `ends_at` must also come after the allocation's start, which may
    # itself lie in the future (allocations created earlier in the run).
    if case.operation.method.upper() == "PATCH" and isinstance(body.get("ends_at"), str):
        body["ends_at"] = "9999-01-01T00:00:00Z"
    starts, ends = body.get("starts_at"), body.get("ends_at")
    if isinstance(starts, str) and isinstance(ends, str) and not before(starts, ends):
        body["starts_at"] = NOW
        body["ends_at"] = LATER if not before(NOW, ends) else ends


DEMO_ORGANIZATION = "ORG-26-090500"


@schemathesis.hook("before_call")
def respect_state_rules(context, case, kwargs):
    """A state rule the schema cannot state, as documented on the field: a
    workspace seen for the first time needs its `organization_id` (one is
    given when absent). Positive cases only; the Rust tests cover the
    refusal."""
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode.is_negative:
        return
    body = case.body
    if not isinstance(body, dict):
        return
    path = case.operation.path
    if path in ("/v1/service-lines/{id}", "/v1/capacity/requests") and body.get("organization_id") is None:
        body["organization_id"] = DEMO_ORGANIZATION
