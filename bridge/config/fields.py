"""Building blocks of the config models: strict model settings, reusable field types,
and the helpers that raise every cross-field problem at its own sub-field path."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, NoReturn

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from bridge.config import rules

# Frozen: the running bridge never changes its config (use model_copy(update=...)).
# Attribute docstrings become descriptions in the JSON Schema (`bridge schema`).
# No .inf/.nan anywhere: `timeout: .inf` would wait forever, `scale: .nan` poisons values.
STRICT_KEYS = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True,
                         allow_inf_nan=False)


def raise_problems(title: str, problems: Sequence[rules.Problem],
                   also: ValidationError | None = None) -> NoReturn:
    """Raise all `problems` (and `also`'s errors) at once, each at its own location.

    pydantic merges a ValidationError raised in a validator into the outer one,
    prefixing the locations, so a model-level rule can name the exact sub-field.
    """
    details: list[InitErrorDetails] = [
        {"type": PydanticCustomError(e["type"], e["msg"]), "loc": e["loc"], "input": e["input"]}
        for e in (also.errors(include_url=False) if also is not None else ())]
    details += [{"type": PydanticCustomError("config_rule", message), "loc": loc, "input": None}
                for loc, message in problems]
    raise ValidationError.from_exception_data(title, details)


def check_list(value: object, handler: ValidatorFunctionWrapHandler, title: str,
               model: type[BaseModel],
               check: Callable[[list[tuple[int, Any]]], list[rules.Problem]]) -> Any:
    """Validate a list, then run `check` across its items. When some items are invalid,
    still check those `model` accepts alone, so one run reports every problem."""
    try:
        result = handler(value)
    except ValidationError as failure:
        raise_problems(title, check(_valid_items(value, model)), failure)
    if problems := check(list(enumerate(result))):
        raise_problems(title, problems)
    return result


def _valid_items(value: object, model: type[BaseModel]) -> list[tuple[int, Any]]:
    items: list[tuple[int, Any]] = []
    for i, raw in enumerate(value if isinstance(value, list) else ()):
        if isinstance(raw, Mapping):
            try:  # unknown keys dropped: a typo elsewhere must not hide a duplicate id
                items.append((i, model.model_validate(
                    {k: v for k, v in raw.items() if k in model.model_fields})))
            except ValidationError:
                continue
    return items


def checked(problem: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        message = problem(value)
        if message is not None:
            raise PydanticCustomError("config_rule", message)
        return value
    return AfterValidator(check)


def protocol_value(value: object) -> object:
    """5, "5", 5.0, "v5" -> "5"; "3.1.1", "311", "MQTTv311" -> "3.1.1"."""
    text = str(value).strip().lower().removeprefix("mqtt").lstrip("v").replace(".", "")
    normal = {"5": "5", "50": "5", "311": "3.1.1"}.get(text)
    if normal is None:
        raise PydanticCustomError("config_rule", "expected 5 or 3.1.1")
    return normal


def upper_value(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


DeviceId = Annotated[str, checked(rules.device_id_problem)]
PointName = Annotated[str, checked(rules.point_name_problem)]
TopicPrefix = Annotated[str, checked(rules.topic_prefix_problem)]
MqttProtocol = Annotated[
    Literal["5", "3.1.1"], BeforeValidator(protocol_value),
    WithJsonSchema({"enum": [5, "5", "3.1.1"], "description": "MQTT version: 5 or 3.1.1"})]
IpPort = Annotated[int, Field(ge=1, le=65535)]
Text = Annotated[str, Field(min_length=1)]
FrameGap = Annotated[float | None, Field(ge=0)]
