"""Checking a model's arguments against a tool's schema, naming the first bad field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

from device.tools.declarations import validation_schema


@dataclass(frozen=True)
class ArgumentProblem:
    field: str | None
    detail: str
    valid_options: tuple[str, ...] = ()


def _has_control_chars(text: str) -> bool:
    # Spoken arguments never hold control characters; refusing them also closes the gap where
    # a pattern's `$` would accept a trailing newline.
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


class ArgumentValidator:
    def __init__(self, name: str) -> None:
        self.name = name
        self.schema = validation_schema(name)
        Draft202012Validator.check_schema(self.schema)
        self._validator = Draft202012Validator(self.schema)
        self._integers = {
            key for key, spec in self.schema["properties"].items() if spec.get("type") == "integer"
        }

    def normalise(self, args: Any) -> dict[str, Any] | ArgumentProblem:
        """The arguments ready to use, or the first problem with them."""
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return ArgumentProblem(
                None, f"arguments must be a JSON object, not {type(args).__name__}"
            )
        clean: dict[str, Any] = {}
        for key, value in args.items():
            if value is None:
                continue  # an optional argument sent as null means "not given"
            if (
                key in self._integers
                and isinstance(value, float)
                and value.is_integer()
                and abs(value) < 2**53
            ):
                value = int(value)  # protobuf Struct carries every number as a double
            if isinstance(value, str) and _has_control_chars(value):
                return ArgumentProblem(str(key), f"{key} contains control characters")
            clean[key] = value
        error = self._first_error(clean)
        return clean if error is None else error

    def _first_error(self, args: dict[str, Any]) -> ArgumentProblem | None:
        errors = sorted(self._validator.iter_errors(args), key=lambda e: (len(e.path), str(e.path)))
        if not errors:
            return None
        err = errors[0]
        return self._describe(err, args)

    def _describe(self, err: ValidationError, args: dict[str, Any]) -> ArgumentProblem:
        props: dict[str, Any] = self.schema["properties"]
        if err.validator == "required":
            missing = [k for k in self.schema.get("required", []) if k not in args]
            field = missing[0] if missing else None
            return ArgumentProblem(field, f"{field} is required: {_hint(props.get(field or ''))}")
        if err.validator == "additionalProperties":
            extra = sorted(str(k) for k in args if k not in props)
            allowed = ", ".join(props) or "no arguments"
            return ArgumentProblem(
                extra[0] if extra else None,
                f"unknown argument(s) {', '.join(extra)}; {self.name} takes {allowed}",
                tuple(props),
            )
        if err.validator == "minProperties":
            return ArgumentProblem(None, f"give at least one of: {', '.join(props)}", tuple(props))
        field = str(err.path[0]) if err.path else None
        spec = props.get(field or "", {})
        options = tuple(str(v) for v in spec.get("enum", ()))
        return ArgumentProblem(field, f"{field} is invalid: {_hint(spec)}", options)


def _hint(spec: dict[str, Any] | None) -> str:
    if not spec:
        return "see the tool description"
    if "enum" in spec:
        return "use one of " + ", ".join(map(str, spec["enum"]))
    if spec.get("type") == "integer":
        return f"a whole number from {spec.get('minimum')} to {spec.get('maximum')}"
    parts = [spec.get("description", "text")]
    if "pattern" in spec:
        parts.append(f"(pattern {spec['pattern']})")
    if "maxLength" in spec:
        parts.append(f"(at most {spec['maxLength']} characters)")
    return " ".join(parts)
