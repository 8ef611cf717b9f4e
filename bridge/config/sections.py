"""The config file's service sections: mqtt (and its tls), bridge, homeassistant,
metrics and bus (config.md)."""

from __future__ import annotations

import ssl
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    Field,
    PositiveFloat,
    SecretStr,
    model_validator,
)

from bridge.config import rules
from bridge.config.fields import (
    STRICT_KEYS,
    IpPort,
    MqttProtocol,
    Text,
    TopicPrefix,
    checked,
    raise_problems,
)
from bridge.core.instances import DEFAULT_INSTANCE, instance_problem


class TlsSettings(BaseModel):
    model_config = STRICT_KEYS

    ca_file: str | None = None
    """CA certificates to verify the broker with; null: the system's."""
    cert_file: str | None = None
    """Client certificate (PEM), for brokers that authenticate clients by certificate."""
    key_file: str | None = None
    """The client certificate's private key, unless cert_file contains it."""
    insecure: bool = False
    """Do not check the broker's host name against its certificate (testing only)."""

    @model_validator(mode="after")
    def _key_needs_cert(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise_problems("TlsSettings", [(("key_file",), "needs cert_file")])
        if problems := _tls_file_problems(self):
            raise_problems("TlsSettings", problems)
        return self


def _tls_file_problems(tls: TlsSettings) -> list[rules.Problem]:
    """Load the files now, as the MQTT link will: a missing or wrong file is a config
    error naming the field at `check-config`, not a traceback after start."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    found: list[rules.Problem] = []
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            found.append((("ca_file",), f"{tls.ca_file}: {_file_problem(exc)}"))
    if tls.cert_file is not None:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            where = "key_file" if tls.key_file is not None and isinstance(exc, ssl.SSLError) \
                and "KEY" in str(exc).upper() else "cert_file"
            found.append(((where,), f"{getattr(tls, where)}: {_file_problem(exc)}"))
    return found


def _file_problem(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a usable PEM certificate or key ({exc.reason or exc})"
    return exc.strerror or str(exc)


class MqttSettings(BaseModel):
    model_config = STRICT_KEYS

    host: Text = "localhost"
    port: IpPort = 1883
    username: str | None = None
    password: SecretStr | None = None
    """Never logged; best set from the environment: BRIDGE_MQTT__PASSWORD."""
    client_id: Annotated[str, checked(rules.client_id_problem)] = "modbus-bridge"
    base_topic: TopicPrefix = "modbus"
    reply_prefix: TopicPrefix | None = "replies"
    """MQTT v5 replies (a command's Response Topic) are published only under
    <reply_prefix>/, never under the base topic or the discovery prefix; null: no v5
    replies. Give each user its own subtree in the broker's ACL (replies/%u/#)."""
    protocol: MqttProtocol = "5"
    qos: Annotated[int, Field(ge=0, le=2)] = 1
    keepalive: Annotated[int, Field(ge=1, le=65535)] = 30
    """Seconds."""
    per_datapoint_topics: bool = True
    """Also publish each value alone on <base>/<device>/<datapoint>."""
    tls: TlsSettings | None = None
    reconnect_min: PositiveFloat = 1.0
    """Seconds before the first reconnect; doubled after each failure up to reconnect_max."""
    reconnect_max: PositiveFloat = 60.0
    inbox_size: Annotated[int, Field(ge=100)] = 20000
    """Messages received but not yet taken up. A flood faster than the bridge answers
    (~1,000 commands/s) waits here; beyond it commands are dropped unanswered and
    counted in the log, so memory stays bounded (~8 KB a message)."""

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.reconnect_min > self.reconnect_max:
            raise_problems("MqttSettings", [(("reconnect_max",), "must be >= reconnect_min")])
        return self


class BridgeSettings(BaseModel):
    model_config = STRICT_KEYS

    instance: Annotated[str, checked(instance_problem)] | None = None
    """Name of this bridge when several share one broker and base topic: its own
    topics move to <base>/bridge/<instance>/...; device topics stay flat. null: a
    lone bridge, plain <base>/bridge/... topics, known as "main" (HA ids, info)."""

    @property
    def instance_id(self) -> str:
        """The name used in bridge/info and Home Assistant ids."""
        return self.instance or DEFAULT_INSTANCE


class HomeAssistantSettings(BaseModel):
    model_config = STRICT_KEYS

    discovery: bool = False
    """Publish Home Assistant MQTT discovery configs (docs/homeassistant.md)."""
    prefix: TopicPrefix = "homeassistant"
    """Home Assistant's discovery prefix."""
    status_topic: TopicPrefix | None = None
    """Where Home Assistant announces itself (birth message); null: <prefix>/status."""

    @property
    def birth_topic(self) -> str:
        return self.status_topic or f"{self.prefix}/status"


class MetricsSettings(BaseModel):
    model_config = STRICT_KEYS

    port: IpPort | None = None
    """Serve Prometheus metrics on http://<host>:<port>/metrics; null: off."""
    host: Text = "127.0.0.1"
    """Address to bind; loopback by default (the metrics carry no secrets, but a
    scrape from elsewhere is a decision to make, not a default)."""


class BusSettings(BaseModel):
    model_config = STRICT_KEYS

    queue_size: Annotated[int, Field(ge=1)] = 256
    """Commands and polls waiting per port; beyond it commands are answered busy."""
    command_deadline: PositiveFloat = 10.0
    """Seconds a command may wait for its bus, unless its MQTT v5 message expiry says."""
    backoff_max: PositiveFloat = 60.0
    """Longest pause, in seconds, between attempts to reopen a port or reach a dead unit."""
