"""The configuration (config.md): one YAML file, overridable from the environment.

The only module that imports pydantic_settings. `load_config()` reads the file,
lays `BRIDGE_*` environment variables over it (`BRIDGE_MQTT__HOST=broker`;
priority init > environment > file) and validates. Every problem found becomes
one `(field path, message)` of a single `ConfigError`, with paths as the user
writes them (`devices[2].datapoints[0].type`). The sections are the models of
`models`, their cross-field rules the pure functions of `rules`; the file itself is
read by `yaml_file`.
A `Config` that exists is valid and frozen; `DeviceSettings.points()` turns a
device into the self-validating vocabulary of `points`.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    Field,
    NonNegativeFloat,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bridge.config import rules
from bridge.config.eid import BASE_DIR as EID_BASE_DIR
from bridge.config.fields import check_list, raise_problems
from bridge.config.models import (
    BridgeSettings,
    BusSettings,
    DatapointSettings,
    DeviceLink,
    DeviceSettings,
    HomeAssistantEntity,
    HomeAssistantSettings,
    MetricsSettings,
    MqttSettings,
    SerialSettings,
    TcpSettings,
    TlsSettings,
)
from bridge.config.yaml_file import read_yaml
from bridge.core.errors import ConfigError

ENV_PREFIX = "BRIDGE_"
DEFAULT_PATH = "bridge.yaml"

# What `Config()` reads besides its init arguments: the file's data and the
# environment, set by `load_config`/`validate_config` for the one construction.
_SOURCES: ContextVar[tuple[Mapping[str, Any], Mapping[str, str] | None]] = ContextVar(
    "bridge_config_sources", default=({}, None))


class EnvironmentSource(EnvSettingsSource):
    """`BRIDGE_*` variables from a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k if self.case_sensitive else k.lower(): v for k, v in self._environ.items()}


class ConfigFileSource(InitSettingsSource):
    """The parsed YAML file, below the environment."""


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True, title="modbus-mqtt-bridge configuration")

    mqtt: MqttSettings = MqttSettings()
    bridge: BridgeSettings = BridgeSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    health_interval: NonNegativeFloat = 60.0
    """Seconds between <base>/bridge/health messages; 0: off."""
    metrics: MetricsSettings = MetricsSettings()
    bus: BusSettings = BusSettings()
    devices: list[DeviceSettings] = Field(json_schema_extra={"minItems": 1})

    @field_validator("devices", mode="wrap")
    @classmethod
    def _devices(cls, value: object, handler: ValidatorFunctionWrapHandler) -> Any:
        if value == []:
            raise_problems(cls.__name__, [((), "at least one device is required")])
        return check_list(value, handler, cls.__name__, DeviceLink, rules.device_list_problems)

    @model_validator(mode="after")
    def _prefixes(self) -> Config:
        if problems := rules.prefix_problems(self.mqtt.base_topic, self.mqtt.reply_prefix,
                                             self.homeassistant.prefix):
            raise_problems(type(self).__name__, problems)
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env file, no secrets dir: the YAML file and the environment are the contract.
        data, environ = _SOURCES.get()
        if environ is not None:
            env_settings = EnvironmentSource(settings_cls, environ)
        return init_settings, env_settings, ConfigFileSource(settings_cls, dict(data))

    def redacted_dict(self) -> dict[str, Any]:
        """The config as plain data, secrets masked: safe to log or publish."""
        return self.model_dump(mode="json")


# -- loading ----------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file, with `BRIDGE_*` variables from `env`
    (default os.environ) over it. Path default: $BRIDGE_CONFIG, else ./bridge.yaml.
    Raises ConfigError listing every problem found."""
    environ = os.environ if env is None else env
    if path is None:
        path = environ.get(ENV_PREFIX + "CONFIG") or DEFAULT_PATH
    data = read_yaml(path)
    # An EID file named in the config is found relative to the config file.
    token = EID_BASE_DIR.set(os.path.dirname(os.path.abspath(path)))
    try:
        return _build(data, environ)
    finally:
        EID_BASE_DIR.reset(token)


def validate_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed file data; unlike load_config, no environment unless
    `env` is given (tests stay independent of the caller's environment)."""
    if not isinstance(data, Mapping):
        raise ConfigError([("", f"the config must be a mapping, not {type(data).__name__}")])
    return _build(data, env or {})


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, for editors (`bridge schema`)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **Config.model_json_schema()}


def _build(data: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    token = _SOURCES.set((data, environ))
    try:
        return Config()  # type: ignore[call-arg]  # devices come from the sources
    except ValidationError as exc:
        raise ConfigError(_problems(exc, environ)) from None
    except SettingsError as exc:  # BRIDGE_<SECTION> holding something that is not JSON
        field = re.search(r'field "([^"]+)"', str(exc))
        if field is None:
            raise ConfigError([("", f"environment: {exc}")]) from None
        name = ENV_PREFIX + field.group(1).upper()
        raise ConfigError([(field.group(1), f"environment variable {name} must be JSON"
                                            f" ({exc.__cause__ or exc})")]) from None
    finally:
        _SOURCES.reset(token)


# -- errors -------------------------------------------------------------------------


def _problems(exc: ValidationError, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """pydantic's errors as (field path, message), in the words of the config file."""
    env_names = {k.upper() for k in environ}
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        loc, message = tuple(error["loc"]), error["msg"].removeprefix("Value error, ")
        if loc and loc[-1] == "[key]":  # a dict key (value maps): name the key itself
            loc, message = loc[:-1], f"key: {message}"
        if error["type"] == "extra_forbidden" and isinstance(loc[-1], str):
            message = _unknown_key(loc)
        elif error["type"] == "missing":
            message = "required"
        elif error["type"] == "string_type" and isinstance(error["input"], bool | int | float):
            # Never echo the input: it may be a password.
            message += (" (YAML reads unquoted on/off/yes/no/true/false as booleans: quote it)"
                        if isinstance(error["input"], bool) else
                        " (YAML read a number here: quote it)")
        for depth in range(len(loc), 0, -1):
            name = ENV_PREFIX + "__".join(str(part) for part in loc[:depth]).upper()
            if name in env_names:
                message += f" (from environment variable {name})"
                break
        problems.append((format_path(loc), message))
    return problems


def format_path(loc: Sequence[str | int]) -> str:
    """("devices", 2, "datapoints", 0, "type") -> "devices[2].datapoints[0].type"."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


def _unknown_key(loc: Sequence[str | int]) -> str:
    key, allowed = str(loc[-1]), _fields_at(loc[:-1])
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r}" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")


def _fields_at(loc: Sequence[str | int]) -> list[str]:
    """The keys allowed at `loc` (following the models' annotations)."""
    node: Any = Config
    for part in loc:
        node = _without_none(node)
        if isinstance(part, int) and get_origin(node) is list:
            node = get_args(node)[0]
        elif isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = node.model_fields[str(part)].annotation
        else:
            return []
    node = _without_none(node)
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) \
        else []


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


__all__ = [
    "BridgeSettings", "BusSettings", "Config", "DatapointSettings", "DeviceLink",
    "DeviceSettings", "HomeAssistantEntity", "HomeAssistantSettings", "MetricsSettings",
    "MqttSettings", "SerialSettings", "TcpSettings", "TlsSettings", "config_json_schema",
    "format_path", "load_config", "read_yaml", "validate_config",
]
