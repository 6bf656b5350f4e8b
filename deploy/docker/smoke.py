"""Container smoke test (make images-test): the images, run as the Helm charts run them.

1. `helm template` renders each chart for this run (its own ports, database, app role,
   RabbitMQ user and vhost, GLIA_ENVIRONMENT=production), and every container setting
   comes from the rendered pod spec: image,
   user and group, read-only root filesystem with a tmpfs for each emptyDir, dropped
   capabilities, no privilege escalation, CPU and memory limits, the environment
   (ConfigMap, Secret and fieldRef entries, with Kubernetes' $(VAR) expansion), the
   command, the container port and the probe paths.
2. The migrations Job's container runs once; the three services start one after another
   on the host network (cold start: from `run` to the readiness probe's 200).
3. What each service's process really got (uid and gid, capabilities, no-new-privileges,
   the writable paths), seen from inside its container. Then one turn through the
   containers: a token from glia-token inside the chat-api image, a conversation, an SSE
   turn ending in `done`, the cards `current` from card query; every probe path and
   /metrics, the images' HEALTHCHECK, the chart's preStop command, and a graceful stop
   (SIGTERM, exit code 0).
4. Everything it started is removed, also on failure or interruption: containers,
   database, role, RabbitMQ user and vhost.

Usage: python deploy/docker/smoke.py [--prefix glia/] [--tag TAG]
Environment: CONTAINER_ENGINE (docker or podman; default: docker when it answers),
GLIA_IMAGES_TEST_ADMIN_URL (PostgreSQL superuser URL), GLIA_IMAGES_TEST_AMQP_ADDRESS
(RabbitMQ host:port; its user and vhost are made with rabbitmqctl, on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import asyncpg
import httpx
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HELM_DIR = ROOT / "deploy/helm"
SERVICES = ("extractor", "card-query", "chat-api")  # start order: the consumer first
ADMIN_URL = os.environ.get(
    "GLIA_IMAGES_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_ADDRESS = os.environ.get("GLIA_IMAGES_TEST_AMQP_ADDRESS", "127.0.0.1:5672")
NAMESPACE = "glia-images-test"
READY_TIMEOUT_S = 30.0
CARDS_TIMEOUT_S = 30.0
MESSAGE = "We decided to launch in May. TODO: book the venue. What is the budget?"


def log(message: str) -> None:
    print(f"images-test: {message}", flush=True)


def sh(
    cmd: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell), capturing its output; raise with its output when it fails."""
    result = subprocess.run(  # noqa: S603
        cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])} ... exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a host process: what start-up costs, whatever the load.

    None when the engine's processes are not visible here (a VM between, as on macOS)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Run inside a service container: what its main process (pid 1) really got, and where
# files can be written.
RUNTIME_PROBE = """
import json, os, tempfile
status = dict(line.split(":", 1) for line in open("/proc/1/status") if ":" in line)
def writable(path):
    try:
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False
print(json.dumps({
    "uid": int(status["Uid"].split()[0]), "gid": int(status["Gid"].split()[0]),
    "capabilities": int(status["CapEff"], 16), "no_new_privs": int(status["NoNewPrivs"]),
    "writable": [path for path in ("/", "/app", "/app/.venv", "/tmp") if writable(path)],
}))
"""


# ------------------------------------------------------------------ the engine


def detect_engine() -> str:
    """docker when its daemon answers, otherwise podman (as deploy/docker/build.sh does)."""
    if os.environ.get("CONTAINER_ENGINE"):
        return os.environ["CONTAINER_ENGINE"]
    try:
        if sh(["docker", "info"], check=False, timeout=20).returncode == 0:
            return "docker"
    except FileNotFoundError:
        pass
    return "podman"


# ------------------------------------------------------- charts -> containers


@dataclass
class Container:
    """One container as a chart renders it, translated into `<engine> run` options."""

    chart: str
    name: str
    image: str
    options: list[str]
    env: dict[str, str]
    command: list[str]
    user: list[int] = field(default_factory=list)  # uid, gid
    writable: list[str] = field(default_factory=list)  # the emptyDir mounts
    port: int | None = None
    probes: dict[str, str] = field(default_factory=dict)  # probe kind -> path
    pre_stop: list[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("512Mi", "500m", "1") as a number (bytes or cores)."""
    text = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion from the variables defined before; $$ escapes."""

    def one(match: re.Match[str]) -> str:
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$?\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, value)


def pod_env(container: dict[str, Any], docs: list[dict[str, Any]], pod_name: str) -> dict[str, str]:
    by_kind_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = by_kind_name[("ConfigMap", source["configMapRef"]["name"])]
        env.update(config_map.get("data", {}))
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": NAMESPACE,
        "spec.nodeName": socket.gethostname(),
    }
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = expand(str(entry["value"]), env)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            env[name] = fields[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = by_kind_name[("Secret", ref["name"])].get("data", {})
            if ref["key"] in data:
                env[name] = base64.b64decode(data[ref["key"]]).decode()
            elif not ref.get("optional"):
                raise RuntimeError(f"{name}: key {ref['key']} missing from Secret {ref['name']}")
        else:
            raise RuntimeError(f"{name}: unsupported valueFrom {source}")
    return env


def run_options(engine: str, pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """The pod's security, volume and resource settings as `run` options."""
    sc = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    user, group = sc["runAsUser"], sc["runAsGroup"]
    assert sc.get("runAsNonRoot") and user != 0, "the charts run as a non-root user"
    assert not sc.get("privileged"), "privileged containers are not part of Glia"
    options = [f"--user={user}:{group}", "--network=host"]
    if "fsGroup" in pod.get("securityContext", {}):
        options.append(f"--group-add={pod['securityContext']['fsGroup']}")
    if sc.get("readOnlyRootFilesystem"):
        # podman alone would add writable /run, /tmp and /var/tmp: only the volumes may be.
        options += ["--read-only"] + (["--read-only-tmpfs=false"] if engine == "podman" else [])
    options += [f"--cap-drop={c}" for c in sc.get("capabilities", {}).get("drop", [])]
    options += [f"--cap-add={c}" for c in sc.get("capabilities", {}).get("add", [])]
    if sc.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    seccomp = sc.get("seccompProfile", {}).get("type", "RuntimeDefault")
    assert seccomp == "RuntimeDefault", f"seccomp {seccomp}: the engine's default is RuntimeDefault"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        assert "emptyDir" in volume, f"volume {mount['name']}: only emptyDir is supported here"
        size = volume["emptyDir"].get("sizeLimit")
        size_opt = f",size={int(quantity(size))}" if size else ""
        options.append(f"--tmpfs={mount['mountPath']}:rw,mode=1777{size_opt}")
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        options.append(f"--memory={int(quantity(limits['memory']))}")
    if "cpu" in limits:
        options.append(f"--cpus={quantity(limits['cpu']):g}")
    # Kubernetes ignores an image's HEALTHCHECK (its probes are checked below instead).
    options.append("--no-healthcheck")
    return options


def container_of(engine: str, chart: str, docs: list[dict[str, Any]], name: str) -> Container:
    workload = next(d for d in docs if d["kind"] in ("Deployment", "Job"))
    pod = workload["spec"]["template"]["spec"]
    (spec,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in spec.get("ports", [])}
    probes = {}
    for kind in ("startup", "liveness", "readiness"):
        probe = spec.get(f"{kind}Probe")
        if probe:
            get = probe["httpGet"]
            assert ports.get(get["port"], get["port"]) == ports["http"], f"{kind} probe port"
            probes[kind] = get["path"]
    pre_stop = spec.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    sc = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
    return Container(
        chart=chart,
        name=name,
        image=spec["image"],
        options=run_options(engine, pod, spec),
        env=pod_env(spec, docs, name),
        command=[*spec.get("command", []), *spec.get("args", [])],
        user=[sc["runAsUser"], sc["runAsGroup"]],
        writable=[m["mountPath"] for m in spec.get("volumeMounts", [])],
        port=ports.get("http"),
        probes=probes,
        pre_stop=pre_stop,
    )


# ------------------------------------------------------------------ one run


@dataclass
class Result:
    checks: list[str] = field(default_factory=list)
    ready_s: dict[str, float] = field(default_factory=dict)  # from `run`
    process_ready_s: dict[str, float] = field(default_factory=dict)  # from the process start
    cpu_s: dict[str, float | None] = field(default_factory=dict)  # CPU time it took
    sizes: dict[str, int] = field(default_factory=dict)

    def ok(self, what: str) -> None:
        self.checks.append(what)
        print(f"ok   {what}", flush=True)


class SmokeTest:
    def __init__(self, engine: str, prefix: str, tag: str) -> None:
        self.engine = engine
        self.prefix = prefix
        self.tag = tag
        self.run_id = secrets.token_hex(3)
        ident = f"glia_images_test_{self.run_id}"
        self.database = self.role = self.amqp_user = self.vhost = ident
        admin = urlsplit(ADMIN_URL)
        password = secrets.token_hex(12)
        self.app_url = (
            f"postgresql://{self.role}:{password}@{admin.hostname}:{admin.port or 5432}"
            f"/{self.database}"
        )
        self.amqp_password = secrets.token_hex(12)
        self.amqp_url = (
            f"amqp://{self.amqp_user}:{self.amqp_password}@{AMQP_ADDRESS}/{quote(self.vhost)}"
        )
        self.jwt_secret = secrets.token_urlsafe(32)
        self.started: list[Container] = []
        self.broker_prepared = False
        self.result = Result()

    # -- rendering

    @functools.cached_property
    def helm(self) -> tuple[str, dict[str, str]]:
        """The Helm binary of deploy/helm/tools.sh, with its own config and cache."""
        helm = sh(["bash", str(HELM_DIR / "tools.sh")]).stdout.strip().splitlines()[-1]
        tools = Path(helm).parents[1]
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(tools / "helm/config"),
            "HELM_CACHE_HOME": str(tools / "helm/cache"),
            "HELM_DATA_HOME": str(tools / "helm/data"),
        }
        return helm, env

    def render(self, chart: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        helm, env = self.helm
        sh([helm, "dependency", "update", "--skip-refresh", str(HELM_DIR / chart)], env=env)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            json.dump(values, f)  # JSON is YAML; the file holds this run's test secrets
            f.flush()
            release, path = f"glia-{chart}", str(HELM_DIR / chart)
            out = sh([helm, "template", release, path, "-n", NAMESPACE, "-f", f.name], env=env)
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    def container(self, chart: str, port: int | None = None) -> Container:
        values: dict[str, Any] = {
            # The charts' default GLIA_ENVIRONMENT=production refuses what is only fit for a
            # laptop (default passwords, short keys): this run brings its own.
            "image": {"repository": f"{self.prefix}{chart}", "tag": self.tag},
        }
        if chart == "migrations":
            secret = {"GLIA_DATABASE_ADMIN_URL": ADMIN_URL, "GLIA_DATABASE_URL": self.app_url}
        else:
            values["config"] = {"GLIA_HTTP_PORT": port}
            secret = {"GLIA_DATABASE_URL": self.app_url, "GLIA_AMQP_URL": self.amqp_url}
            if chart != "extractor":
                secret["GLIA_JWT_SECRET"] = self.jwt_secret
        values["secret"] = {"values": secret}
        docs = self.render(chart, values)
        return container_of(self.engine, chart, docs, f"glia-images-test-{self.run_id}-{chart}")

    # -- the engine

    def run(self, c: Container, *, detach: bool) -> subprocess.CompletedProcess[str]:
        # Values travel in the engine's environment, never on its command line.
        cmd = [self.engine, "run", f"--name={c.name}", f"--label=glia.images-test={self.run_id}"]
        cmd += ["--detach"] if detach else ["--rm"]
        cmd += c.options + [f"--env={k}" for k in c.env] + [c.image, *c.command]
        return sh(cmd, env={**os.environ, **c.env}, check=False, timeout=300)

    def inspect_image(self, image: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(sh([self.engine, "image", "inspect", image]).stdout)[0]
        return found

    def check_image(self, c: Container) -> dict[str, Any]:
        """The image agrees with its chart: user, command, port."""
        image = self.inspect_image(c.image)
        config = image["Config"]
        self.result.sizes[c.chart] = int(image["Size"])
        user = f"{c.user[0]}:{c.user[1]}"
        assert config.get("User") == user, f"image user {config.get('User')} != chart {user}"
        assert not config.get("Entrypoint"), "no ENTRYPOINT: a chart's command replaces Cmd"
        # Services run the image's command; the Job names it, and it must be the same.
        cmd = c.command or [f"glia-{c.chart}"]
        assert config["Cmd"] == cmd, f"{c.chart}: image command {config['Cmd']}, chart {cmd}"
        if c.port is not None:
            values = yaml.safe_load((HELM_DIR / c.chart / "values.yaml").read_text())
            default = values["config"]["GLIA_HTTP_PORT"]
            assert f"{default}/tcp" in config.get("ExposedPorts", {}), "EXPOSE = chart port"
            assert f"GLIA_HTTP_PORT={default}" in config["Env"]
        self.result.ok(f"{c.chart}: image {c.image} runs {cmd} as {user}, like its chart")
        return image

    def started_at(self, c: Container) -> tuple[float, int]:
        """When the container's process started, in seconds since the epoch, and its pid.

        StartedAt is "2026-01-02 03:04:05.6 +0000 UTC" (podman) or "2026-01-02T03:04:05.6Z".
        """
        state = json.loads(sh([self.engine, "inspect", c.name]).stdout)[0]["State"]
        found = re.match(
            r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?\s*(Z|[+-]\d\d:?\d\d)",
            state["StartedAt"],
        )
        assert found, state["StartedAt"]
        day, clock, fraction, zone = found.groups()
        stamp = datetime.fromisoformat(f"{day}T{clock}{(fraction or '')[:7]}")
        zone = "+00:00" if zone == "Z" else zone
        offset = datetime.strptime(zone.replace(":", ""), "%z").utcoffset()
        seconds = stamp.replace(tzinfo=UTC).timestamp() - (offset.total_seconds() if offset else 0)
        return seconds, int(state["Pid"])

    def check_runtime(self, c: Container) -> None:
        """The running process has what the chart asks for, not merely the flags."""
        got = json.loads(sh([self.engine, "exec", c.name, "python", "-c", RUNTIME_PROBE]).stdout)
        assert [got["uid"], got["gid"]] == c.user, f"{c.chart} runs as {got['uid']}:{got['gid']}"
        assert got["capabilities"] == 0, f"{c.chart} has capabilities {got['capabilities']:x}"
        assert got["no_new_privs"] == 1, f"{c.chart} may gain privileges"
        assert got["writable"] == c.writable, f"{c.chart} can write to {got['writable']}"
        self.result.ok(
            f"{c.chart}: runs as {got['uid']}:{got['gid']}, no capabilities, no new privileges,"
            f" writes only to {', '.join(got['writable'])}"
        )

    def logs(self, c: Container, lines: int = 40) -> str:
        out = sh([self.engine, "logs", "--tail", str(lines), c.name], check=False)
        return out.stdout + out.stderr

    # -- the steps

    def prepare(self) -> None:
        sh(["rabbitmqctl", "-q", "await_startup", "--timeout", "60"], timeout=90)
        self.broker_prepared = True
        sh(["rabbitmqctl", "-q", "add_vhost", self.vhost])
        sh(["rabbitmqctl", "-q", "add_user", self.amqp_user, self.amqp_password])
        user, vhost = self.amqp_user, self.vhost
        sh(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"])
        self.result.ok(f"RabbitMQ user and vhost {self.vhost}")

    def migrate(self) -> None:
        c = self.container("migrations")
        self.check_image(c)
        out = self.run(c, detach=False)
        assert out.returncode == 0, f"glia-migrate failed:\n{out.stdout}{out.stderr}"
        self.result.ok(f"migrations: {out.stdout.strip().splitlines()[-1]} ({self.database})")

    def start(self, chart: str) -> Container:
        c = self.container(chart, free_port())
        image = self.check_image(c)
        begin = time.monotonic()
        out = self.run(c, detach=True)
        self.started.append(c)
        assert out.returncode == 0, f"{chart} did not start:\n{out.stdout}{out.stderr}"
        deadline = begin + READY_TIMEOUT_S
        next_state_check = begin + 1
        while True:
            try:
                if httpx.get(c.url + c.probes["readiness"], timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            now = time.monotonic()
            assert now < deadline, f"{chart} not ready:\n{self.logs(c)}"
            if now > next_state_check:  # once a second: has it exited?
                state = sh([self.engine, "inspect", "--format", "{{.State.Running}}", c.name])
                assert state.stdout.strip() == "true", f"{chart} exited:\n{self.logs(c)}"
                next_state_check = now + 1
            time.sleep(0.05)
        self.result.ready_s[chart] = time.monotonic() - begin
        started_at, pid = self.started_at(c)
        self.result.process_ready_s[chart] = time.time() - started_at
        self.result.cpu_s[chart] = cpu_seconds(pid)
        cpu = self.result.cpu_s[chart]
        self.result.ok(
            f"{chart}: ready on :{c.port} {self.result.ready_s[chart]:.2f} s after run"
            f" ({self.result.process_ready_s[chart]:.2f} s after its process started"
            + (f", {cpu:.2f} s of CPU)" if cpu is not None else ")")
        )
        self.check_runtime(c)
        health = image.get("Healthcheck") or image["Config"].get("Healthcheck")
        test = health["Test"]
        assert test[0] == "CMD", test
        sh([self.engine, "exec", c.name, *test[1:]])
        self.result.ok(f"{chart}: the image's HEALTHCHECK passes")
        return c

    def turn(self, chat: Container, cards: Container) -> None:
        token = sh([self.engine, "exec", chat.name, "glia-token", "images-test"]).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(headers=headers, timeout=30) as client:
            created = client.post(chat.url + "/v1/conversations", json={"title": "images test"})
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
            events: list[tuple[str, dict[str, Any]]] = []
            url = f"{chat.url}/v1/conversations/{cid}/messages"
            with client.stream("POST", url, json={"content": MESSAGE}) as response:
                assert response.status_code == 200, response.read()
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        events.append((event, json.loads(line.partition(":")[2])))
            names = [e for e, _ in events]
            assert names[0] == "start" and names[-1] == "done", names
            self.result.ok(f"chat-api: SSE turn {names[0]}, {len(names) - 2} deltas, {names[-1]}")

            deadline = time.monotonic() + CARDS_TIMEOUT_S
            while True:
                page = client.get(cards.url + "/v1/cards", params={"conversation_id": cid})
                assert page.status_code == 200, page.text
                body = page.json()
                if body["extraction"]["state"] == "current" and body["items"]:
                    break
                assert time.monotonic() < deadline, f"cards not current: {body['extraction']}"
                time.sleep(0.2)
            kinds = sorted({card["kind"] for card in body["items"]})
            self.result.ok(f"card-query: {len(body['items'])} cards current ({', '.join(kinds)})")

    def probes_and_metrics(self) -> None:
        for c in self.started:
            for kind, path in c.probes.items():
                status = httpx.get(c.url + path, timeout=5).status_code
                assert status == 200, f"{c.chart} {kind} probe {path}: {status}"
            metrics = httpx.get(c.url + "/metrics", timeout=5)
            assert metrics.status_code == 200, f"{c.chart} /metrics: {metrics.status_code}"
            assert "glia_http_requests_total" in metrics.text, f"{c.chart}: no glia metrics"
            probes = ", ".join(sorted(set(c.probes.values())))
            self.result.ok(f"{c.chart}: {probes} 200, /metrics served")

    def pre_stop_and_stop(self) -> None:
        hooks = {  # side by side: each is a sleep of several seconds
            c.chart: subprocess.Popen([self.engine, "exec", c.name, *c.pre_stop])  # noqa: S603
            for c in self.started
            if c.pre_stop
        }
        for chart, hook in hooks.items():
            assert hook.wait(60) == 0, f"{chart}: preStop exited {hook.returncode}"
            self.result.ok(f"{chart}: the chart's preStop command runs in the image")
        for c in self.started:
            begin = time.monotonic()
            sh([self.engine, "stop", "--time", "60", c.name], timeout=90)
            code = sh([self.engine, "inspect", "--format", "{{.State.ExitCode}}", c.name])
            assert code.stdout.strip() == "0", f"{c.chart} exit code {code.stdout.strip()}"
            self.result.ok(f"{c.chart}: SIGTERM, exit 0 in {time.monotonic() - begin:.1f} s")

    def cleanup(self) -> None:
        """Remove all this run made; each step on its own, so one failure skips nothing."""
        left: list[str] = []
        names = [c.name for c in self.started] + [f"glia-images-test-{self.run_id}-migrations"]
        for name in names:
            sh([self.engine, "rm", "--force", name], check=False)
        for attempt in range(5):  # the server may be briefly unavailable (a restart, a limit)
            try:
                asyncio.run(self.drop_database())
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if attempt == 4:
                    left.append(f"database and role {self.database} ({exc})")
                time.sleep(2)
        if self.broker_prepared:
            for what, name in (("user", self.amqp_user), ("vhost", self.vhost)):
                delete = ["rabbitmqctl", "-q", f"delete_{what}", name]
                if sh(delete, check=False).returncode:
                    # The broker's app may be stopped for a moment: wait for it, once.
                    sh(["rabbitmqctl", "-q", "await_startup", "--timeout", "60"], check=False)
                    if sh(delete, check=False).returncode:
                        left.append(f"RabbitMQ {what} {name}")
        if left:
            log(f"WARNING: run {self.run_id} could not remove: {'; '.join(left)}")
        else:
            log(f"removed containers, database, role, RabbitMQ user and vhost of run {self.run_id}")

    async def drop_database(self) -> None:
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            db = await conn.fetchval("SELECT quote_ident($1)", self.database)
            role = await conn.fetchval("SELECT quote_ident($1)", self.role)
            await conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            await conn.execute(f"DROP ROLE IF EXISTS {role}")
        finally:
            await conn.close()

    def main(self) -> None:
        self.prepare()
        self.migrate()
        started = {chart: self.start(chart) for chart in SERVICES}
        self.turn(started["chat-api"], started["card-query"])
        self.probes_and_metrics()
        self.pre_stop_and_stop()


def report(result: Result) -> Iterator[str]:
    yield "| image | size | `run` to /readyz 200 | process start to /readyz 200 | CPU time |"
    yield "|---|---|---|---|---|"
    for chart, size in result.sizes.items():
        if chart in result.ready_s:
            cpu = result.cpu_s[chart]
            times = (
                f"{result.ready_s[chart]:.2f} s | {result.process_ready_s[chart]:.2f} s"
                f" | {f'{cpu:.2f} s' if cpu is not None else '-'}"
            )
        else:
            times = "- | - | -"
        yield f"| {chart} | {size / 1e6:.0f} MB | {times} |"
    yield f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prefix", default="glia/", help="image name prefix (default glia/)")
    parser.add_argument("--tag", default="dev", help="image tag (default dev)")
    args = parser.parse_args()
    os.environ.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))
    engine = detect_engine()
    test = SmokeTest(engine, args.prefix, args.tag)
    log(f"run {test.run_id} with {engine}, images {args.prefix}*:{args.tag}")

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    begin = time.monotonic()
    try:
        test.main()
    except (AssertionError, RuntimeError, httpx.HTTPError, subprocess.SubprocessError) as exc:
        log(f"FAILED: {exc}")
        for c in test.started:
            print(f"----- {c.name} (last lines)\n{test.logs(c)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        test.cleanup()
    print("\n".join(report(test.result)))
    log(f"passed in {time.monotonic() - begin:.0f} s ({len(test.result.checks)} checks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
