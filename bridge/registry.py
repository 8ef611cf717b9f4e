"""The seed's public API, importable here forever: the SmartGridready commhandler's
`shared_client` names (`register_shared_client`, `unregister_shared_client`,
`ModbusClientWrapper`) over an injectable `ClientRegistry`. The implementation
lives in `bridge.modbus.registry`."""

from bridge.core.transport import SerialLine, TcpEndpoint, Transport
from bridge.modbus.registry import (
    ClientRegistry,
    ModbusClientWrapper,
    default_registry,
    register_shared_client,
    register_shared_tcp_client,
    unregister_shared_client,
)

__all__ = ["ClientRegistry", "ModbusClientWrapper", "SerialLine", "TcpEndpoint", "Transport",
           "default_registry", "register_shared_client", "register_shared_tcp_client",
           "unregister_shared_client"]
