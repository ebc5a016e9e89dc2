"""The seed README's values land where they should in the rendered objects."""
import pytest
from django.conf import settings

from tests.chart.conftest import env_of
from tests.chart.examples import EXAMPLES_DIR, all_examples

COMPONENTS = {"streamer": "streamer", "collector": "collector", "apiGateway": "api-gateway", "history": "history"}


@pytest.mark.parametrize("name", sorted(all_examples()))
def test_every_example_renders(helm, name):
    docs = helm.example(name)
    assert docs, name


def test_streamer_workers_and_rate_reach_the_container(helm):
    docs = helm.example("streamer-only")
    container = helm.example("streamer-only").one("DaemonSet", "streamer")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert container["args"] == ["stream"]
    assert env["STREAM_WORKERS"] == "4"
    assert float(env["STREAM_RATE"]) == 20.0
    assert docs.one("DaemonSet", "streamer")


def test_streamer_defaults(helm):
    env = env_of(helm().one("DaemonSet", "streamer")["spec"]["template"]["spec"]["containers"][0])
    assert env["STREAM_WORKERS"] == "2" and float(env["STREAM_RATE"]) == 10.0
    assert env["STREAM_LOOP"] == "true" and env["STREAM_TIMESTAMPS"] == "now"
    assert env["STREAM_REORDER_WINDOW"] == "100000"
    # The stream command's defaults (config/settings.py), as the benchmarks measure them.
    assert env["STREAM_BATCH_SIZE"] == str(settings.STREAM_BATCH_SIZE) == "5000"
    assert float(env["STREAM_FLUSH_INTERVAL"]) == settings.STREAM_FLUSH_INTERVAL
    assert env["LOG_FORMAT"] == "json"
    # The image's bundled sample: no STREAM_SOURCE, no ConfigMap, no partition by node.
    assert "STREAM_SOURCE" not in env and "STREAM_ONLY_HOST" not in env
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_large_streamer_numbers_reach_the_container_as_integers(helm):
    # Helm reads numbers in values files as floats: printed as they are, 2000000 would arrive as "2e+06".
    rendered = helm("--set-json", "streamer.reorderWindow=2000000", "--set-json", "streamer.batchSize=1000000")
    env = env_of(rendered.one("DaemonSet", "streamer")["spec"]["template"]["spec"]["containers"][0])
    assert (env["STREAM_REORDER_WINDOW"], env["STREAM_BATCH_SIZE"]) == ("2000000", "1000000")


def test_custom_csv_from_set_file_becomes_a_configmap_file(helm):
    docs = helm.example("custom-csv")
    csv = (EXAMPLES_DIR / "my-data.csv").read_text()
    configmap = docs.one("ConfigMap", "streamer")
    assert configmap["data"]["telemetry.csv"] == csv
    pod = docs.one("DaemonSet", "streamer")["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    assert env["STREAM_SOURCE"] == "/data/telemetry.csv"
    assert {"name": "data", "configMap": {"name": configmap["metadata"]["name"]}} in pod["volumes"]
    # A user's CSV is partitioned by node unless streamer.partition=none.
    assert env["STREAM_ONLY_HOST"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_csv_changes_roll_the_streamer(helm):
    a = helm("--set-json", 'streamer.csvData="a,b\\n1,2\\n"').one("DaemonSet", "streamer")
    b = helm("--set-json", 'streamer.csvData="a,b\\n1,3\\n"').one("DaemonSet", "streamer")
    key = "checksum/csv"
    assert a["spec"]["template"]["metadata"]["annotations"][key] != b["spec"]["template"]["metadata"]["annotations"][key]


@pytest.mark.parametrize("partition, only_host", [("none", False), ("node", True)])
def test_partition_switch(helm, partition, only_host):
    env = env_of(helm("--set", f"streamer.partition={partition}").one("DaemonSet", "streamer")
                 ["spec"]["template"]["spec"]["containers"][0])
    assert ("STREAM_ONLY_HOST" in env) is only_host


def test_existing_configmap_is_streamed_as_a_folder(helm):
    docs = helm.example("ci-streamer-configmap")
    pod = docs.one("DaemonSet", "streamer")["spec"]["template"]["spec"]
    assert env_of(pod["containers"][0])["STREAM_SOURCE"] == "/data"
    assert {"name": "data", "configMap": {"name": "my-telemetry-csv"}} in pod["volumes"]
    assert not docs.of("ConfigMap", "streamer")


def test_streamer_pvc(helm):
    docs = helm.example("ci-streamer-pvc")
    pvc = docs.one("PersistentVolumeClaim", "streamer")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert pvc["spec"]["storageClassName"] == "nfs-client"
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    pod = docs.one("DaemonSet", "streamer")["spec"]["template"]["spec"]
    assert env_of(pod["containers"][0])["STREAM_SOURCE"] == "/data/exports/2025-07"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"], "readOnly": True}} in pod["volumes"]


def test_nvml_mode_targets_gpu_nodes(helm):
    pod = helm.example("ci-nvml").one("DaemonSet", "streamer")["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    assert env["STREAM_SOURCE"] == "nvml" and float(env["STREAM_NVML_INTERVAL"]) == 5.0
    assert "STREAM_ONLY_HOST" not in env
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "topology.kubernetes.io/zone": "zone-a"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["runtimeClassName"] == "nvidia"


@pytest.mark.parametrize("example, minimum, maximum, cpu", [
    ("collector-ha", 1, 3, 80), ("production", 2, 5, 70), ("seed-collector", 1, 3, 80)])
def test_collector_autoscaling_gives_an_hpa_with_those_bounds(helm, example, minimum, maximum, cpu):
    docs = helm.example(example)
    hpa = docs.one("HorizontalPodAutoscaler", "collector")
    assert hpa["spec"]["minReplicas"] == minimum and hpa["spec"]["maxReplicas"] == maximum
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == cpu
    assert hpa["spec"]["scaleTargetRef"]["name"] == docs.one("Deployment", "collector")["metadata"]["name"]
    # The HPA owns the replica count.
    assert "replicas" not in docs.one("Deployment", "collector")["spec"]


def test_api_autoscaling(helm):
    docs = helm.example("production")
    hpa = docs.one("HorizontalPodAutoscaler", "api-gateway")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert "replicas" not in docs.one("Deployment", "api-gateway")["spec"]


def test_replica_counts_without_autoscaling(helm):
    docs = helm.example("development")
    assert docs.one("Deployment", "collector")["spec"]["replicas"] == 1
    assert docs.one("Deployment", "api-gateway")["spec"]["replicas"] == 1
    assert not docs.of("HorizontalPodAutoscaler")


def test_collector_defaults_are_the_settings_defaults(helm):
    env = env_of(helm().one("Deployment", "collector")["spec"]["template"]["spec"]["containers"][0])
    assert (env["COLLECTOR_GROUP_SAMPLES"], env["COLLECTOR_GROUP_WAIT_MS"], env["COLLECTOR_PREFETCH"]) == (
        str(settings.COLLECTOR_GROUP_SAMPLES), str(settings.COLLECTOR_GROUP_WAIT_MS),
        str(settings.CELERY_WORKER_PREFETCH_MULTIPLIER))


def test_collector_settings_reach_the_worker(helm):
    container = helm("--set", "collector.workers=8", "--set", "collector.maxEntriesPerGPU=0",
                     "--set", "collector.groupSamples=5000", "--set", "collector.groupWaitMs=100",
                     "--set", "collector.prefetch=50").one("Deployment", "collector")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert container["args"] == ["worker"]
    assert env["COLLECTOR_CONCURRENCY"] == "8" and env["COLLECTOR_MAX_ENTRIES_PER_GPU"] == "0"
    assert (env["COLLECTOR_GROUP_SAMPLES"], env["COLLECTOR_GROUP_WAIT_MS"], env["COLLECTOR_PREFETCH"]) == ("5000", "100", "50")
    assert container["livenessProbe"]["exec"]["command"] == [
        "python", "-m", "telemetry.ingest.collector.heartbeat", "--max-age", "60"]


def test_development_resources_from_set_string(helm):
    requests = helm.example("development").one("Deployment", "collector")["spec"]["template"]["spec"][
        "containers"][0]["resources"]["requests"]
    assert requests == {"cpu": "50m", "memory": "128Mi"}


def test_seed_default_resources(helm):
    docs = helm()
    expected = {
        ("DaemonSet", "streamer"): ({"cpu": "100m", "memory": "128Mi"}, {"cpu": "200m", "memory": "256Mi"}),
        ("Deployment", "collector"): ({"cpu": "250m", "memory": "512Mi"}, {"cpu": "500m", "memory": "1Gi"}),
        ("Deployment", "api-gateway"): ({"cpu": "150m", "memory": "256Mi"}, {"cpu": "300m", "memory": "512Mi"}),
    }
    for (kind, component), (requests, limits) in expected.items():
        resources = docs.one(kind, component)["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources == {"requests": requests, "limits": limits}


def test_ingress_hosts_and_tls(helm):
    ingress = helm.example("production").one("Ingress", "api-gateway")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/rate-limit"] == "100"
    assert ingress["spec"]["tls"] == [{"hosts": ["telemetry-api.production.com"], "secretName": "telemetry-api-tls"}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "telemetry-api.production.com"
    [path] = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    assert path["backend"]["service"]["port"] == {"name": "http"}


@pytest.mark.parametrize("example, host", [("api-ingress", "api.telemetry.local"),
                                           ("custom-installation", "telemetry-api.example.com")])
def test_set_host_alone_still_routes_slash(helm, example, host):
    docs = helm.example(example)
    ingress = docs.one("Ingress", "api-gateway")
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == host
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/", "Prefix")]
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == docs.one("Service", "api-gateway")["metadata"]["name"]


def test_no_ingress_by_default(helm):
    assert not helm().of("Ingress")


def test_api_service_and_probes(helm):
    docs = helm()
    service = docs.one("Service", "api-gateway")
    assert service["metadata"]["name"] == "telemetry-telemetry-pipeline-api-gateway"
    assert service["spec"]["ports"][0]["port"] == 80 and service["spec"]["ports"][0]["targetPort"] == "http"
    container = docs.one("Deployment", "api-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["api"]
    assert container["ports"] == [{"name": "http", "containerPort": 8081, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    env = env_of(container)
    assert env["PORT"] == "8081" and env["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    assert "localhost" in env["ALLOWED_HOSTS"].split(",") and "*" in env["ALLOWED_HOSTS"].split(",")


def test_cors_values(helm):
    env = env_of(helm.example("seed-api-gateway").one("Deployment", "api-gateway")
                 ["spec"]["template"]["spec"]["containers"][0])
    assert env["CORS_ENABLED"] == "true"
    assert env["CORS_ALLOWED_ORIGINS"] == "*"
    assert env["CORS_ALLOWED_METHODS"] == "GET,POST,OPTIONS"


def _claim_templates(docs, component):
    return docs.one("StatefulSet", component)["spec"].get("volumeClaimTemplates", [])


@pytest.mark.parametrize("example, db_size, db_class, mq_size, mq_class", [
    ("production", "100Gi", "fast-ssd", "20Gi", "fast-ssd"),
    ("custom-installation", "50Gi", None, "5Gi", None),
    ("collector-ha", "100Gi", None, "5Gi", None),
    ("seed-persistence", "50Gi", "fast-ssd", "10Gi", "standard"),
])
def test_persistence_sizes_and_classes_reach_the_pvcs(helm, example, db_size, db_class, mq_size, mq_class):
    docs = helm.example(example)
    [db] = _claim_templates(docs, "database")
    assert db["spec"]["resources"]["requests"]["storage"] == db_size
    assert db["spec"].get("storageClassName") == db_class
    assert db["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert db["metadata"]["labels"]["app.kubernetes.io/name"] == "telemetry-pipeline"
    [mq] = _claim_templates(docs, "mq")
    assert mq["spec"]["resources"]["requests"]["storage"] == mq_size
    assert mq["spec"].get("storageClassName") == mq_class


def test_mq_persistence_dir_is_the_data_mount(helm):
    sts = helm.example("seed-persistence").one("StatefulSet", "mq")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "data", "mountPath": "/var/lib/mq"} in container["volumeMounts"]
    env = env_of(container)
    assert env["RABBITMQ_MNESIA_BASE"] == "/var/lib/mq/mnesia" and env["HOME"] == "/var/lib/mq"


def test_the_bundled_broker_stores_new_classic_queues_in_version_2(helm):
    conf = helm.example("development").one("ConfigMap", "mq")["data"]["20-telemetry.conf"]
    assert "classic_queue.default_version = 2" in conf.splitlines()
    assert "consumer_timeout = 1800000" in conf.splitlines()


def test_persistence_disabled_uses_emptydir(helm):
    docs = helm.example("development")
    for component in ("database", "mq"):
        sts = docs.one("StatefulSet", component)
        assert "volumeClaimTemplates" not in sts["spec"]
        assert {"name": "data", "emptyDir": {}} in sts["spec"]["template"]["spec"]["volumes"]


def test_existing_claim_for_the_database(helm):
    sts = helm.example("ci-networkpolicy-ingress-only").one("StatefulSet", "database")
    assert "volumeClaimTemplates" not in sts["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "telemetry-postgres-data"}} in \
        sts["spec"]["template"]["spec"]["volumes"]


@pytest.mark.parametrize("key, component", sorted(COMPONENTS.items()))
def test_enabled_false_removes_every_object_of_that_component(helm, key, component):
    on = helm()
    assert on.component(component)
    off = helm("--set", f"{key}.enabled=false", "--set", "networkPolicy.enabled=true",
               "--set", "monitoring.serviceMonitor.enabled=true")
    assert not off.component(component), [d["metadata"]["name"] for d in off.component(component)]
    names = " ".join(d["metadata"]["name"] for d in off)
    assert f"-{component}" not in names.replace(f"-{component}-", "-")


def test_streamer_only_has_no_database_collector_or_api(helm):
    docs = helm.example("streamer-only")
    components = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in docs}
    assert components == {"app", "streamer", "mq"}
    assert "DATABASE_URL" not in env_of(docs.one("DaemonSet", "streamer")["spec"]["template"]["spec"]["containers"][0])


def test_api_only_keeps_database_and_broker(helm):
    docs = helm.example("api-ingress")
    assert docs.of("StatefulSet", "database") and docs.of("StatefulSet", "mq")
    assert not docs.component("collector") and not docs.component("streamer")


def test_per_component_image_tag(helm):
    docs = helm.example("upgrade-collector-tag")
    image = lambda kind, c: docs.one(kind, c)["spec"]["template"]["spec"]["containers"][0]["image"]  # noqa: E731
    assert image("Deployment", "collector") == "telemetry-pipeline:v2.0.0"
    assert image("Deployment", "api-gateway") == "telemetry-pipeline:0.1.0"
    assert image("DaemonSet", "streamer") == "telemetry-pipeline:0.1.0"


def test_pdbs(helm):
    docs = helm()
    assert docs.one("PodDisruptionBudget", "collector")["spec"]["maxUnavailable"] == 1
    assert docs.one("PodDisruptionBudget", "api-gateway")["spec"]["maxUnavailable"] == 1
    docs = helm.example("ci-no-hooks")
    assert docs.one("PodDisruptionBudget", "api-gateway")["spec"] ["minAvailable"] == 1
    assert not docs.of("PodDisruptionBudget", "collector")


def test_keda_scaled_object(helm):
    docs = helm.example("ci-keda-monitoring")
    scaled = docs.one("ScaledObject", "collector")
    assert scaled["spec"]["scaleTargetRef"]["name"] == docs.one("Deployment", "collector")["metadata"]["name"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 12)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"] == {"protocol": "amqp", "mode": "QueueLength", "queueName": "telemetry.ingest", "value": "50"}
    auth = docs.one("TriggerAuthentication", "collector")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    broker = docs.one("Secret", "mq")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "host", "name": broker["metadata"]["name"], "key": "url"}]
    # KEDA makes its own HPA: the chart renders none for the collector.
    assert not docs.of("HorizontalPodAutoscaler", "collector")
    assert "replicas" not in docs.one("Deployment", "collector")["spec"]


def test_keda_queue_follows_ingest_queue_and_external_broker(helm):
    docs = helm.example("ci-external-services")
    scaled = docs.one("ScaledObject", "collector")
    assert scaled["spec"]["triggers"][0]["metadata"]["queueName"] == "telemetry.ingest"
    auth = docs.one("TriggerAuthentication", "collector")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "host", "name": "broker-credentials", "key": "amqp-url"}]
    docs = helm("--set", "collector.keda.enabled=true", "--set", "config.ingestQueue=gpu.samples")
    assert docs.one("ScaledObject")["spec"]["triggers"][0]["metadata"]["queueName"] == "gpu.samples"
    env = env_of(docs.one("Deployment", "collector")["spec"]["template"]["spec"]["containers"][0])
    assert env["CELERY_INGEST_QUEUE"] == "gpu.samples"


def test_no_keda_by_default(helm):
    assert not ({"ScaledObject", "TriggerAuthentication"} & helm().kinds())


def test_service_monitor(helm):
    docs = helm.example("production")
    monitor = docs.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    assert endpoints["http"]["path"] == "/metrics" and endpoints["http"]["interval"] == "30s"
    assert "metrics" in endpoints  # RabbitMQ's rabbitmq_prometheus
    assert not helm().of("ServiceMonitor")


def test_grafana_dashboard(helm):
    import json
    docs = helm.example("seed-monitoring")
    configmap = docs.one("ConfigMap", "monitoring")
    assert configmap["metadata"]["name"] == "telemetry-dashboards"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["gpu-telemetry.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED"):
        assert metric in exprs
    for metric in ("telemetry_samples_stored_total", "telemetry_ingest_lag_seconds", "rabbitmq_queue_messages_ready"):
        assert metric in exprs
    assert not helm().of("ConfigMap", "monitoring")


def test_network_policies(helm):
    docs = helm.example("seed-security")
    policies = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in docs.of("NetworkPolicy")}
    assert set(policies) == {"streamer", "collector", "api-gateway", "migrations", "history", "test", "mq", "database"}
    seed_rule = {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "telemetry-pipeline"}}}],
                 "ports": [{"protocol": "TCP", "port": 8080}]}
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert seed_rule in policy["spec"]["ingress"]
        assert {"port": 53, "protocol": "UDP"} in policy["spec"]["egress"][0]["ports"]
    # Only the collector, the API, the migration Job and the history CronJob reach PostgreSQL.
    db_from = policies["database"]["spec"]["ingress"][0]["from"]
    assert {f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in db_from} == \
        {"collector", "api-gateway", "migrations", "history"}
    assert not helm().of("NetworkPolicy")


def test_mq_autoscaling_from_the_seed_snippet_is_read_as_collector_autoscaling(helm):
    docs = helm.example("seed-collector")
    assert docs.one("HorizontalPodAutoscaler", "collector")["spec"]["maxReplicas"] == 3
    assert not docs.of("HorizontalPodAutoscaler", "mq")


def test_external_services_replace_the_bundled_ones(helm):
    docs = helm.example("ci-external-services")
    assert not docs.component("database") and not docs.component("mq")
    env = env_of(docs.one("Deployment", "collector")["spec"]["template"]["spec"]["containers"][0])
    external = docs.one("Secret", "app", suffix="-external")
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": external["metadata"]["name"], "key": "database-url"}}
    assert env["CELERY_BROKER_URL"] == {"secretKeyRef": {"name": "broker-credentials", "key": "amqp-url"}}
    assert env["SECRET_KEY"] == {"secretKeyRef": {"name": "django-secret", "key": "key"}}
    docs = helm.example("ci-external-database-secret")
    env = env_of(docs.one("Deployment", "api-gateway")["spec"]["template"]["spec"]["containers"][0])
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "telemetry-db", "key": "url"}}
    assert not docs.component("database") and not docs.component("mq")


def test_impossible_combinations_fail_with_a_message(helm):
    assert "need PostgreSQL" in helm.fails("--set", "database.enabled=false")
    assert "needs RabbitMQ" in helm.fails("--set", "mq.enabled=false")
