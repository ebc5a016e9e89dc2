"""streamer.source=dcgm-exporter: each streamer pod scrapes its own node's dcgm-exporter.

The node's address comes from the downward API (HOST_IP, status.hostIP) and STREAM_SOURCE names it
as $(HOST_IP), which Kubernetes expands only from a variable defined earlier in the list. No CSV
volume, no hostNetwork; with network policies the streamer may reach the exporter's port.
"""
import pytest

from tests.chart.conftest import env_of

EXPORTER = ("--set", "streamer.source=dcgm-exporter")
# Settings that only a CSV replay (or NVML) gets.
REPLAY_ONLY = {"STREAM_RATE", "STREAM_LOOP", "STREAM_TIMESTAMPS", "STREAM_ONLY_HOST",
               "STREAM_NVML_INTERVAL", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}
EXPORTER_ONLY = {"HOST_IP", "STREAM_INTERVAL", "STREAM_SCRAPE_TIMEOUT", "STREAM_METRICS"}


def _pod(docs) -> dict:
    return docs.one("DaemonSet", "streamer")["spec"]["template"]["spec"]


def _env(docs) -> dict:
    return env_of(_pod(docs)["containers"][0])


def _names(docs) -> list[str]:
    return [e["name"] for e in _pod(docs)["containers"][0]["env"]]


def _egress_ports(policy: dict) -> set:
    return {port.get("port") for rule in policy["spec"].get("egress", []) for port in rule.get("ports", [])}


def _streamer_egress(docs) -> list[dict]:
    return docs.one("NetworkPolicy", "streamer")["spec"].get("egress", [])


def test_reads_the_nodes_exporter_by_default(helm):
    docs = helm(*EXPORTER)
    env = _env(docs)
    assert env["HOST_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert env["STREAM_SOURCE"] == "http://$(HOST_IP):9400/metrics"
    # $(HOST_IP) is expanded only when HOST_IP comes first.
    names = _names(docs)
    assert names.index("HOST_IP") < names.index("STREAM_SOURCE")
    assert (env["STREAM_INTERVAL"], env["STREAM_SCRAPE_TIMEOUT"]) == ("15", "5")
    # Empty streamer.dcgmExporter.metrics leaves the streamer's own default (DCGM_FI_* and DCGM_EXP_*).
    assert "STREAM_METRICS" not in env
    # A live source is not throttled, replayed or restamped, nor partitioned by host name.
    assert not REPLAY_ONLY & set(env)
    # The batching settings still apply.
    assert (env["STREAM_WORKERS"], env["STREAM_BATCH_SIZE"], env["STREAM_REORDER_WINDOW"]) == ("2", "5000", "100000")
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "secretKeyRef" in env["CELERY_BROKER_URL"] and "DATABASE_URL" not in env


def test_no_host_network_and_no_csv_volume(helm):
    docs = helm(*EXPORTER)
    pod = _pod(docs)
    assert not pod.get("hostNetwork") and "hostPort" not in str(pod)
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert "runtimeClassName" not in pod
    assert not docs.of("ConfigMap", "streamer") and not docs.of("PersistentVolumeClaim", "streamer")
    assert "checksum/csv" not in docs.one("DaemonSet", "streamer")["spec"]["template"]["metadata"].get("annotations", {})


def test_csv_values_are_ignored_in_exporter_mode(helm):
    docs = helm(*EXPORTER, "--set-json", 'streamer.csvData="a,b\\n1,2\\n"', "--set", "streamer.existingConfigMap=csv",
                "--set", "streamer.persistence.enabled=true")
    assert _env(docs)["STREAM_SOURCE"] == "http://$(HOST_IP):9400/metrics"
    assert _pod(docs)["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert not docs.of("ConfigMap", "streamer") and not docs.of("PersistentVolumeClaim", "streamer")


def test_runs_on_gpu_nodes(helm):
    pod = _pod(helm(*EXPORTER, "--set", "streamer.nodeSelector.pool=gpu"))
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "pool": "gpu"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    # ... unless told otherwise.
    pod = _pod(helm(*EXPORTER, "--set-json", "streamer.dcgmExporter.nodeSelector=null",
                    "--set-json", "streamer.dcgmExporter.tolerations=[]"))
    assert "nodeSelector" not in pod and "tolerations" not in pod


@pytest.mark.parametrize("args, url", [
    (["--set", "streamer.dcgmExporter.port=9500"], "http://$(HOST_IP):9500/metrics"),
    (["--set", "streamer.dcgmExporter.path=/dcgm/metrics"], "http://$(HOST_IP):9400/dcgm/metrics"),
    (["--set", "streamer.dcgmExporter.scheme=https"], "https://$(HOST_IP):9400/metrics"),
    (["--set", "streamer.dcgmExporter.scheme=https", "--set", "streamer.dcgmExporter.port=443",
      "--set", "streamer.dcgmExporter.path=/"], "https://$(HOST_IP):443/"),
])
def test_custom_port_path_and_scheme(helm, args, url):
    assert _env(helm(*EXPORTER, *args))["STREAM_SOURCE"] == url


def test_ci_scenario(helm):
    docs = helm.example("ci-dcgm-exporter")
    pod = _pod(docs)
    env = env_of(pod["containers"][0])
    assert env["STREAM_SOURCE"] == "https://$(HOST_IP):9443/dcgm/metrics"
    assert (env["STREAM_INTERVAL"], env["STREAM_SCRAPE_TIMEOUT"]) == ("30", "2.5")
    assert env["STREAM_METRICS"] == "DCGM_FI_DEV_.*|DCGM_FI_PROF_.*"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "topology.kubernetes.io/zone": "zone-a"}
    assert {"ports": [{"port": 9443, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.0.0.0/16"}}, {"ipBlock": {"cidr": "fd00:10::/64"}}]} in _streamer_egress(docs)


@pytest.mark.parametrize("args, interval, timeout", [
    # Helm reads numbers in values files as floats: printed as they are, 1000000 would be "1e+06".
    (["--set-json", "streamer.dcgmExporter.interval=1000000", "--set-json", "streamer.dcgmExporter.scrapeTimeout=60"],
     "1000000", "60"),
    (["--set-json", "streamer.dcgmExporter.interval=60.0"], "60", "5"),
    # `--set x=0.5` passes a string, which the schema accepts as it does for streamer.rate.
    (["--set", "streamer.dcgmExporter.interval=0.5", "--set", "streamer.dcgmExporter.scrapeTimeout=0.25"], "0.5", "0.25"),
])
def test_whole_numbers_render_as_integers(helm, args, interval, timeout):
    env = _env(helm(*EXPORTER, *args))
    assert (env["STREAM_INTERVAL"], env["STREAM_SCRAPE_TIMEOUT"]) == (interval, timeout)


def test_port_from_a_values_file_renders_as_an_integer(helm, tmp_path):
    # (One file per render: renders are cached by their arguments.)
    too_big, ok = tmp_path / "too-big.yaml", tmp_path / "ok.yaml"
    too_big.write_text("streamer:\n  source: dcgm-exporter\n  dcgmExporter:\n    port: 1000000\n")
    # Out of range: the schema stops it before it could print as 1e+06.
    assert "port" in helm.fails("-f", str(too_big))
    ok.write_text("streamer:\n  source: dcgm-exporter\n  dcgmExporter:\n    port: 65000\n")
    assert _env(helm("-f", str(ok)))["STREAM_SOURCE"] == "http://$(HOST_IP):65000/metrics"


def test_network_policy_lets_the_streamer_reach_the_exporter_port(helm):
    docs = helm(*EXPORTER, "--set", "networkPolicy.enabled=true")
    egress = _streamer_egress(docs)
    # The node's IP is no pod: the port, to any address unless nodeCIDRs narrows it.
    assert {"ports": [{"port": 9400, "protocol": "TCP"}]} in egress
    # DNS and RabbitMQ are still allowed; nothing else.
    assert len(egress) == 3
    assert {"port": 53, "protocol": "UDP"} in egress[0]["ports"]
    assert egress[1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "mq"
    # Only the streamer's policy gets it.
    for policy in docs.of("NetworkPolicy"):
        if policy["metadata"]["labels"]["app.kubernetes.io/component"] != "streamer":
            assert 9400 not in _egress_ports(policy), policy["metadata"]["name"]
    egress = _streamer_egress(helm(*EXPORTER, "--set", "networkPolicy.enabled=true",
                                   "--set", "streamer.dcgmExporter.port=9500",
                                   "--set", "streamer.dcgmExporter.nodeCIDRs={192.168.0.0/24}"))
    assert {"ports": [{"port": 9500, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "192.168.0.0/24"}}]} in egress


def test_network_policy_without_egress_restriction(helm):
    policy = helm(*EXPORTER, "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.policyTypes={Ingress}").one(
        "NetworkPolicy", "streamer")
    assert policy["spec"]["policyTypes"] == ["Ingress"] and "egress" not in policy["spec"]


@pytest.mark.parametrize("name", ["default", "custom-csv", "streamer-only", "ci-nvml", "ci-streamer-pvc",
                                  "ci-streamer-configmap", "seed-streamer", "seed-security"])
def test_other_modes_get_none_of_it(helm, name):
    docs = helm() if name == "default" else helm.example(name)
    env = _env(docs)
    assert not EXPORTER_ONLY & set(env), name
    assert {"STREAM_RATE", "STREAM_LOOP", "STREAM_TIMESTAMPS"} <= set(env), name
    assert "$(HOST_IP)" not in str(env.get("STREAM_SOURCE")), name
    for policy in docs.of("NetworkPolicy", "streamer"):
        assert 9400 not in _egress_ports(policy), name


def test_exporter_values_do_not_change_other_modes(helm):
    changed = ("--set", "streamer.dcgmExporter.port=9500", "--set", "streamer.dcgmExporter.interval=60",
               "--set", "streamer.dcgmExporter.metrics=DCGM_FI_DEV_.*", "--set", "streamer.dcgmExporter.nodeCIDRs={10.0.0.0/8}",
               "--set", "networkPolicy.enabled=true")
    for mode in (("--set", "streamer.source=csv"), ("--set", "streamer.source=nvml")):
        before = helm(*mode, "--set", "networkPolicy.enabled=true")
        after = helm(*mode, *changed)
        for kind in ("DaemonSet", "NetworkPolicy"):
            assert before.one(kind, "streamer") == after.one(kind, "streamer"), (mode, kind)


@pytest.mark.parametrize("args, message", [
    (["--set", "streamer.source=prometheus"], "source"),
    (["--set", "streamer.dcgmExporter.scheme=ftp"], "scheme"),
    (["--set", "streamer.dcgmExporter.port=0"], "port"),
    (["--set", "streamer.dcgmExporter.port=http"], "port"),
    (["--set", "streamer.dcgmExporter.path=metrics"], "path"),
    (["--set", "streamer.dcgmExporter.interval=0"], "interval"),
    (["--set", "streamer.dcgmExporter.scrapeTimeout=0.0"], "scrapeTimeout"),
    (["--set", "streamer.dcgmExporter.nodeCIDRs={10.0.0.1}"], "nodeCIDRs"),
    (["--set", "streamer.dcgmExporter.intervall=30"], "intervall"),
])
def test_schema_rejects_bad_exporter_values(helm, args, message):
    assert message in helm.fails(*args)


def test_readme_example(helm):
    docs = helm(*EXPORTER, "--set", "streamer.dcgmExporter.port=9500", "--set", "streamer.dcgmExporter.interval=30",
                "--set-string", "streamer.dcgmExporter.metrics=DCGM_FI_DEV_.*", "--set", "networkPolicy.enabled=true")
    env = _env(docs)
    assert env["STREAM_SOURCE"] == "http://$(HOST_IP):9500/metrics"
    assert (env["STREAM_INTERVAL"], env["STREAM_METRICS"]) == ("30", "DCGM_FI_DEV_.*")
    assert {"ports": [{"port": 9500, "protocol": "TCP"}]} in _streamer_egress(docs)
