"""Prometheus metrics on http://<metrics.host>:<metrics.port>/metrics (off by default).

Read at scrape time from the same counters as the health topic (a custom collector,
so nothing is counted twice). Names follow Prometheus practice: `modbus_bridge_`
prefix, base units (seconds), `_total` counters. Labels are ports, devices and
error codes only: never datapoints, whose number is unbounded.

    modbus_bridge_build_info{version}
    modbus_bridge_start_time_seconds
    modbus_bridge_mqtt_connected, modbus_bridge_mqtt_connects_total,
    modbus_bridge_mqtt_messages_published_total, ..._dropped_total, ..._received_total
    modbus_bridge_port_requests_total{port}, modbus_bridge_port_errors_total{port,code},
    modbus_bridge_port_transaction_duration_seconds{port} (histogram),
    modbus_bridge_port_queue_depth{port}, modbus_bridge_port_reopens_total{port}
    modbus_bridge_device_up{device}, modbus_bridge_device_last_success_timestamp_seconds,
    modbus_bridge_device_requests_total{device}, modbus_bridge_device_errors_total{device,code}

The HTTP side is a small asyncio server in the bridge's own loop (no thread reading
counters while the loop changes them); it answers GET /metrics and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bridge import __version__
from bridge.features.health import Sources

log = logging.getLogger(__name__)

P = "modbus_bridge_"
REQUEST_LIMIT = 8192  # bytes of request line and headers we read before answering


class BridgeCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self.src = sources

    def collect(self) -> Iterator[Metric]:
        src = self.src
        info = InfoMetricFamily(P + "build", "Version of the running bridge")
        info.add_metric([], {"version": __version__})
        yield info
        yield GaugeMetricFamily(P + "start_time_seconds", "Start time, seconds since the epoch",
                                value=time.time() - src.uptime())
        yield GaugeMetricFamily(P + "mqtt_connected", "1 while connected to the broker",
                                value=1 if src.link.connected.is_set() else 0)
        m = src.mqtt
        for name, value, what in (("mqtt_connects", src.link.connects, "Connections made"),
                                  ("mqtt_messages_published", m.published, "Messages sent"),
                                  ("mqtt_messages_dropped", m.dropped,
                                   "Messages not sent (disconnected)"),
                                  ("mqtt_messages_received", m.received, "Messages received")):
            yield CounterMetricFamily(P + name, what, value=value)
        yield from self._ports()
        yield from self._devices()

    def _ports(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(P + "port_requests", "Modbus transactions attempted",
                                       labels=["port"])
        errors = CounterMetricFamily(P + "port_errors", "Failed requests by error code",
                                     labels=["port", "code"])
        duration = HistogramMetricFamily(P + "port_transaction_duration_seconds",
                                         "Time from sending a request to its outcome",
                                         labels=["port"], unit="")
        depth = GaugeMetricFamily(P + "port_queue_depth", "Transactions waiting",
                                  labels=["port"])
        reopens = CounterMetricFamily(P + "port_reopens", "Times the port was opened again",
                                      labels=["port"])
        for name, bus in self.src.ports.items():
            stats = bus.stats
            requests.add_metric([name], stats.requests)
            for code, count in sorted(stats.errors.items()):
                errors.add_metric([name, code], count)
            duration.add_metric([name], [(_le(b), n) for b, n in stats.cumulative_buckets()],
                                sum_value=stats.duration_sum)
            depth.add_metric([name], bus.queue_depth)
            reopens.add_metric([name], stats.reopens)
        yield from (requests, errors, duration, depth, reopens)

    def _devices(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(P + "device_up", "1 while the device answers (availability)",
                               labels=["device"])
        last = GaugeMetricFamily(P + "device_last_success_timestamp_seconds",
                                 "Last successful transaction, seconds since the epoch",
                                 labels=["device"])
        requests = CounterMetricFamily(P + "device_requests", "Modbus transactions attempted",
                                       labels=["device"])
        errors = CounterMetricFamily(P + "device_errors", "Failed requests by error code",
                                     labels=["device", "code"])
        for dev_id, runner in self.src.runners.items():
            stats = runner.device.bus.stats.unit(runner.device.unit)
            up.add_metric([dev_id], 1 if runner.online else 0)
            if stats.last_success is not None:
                last.add_metric([dev_id], stats.last_success)
            requests.add_metric([dev_id], stats.requests)
            for code, count in sorted(stats.errors.items()):
                errors.add_metric([dev_id, code], count)
        yield from (up, last, requests, errors)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class MetricsServer:
    def __init__(self, sources: Sources, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BridgeCollector(sources))
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; a port that cannot be bound is logged, and the bridge runs on without
        metrics (bridging matters more than being watched)."""
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            log.error("metrics: cannot listen on %s:%d: %s", self.host, self.port,
                      exc.strerror or exc)
            return
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > REQUEST_LIMIT:
                raise ValueError("request too large")
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method not in ("GET", "HEAD"):
                status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path.split("?", 1)[0] != "/metrics":
                status, body, kind = "404 Not Found", b"see /metrics\n", "text/plain"
            else:
                status, body, kind = "200 OK", generate_latest(self.registry), \
                    CONTENT_TYPE_LATEST
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode() + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that does not speak HTTP gets nothing
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
