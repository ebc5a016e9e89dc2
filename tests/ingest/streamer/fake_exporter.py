"""A fake dcgm-exporter: a real HTTP server on 127.0.0.1 serving /metrics in dcgm-exporter's shape.

The page (`dcgm_page`) is what dcgm-exporter 3.x/4.x writes for a node (HELP and TYPE lines, gauges
and a counter, `gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`, the host label, the driver
version, pod attribution), with the few things a parser must get right: one GPU in MIG mode as two
GPU instances (GPU_I_ID, GPU_I_PROFILE), the host label spelt `Hostname` on some lines and
`hostname` (dcgm-exporter 4.5) on others, an escaped label value, a NaN, and a family of another
exporter. The server answers gzip when asked, and can be told to misbehave (`mode`) or be stopped and
started again on its port.
"""
import gzip
import http.server
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field

MODEL = "NVIDIA H100 80GB HBM3"
DRIVER = "550.54.15"


@dataclass(frozen=True)
class Device:
    """One device of the page: a whole GPU, or a MIG GPU instance of GPU `gpu`."""

    gpu: int
    uuid: str
    instance: int | None = None
    profile: str = ""


def node_devices(host: str, gpus: int = 4, mig_gpu: int | None = 3) -> list[Device]:
    """A node's devices: `gpus` GPUs, GPU `mig_gpu` (if any) split into MIG instances 1 and 2."""
    devices = []
    for gpu in range(gpus):
        uuid = f"GPU-{zlib.crc32(host.encode()):08x}-0000-4000-8000-{gpu:012x}"
        if gpu == mig_gpu:
            devices += [Device(gpu, uuid, 1, "3g.40gb"), Device(gpu, uuid, 2, "3g.40gb")]
        else:
            devices.append(Device(gpu, uuid))
    return devices


# name, type, value of device d on tick t
FIELDS = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", lambda d, t: 1980 + d),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", lambda d, t: 34 + d + t),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", lambda d, t: 250.5 + d),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", lambda d, t: 1_000_000 * (t + 1) + d),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", lambda d, t: 90 + d),
    ("DCGM_FI_DEV_FB_USED", "gauge", lambda d, t: 1024 * (d + 1)),
)
NAN_FIELD = "DCGM_FI_DEV_MEMORY_TEMP"  # NaN on every device (as a GPU without a memory sensor)


def labels(device: Device, host: str, *, host_label: str = "Hostname", pod: str = "") -> str:
    text = (f'gpu="{device.gpu}",UUID="{device.uuid}",pci_bus_id="00000000:{0x18 + device.gpu:02X}:00.0",'
            f'device="nvidia{device.gpu}",modelName="{MODEL}"')
    if device.instance is not None:
        text += f',GPU_I_PROFILE="{device.profile}",GPU_I_ID="{device.instance}"'
    text += f',{host_label}="{host}",DCGM_FI_DRIVER_VERSION="{DRIVER}"'
    if pod:
        text += f',container="main",namespace="team-a",pod="{pod}"'
    return text


def dcgm_page(host: str, devices: list[Device], tick: int = 0) -> str:
    """A node's /metrics. GPU 0 runs pod trainer-0; GPU 1's lines spell the host label `hostname` and
    carry an escaped label value (hpc_job); every device's NAN_FIELD is NaN."""
    lines = []
    for name, kind, value in FIELDS:
        lines += [f"# HELP {name} {name} of the fake exporter.", f"# TYPE {name} {kind}"]
        for d, device in enumerate(devices):
            text = labels(device, host, host_label="hostname" if device.gpu == 1 else "Hostname",
                          pod="trainer-0" if device.gpu == 0 else "")
            if device.gpu == 1:
                text += r',hpc_job="say \"hi\"\\now\nthen"'
            lines.append(f"{name}{{{text}}} {value(d, tick)}")
    lines += [f"# HELP {NAN_FIELD} Memory temperature (in C).", f"# TYPE {NAN_FIELD} gauge"]
    lines += [f"{NAN_FIELD}{{{labels(device, host)}}} NaN" for device in devices]
    lines += ["# HELP promhttp_metric_handler_errors_total Total number of internal errors.",
              "# TYPE promhttp_metric_handler_errors_total counter",
              'promhttp_metric_handler_errors_total{cause="encoding"} 0']
    return "\n".join(lines) + "\n"


def expected_values(devices: list[Device], tick: int = 0) -> dict[tuple[str, int | None, str], float]:
    """(UUID, GPU instance, metric) → value, for every finite sample of `dcgm_page`."""
    return {(device.uuid, device.instance, name): float(value(d, tick))
            for name, _, value in FIELDS for d, device in enumerate(devices)}


@dataclass
class FakeExporter:
    """`http://127.0.0.1:PORT/metrics` serving `page()`; `mode` makes it misbehave:

    "ok"; "slow" (sleeps `delay` seconds before answering); "truncated" (a Content-Length longer than
    the body, then the connection closes); "truncated-gzip" (a gzip stream cut short, its length
    right); "error" (HTTP 500); "garbage" (an HTML page with a few good lines among it).
    """

    page_for_tick: object  # tick → page text
    mode: str = "ok"
    delay: float = 0.0
    gzip_when_asked: bool = True
    requests: int = 0
    accept_encodings: list[str] = field(default_factory=list)
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> "FakeExporter":
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                exporter.requests += 1
                exporter.accept_encodings.append(self.headers.get("Accept-Encoding", ""))
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.page_for_tick(exporter.requests - 1).encode()
                mode = exporter.mode
                if mode == "slow":
                    time.sleep(exporter.delay)
                if mode == "error":
                    self.send_error(500, "exporter broken")
                    return
                if mode == "garbage":
                    body = (b"<html>\n<head><title>502 Bad Gateway</title></head>\n"
                            + body.split(b"\n", 4)[2] + b"\n" + body.split(b"\n", 4)[3] + b"\n</html>\n")
                gzipped = exporter.gzip_when_asked and "gzip" in self.headers.get("Accept-Encoding", "")
                if gzipped or mode == "truncated-gzip":
                    body = gzip.compress(body)
                if mode == "truncated-gzip":
                    body = body[: len(body) // 2]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                if gzipped or mode == "truncated-gzip":
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body) + (100 if mode == "truncated" else 0)))
                if mode == "truncated":
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                if mode == "truncated":
                    self.close_connection = True

        server = _Server(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: nothing listens on the port any more (connections are refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up on a slow answer: the write fails, as it would on dcgm-exporter


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
