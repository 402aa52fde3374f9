"""deploy/k8s: every overlay renders with kustomize, every object passes the Kubernetes schemas
(offline, ``kubernetes-validate``), and the manifests agree with the service they run: probe paths
and ports answer in the real app, every env name is a setting the service reads, the HPA's metric
is one ``/metrics`` exports (and the adapter rule serves), and the grace period covers the drain.

Marked ``deploy``: ``make test-deploy`` installs kustomize into ``.tools/`` and runs these.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import SECRET
from pydantic import ValidationError

from app.jobs.bodies import idle
from app.settings import ConfigFileError, Settings

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZE = Path(os.environ.get("KUSTOMIZE", ROOT / ".tools" / "kustomize-v5.8.0" / "kustomize"))
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes the manifests support and the newest kubernetes-validate knows.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Cancelling the calls still running at the drain deadline (JobManager cancel_grace) plus
# uvicorn's graceful shutdown (app/server.py): the least margin the grace period needs.
CLOSE_MARGIN_S = 10 + 5


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    assert KUSTOMIZE.exists(), f"{KUSTOMIZE} missing: run `make test-deploy` (installs it)"
    out = subprocess.run(
        [str(KUSTOMIZE), "build", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    objects = {name: kustomize_build(K8S / "overlays" / name) for name in OVERLAYS}
    # prod with the optional ServiceMonitor component: kustomize only takes relative paths.
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree)
    (tree / "overlays" / "ci").mkdir()
    (tree / "overlays" / "ci" / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../prod"],
                "components": ["../../components/servicemonitor"],
            }
        )
    )
    objects["prod+servicemonitor"] = kustomize_build(tree / "overlays" / "ci")
    return objects


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [agent] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return agent


def config_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    data = one(objects, "ConfigMap")["data"]["config.yaml"]
    loaded: dict[str, Any] = yaml.safe_load(data)
    return loaded


def schema_error(obj: dict[str, Any], version: str) -> str | None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}"
    return None


def test_every_overlay_renders_the_expected_objects(rendered):
    for name in OVERLAYS:
        kinds = sorted(o["kind"] for o in rendered[name])
        expected = [
            "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace", "NetworkPolicy",
            "PodDisruptionBudget", "Service", "ServiceAccount",
        ]
        assert kinds == sorted(expected + (["Secret"] if name == "dev" else [])), name
        namespaces = {
            o["metadata"].get("namespace") for o in rendered[name] if o["kind"] != "Namespace"
        }
        assert namespaces == {one(rendered[name], "Namespace")["metadata"]["name"]}
    assert "ServiceMonitor" in {o["kind"] for o in rendered["prod+servicemonitor"]}


def test_every_object_passes_the_kubernetes_schemas(rendered):
    example = yaml.safe_load((K8S / "overlays" / "prod" / "secret.example.yaml").read_text())
    checked = 0
    for name, objects in rendered.items():
        for obj in [*objects, example]:
            if obj["kind"] == "ServiceMonitor":
                continue  # a CRD: no built-in schema (checked against the Service below)
            for version in VERSIONS:
                assert schema_error(obj, version) is None, f"{name}, {version}"
                checked += 1
    assert checked > 30


def test_the_schema_check_rejects_a_misspelled_field(rendered):
    deployment = one(rendered["prod"], "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    assert "terminationGracePeriod" in (schema_error(broken, VERSIONS[0]) or "")


def test_the_service_monitor_scrapes_the_services_metrics_port(rendered):
    objects = rendered["prod+servicemonitor"]
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_security_context_matches_the_image(rendered):
    dockerfile = (ROOT / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    for name in OVERLAYS:
        pod = one(rendered[name], "Deployment")["spec"]["template"]["spec"]
        agent = container(rendered[name])
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
            int(user[0]), int(user[1])
        )
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = agent["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert pod["automountServiceAccountToken"] is False
        # The image's own entrypoint (tini, then `external-agent serve`) runs unchanged.
        assert "command" not in agent and "args" not in agent
        # The only writable path is an emptyDir on /tmp, where the image points HOME.
        mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
        assert mounts["/etc/external-agent"]["readOnly"] is True
        assert "ENV EXTERNAL_AGENT_HOST=0.0.0.0" in dockerfile and "HOME=/tmp" in dockerfile


def deployment_env(agent: dict[str, Any]) -> dict[str, str]:
    """The container's environment with test values for what comes from the Secret."""
    env: dict[str, str] = {}
    for item in agent["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            key = item["valueFrom"]["secretKeyRef"]["key"]
            env[item["name"]] = (
                "redis://redis.test:6379/0" if key == "redis-url" else f"{key}-{SECRET}"
            )
    return env


def reads(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> bool:
    """Whether Settings reads the variable ``name``: setting it changes the settings or makes
    them invalid (a value the setting cannot take)."""
    monkeypatch.setenv("EXTERNAL_AGENT_DEV_MODE", "true")
    baseline = Settings.load().model_dump()
    for candidate in (value, "{not a valid value"):
        with monkeypatch.context() as m:
            m.setenv(name, candidate)
            try:
                if Settings.load().model_dump() != baseline:
                    return True
            except (ValidationError, ConfigFileError):
                return True
    return False


def test_env_names_are_settings_the_service_reads(rendered, monkeypatch):
    assert not reads(monkeypatch, "EXTERNAL_AGENT_MAXJOBS", "3")  # the check can fail
    for name in OVERLAYS:
        for var, value in deployment_env(container(rendered[name])).items():
            assert reads(monkeypatch, var, value), f"{name}: the service does not read {var}"


def test_secret_keys_exist_in_the_example_and_the_dev_secret(rendered):
    example = yaml.safe_load((K8S / "overlays" / "prod" / "secret.example.yaml").read_text())
    for name in OVERLAYS:
        refs = [
            item["valueFrom"]["secretKeyRef"]
            for item in container(rendered[name])["env"]
            if "valueFrom" in item
        ]
        # dev generates its Secret (a hashed name); prod expects the one created out of band.
        secret = one(rendered["dev"], "Secret")["metadata"]["name"] if name == "dev" else (
            example["metadata"]["name"]
        )
        assert {r["name"] for r in refs} == {secret}
        assert {r["key"] for r in refs} <= set(example["stringData"])
        required = {r["key"] for r in refs if not r.get("optional")}
        assert required == {"webhook-secret"}
    dev_secret = one(rendered["dev"], "Secret")
    assert dev_secret["metadata"]["name"].startswith(example["metadata"]["name"] + "-")
    assert {"webhook-secret"} <= set(dev_secret["data"])


def overlay_settings(objects: list[dict[str, Any]], tmp_path: Path, monkeypatch) -> Settings:
    """The settings the overlay's pod would load: its config.yaml and its environment."""
    config = tmp_path / "config.yaml"
    config.write_text(one(objects, "ConfigMap")["data"]["config.yaml"])
    for var, value in deployment_env(container(objects)).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("EXTERNAL_AGENT_CONFIG", str(config))
    return Settings.load()


def test_config_files_use_only_keys_the_service_knows(rendered):
    known = set(Settings.model_fields)
    for name in OVERLAYS:
        assert set(config_of(rendered[name])) <= known, name
    assert set(yaml.safe_load((K8S / "base" / "config.yaml").read_text())) <= known


@pytest.mark.parametrize("overlay", OVERLAYS)
async def test_probes_ports_and_hpa_metric_answer_in_the_real_app(
    overlay, rendered, make_app, tmp_path, monkeypatch
):
    objects = rendered[overlay]
    settings = overlay_settings(objects, tmp_path, monkeypatch)
    agent = container(objects)
    ports = {p["name"]: p["containerPort"] for p in agent["ports"]}
    assert ports == {"http": settings.port}
    service = one(objects, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert one(objects, "NetworkPolicy")["spec"]["ingress"][0]["ports"] == [
        {"protocol": "TCP", "port": settings.port}
    ]
    pod = one(objects, "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(settings.port)

    # The real app with the overlay's settings (a job body that needs no models; the memory
    # registry and no failover, since no Redis runs here).
    no_redis = {"registry": "memory",
                "failover": settings.failover.model_copy(update={"enabled": False})}
    harness = await make_app(settings.model_copy(update=no_redis), idle)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = agent[probe]["httpGet"]
        assert get["port"] in ports, probe
        answer = await harness.client.get(get["path"])
        assert answer.status_code == 200, (probe, answer.text)
    assert agent["readinessProbe"]["httpGet"]["path"] == "/ready"
    harness.manager.start_draining()
    assert (await harness.client.get("/ready")).status_code == 503  # readiness follows drain
    assert (await harness.client.get(agent["livenessProbe"]["httpGet"]["path"])).status_code == 200

    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
    [metric] = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    exported = (await harness.client.get(pod["metadata"]["annotations"]["prometheus.io/path"])).text
    assert re.search(rf"^{name} [0-9.]+$", exported, re.MULTILINE), f"{name} not on /metrics"
    adapter = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter-values.yaml").read_text())
    [rule] = adapter["rules"]["custom"]
    assert rule["seriesQuery"].startswith(name + "{") and rule["name"]["as"] == name


def test_grace_period_covers_prestop_and_the_drain(rendered):
    for name in OVERLAYS:
        pod = one(rendered[name], "Deployment")["spec"]["template"]["spec"]
        command = container(rendered[name])["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        drain = float(config_of(rendered[name])["drain_timeout"])
        grace = pod["terminationGracePeriodSeconds"]
        assert grace >= float(command[1]) + drain + CLOSE_MARGIN_S, name


def test_rollouts_never_drop_below_capacity_and_disruptions_take_one_pod(rendered):
    for name in OVERLAYS:
        deployment = one(rendered[name], "Deployment")
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        pdb = one(rendered[name], "PodDisruptionBudget")
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["selector"]["matchLabels"] == selector
        assert one(rendered[name], "Service")["spec"]["selector"] == selector
        hpa = one(rendered[name], "HorizontalPodAutoscaler")
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
