"""The conformance kit's OpenAPI check: schemathesis against the server's own document.

Every operation is run with positive and negative data and every check schemathesis has
(no server errors; statuses, headers, content types and bodies as documented; wrong data
refused, right data accepted). The first failure of each operation is reported.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from device.inventory.conformance import CheckResult
from device.inventory.models import IDEMPOTENCY_KEY_PATTERN


def prepare_case(case: Any, token: str) -> dict[str, str]:
    """Adjust a generated case to the contract; returns the auth headers to send with it.

    - JSON Schema counts 3.0 as an integer, but the contract refuses it (422): positive
      cases send integers as integers.
    - The contract is one Idempotency-Key per intended change: generated keys repeat across
      cases with other bodies, which a server rightly refuses, so each is made unique.
    - A negative case may drop or break the credentials on purpose: it is sent as it is.
    """
    from schemathesis.core.parameters import ParameterLocation

    meta = case.meta
    negative = meta is not None and meta.generation.mode.is_negative
    if not negative and isinstance(case.body, dict):
        case.body = {
            k: int(v) if isinstance(v, float) and v.is_integer() else v
            for k, v in case.body.items()
        }
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
        case.headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"
    if negative and meta is not None and meta.is_negative_at(ParameterLocation.HEADER):
        return {}
    return {"Authorization": f"Bearer {token}"}


def all_checks() -> list[Any]:
    from schemathesis.checks import CHECKS, is_check_class, load_all_checks

    load_all_checks()
    return [check for check in CHECKS.get_all() if not is_check_class(check)]


def _root(base_url: str) -> str:
    return re.sub(r"/api/v\d+/?$", "", base_url.rstrip("/"))


def openapi_check(
    base_url: str, token: str, *, examples: int = 10, ca_file: Path | None = None
) -> CheckResult:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.core.result import Ok
    from schemathesis.generation.modes import GenerationMode

    root = _root(base_url)
    verify: str | bool = str(ca_file) if ca_file is not None else True
    try:
        schema = schemathesis.openapi.from_url(f"{root}/openapi.json", timeout=10, verify=verify)
    except Exception as exc:  # any load failure is this check's failure
        return CheckResult("openapi", False, f"cannot load {root}/openapi.json: {exc}")
    checks = all_checks()
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"the document has an invalid operation: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def run(case: Any) -> None:
                auth = prepare_case(case, token)
                case.call_and_validate(
                    base_url=root, headers=auth, checks=checks, timeout=10, verify=verify
                )

            try:
                run()
            except Unsatisfiable:
                continue  # nothing to make negative (no parameters, no body)
            except Exception as exc:  # schemathesis raises failure groups and check errors
                first = str(exc).strip().splitlines()
                failures.append(f"{operation.label} ({mode.value}): {first[0] if first else exc}")
                break
    if failures:
        return CheckResult("openapi", False, "; ".join(failures))
    return CheckResult(
        "openapi", True, f"{operations} operations, positive and negative data, every check"
    )
