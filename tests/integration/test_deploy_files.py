"""The deployment files: docker-compose.yml, deploy/docker/, deploy/k8s/ (kustomize), deploy/prometheus/.

The checks that always run need PyYAML only: they parse every file and hold it to what Compose and
Kubernetes require (types, names, selectors, references between objects, files a kustomization
lists) and to tokenswarm's own contract (subcommands and flags, locustfile copies, web login, no
plaintext secrets). Each check is a function returning its problems, and each is shown to catch a
broken copy. External validators run when installed and are skipped, with the reason, otherwise:
``docker-compose`` (Debian package docker-compose), ``kubectl``/``kustomize``, the
``kubernetes-validate`` Python package (the ``checks`` extra, which ``make test`` installs), ``promtool``
(Debian package prometheus) and ``shellcheck``.
Nothing here needs a network, a Docker engine or a cluster.
"""

from __future__ import annotations

import argparse
import copy
import filecmp
import glob
import importlib.util
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

try:
    import yaml
except ImportError:  # pragma: no cover - a clear message instead of a collection error
    pytest.fail("these tests need PyYAML: pip install pyyaml (it belongs in the dev extra)", pytrace=False)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE_FILE = os.path.join(ROOT, "docker-compose.yml")
DOCKERFILE = os.path.join(ROOT, "deploy", "docker", "Dockerfile")
MASTER_SCRIPT = os.path.join(ROOT, "deploy", "docker", "master.sh")
K8S = os.path.join(ROOT, "deploy", "k8s")
PROMETHEUS_CONFIG = os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")
LOCUSTFILES = os.path.join(ROOT, "locustfiles")
K8S_LOCUSTFILES = os.path.join(K8S, "base", "locustfiles")



def _subcommands() -> set[str]:
    """The CLI's own subcommands (run, sweep, report, compare, capacity, ...), read from its parser."""
    from tokenswarm.cli import build_parser

    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices) if actions else set()


SUBCOMMANDS = _subcommands()
TOKENSWARM_SERVICES = ("simengine", "master", "worker")
MASTER_PORTS = {5557, 5558, 8089}
# kustomize roots a user applies; each must render
K8S_VARIANTS = ("", "overlays/sim", "overlays/job", "overlays/sim-job")
# manifests kept beside a kustomization but applied by hand (documented in the file itself)
K8S_STANDALONE = {os.path.join("components", "job", "reports-reader.yaml")}
SECRET_WORDS = {"KEY", "APIKEY", "PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "CREDENTIALS", "AUTH"}
INTERPOLATION = re.compile(r"^\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>.*))?\}$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}


def is_secret_name(name: str) -> bool:
    """OPENAI_API_KEY, TOKENSWARM_WEB_PASSWORD, LOCUST_WEB_AUTH, web-password: yes; TOKENSWARM_HOST: no."""
    return bool(set(re.split(r"[^A-Z0-9]+", name.upper())) & SECRET_WORDS)


# -- loading ------------------------------------------------------------------------------------
def load_yaml(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def interpolation(value: Any) -> tuple[str, str, str] | None:
    """``${NAME:-default}`` -> (NAME, ':-', default); None for anything that is not one whole interpolation."""
    m = INTERPOLATION.match(str(value)) if isinstance(value, str) else None
    return (m["name"], m["op"] or "", m["arg"] or "") if m else None


def env_mapping(env: Any) -> dict[str, Any]:
    """A compose ``environment`` (mapping or list of NAME=value) as a dict."""
    if isinstance(env, dict):
        return dict(env)
    out: dict[str, Any] = {}
    for item in env or []:
        name, _, value = str(item).partition("=")
        out[name] = value if "=" in str(item) else None
    return out


def argv(value: Any) -> list[str]:
    """A compose/k8s command (list, or a string split as compose splits it) as a list of strings."""
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


# -- docker-compose: Python checks ------------------------------------------------------------
def compose_problems(doc: dict) -> list[str]:
    """What is wrong with a parsed docker-compose.yml (an empty list: nothing found)."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        return ["docker-compose.yml: not a mapping"]
    if "version" in doc:
        problems.append("docker-compose.yml: top-level `version:` is obsolete in the Compose Specification")
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        return problems + ["docker-compose.yml: no services"]
    for name in (*TOKENSWARM_SERVICES, "prometheus"):
        if name not in services:
            problems.append(f"docker-compose.yml: service {name!r} is missing")
    if problems:
        return problems
    expected_profiles = {"simengine": ["sim"], "prometheus": ["obs"], "master": None, "worker": None}
    for name, want in expected_profiles.items():
        if services[name].get("profiles") != want:
            problems.append(f"services.{name}.profiles: {services[name].get('profiles')!r}, expected {want!r}")
    # one image, built once (compose builds once per service with a `build:`): the master builds it from
    # deploy/docker/Dockerfile with the repository root as context, the base image a build argument
    images = {services[name].get("image") for name in TOKENSWARM_SERVICES}
    if len(images) != 1 or None in images:
        problems.append(f"simengine, master and worker must share one image, found {sorted(map(str, images))}")
    builders = [name for name in TOKENSWARM_SERVICES if "build" in services[name]]
    if builders != ["master"]:
        problems.append(f"services with a build section: {builders}, expected only master (one build, one image)")
    build = services["master"].get("build")
    if not isinstance(build, dict) or build.get("dockerfile") != "deploy/docker/Dockerfile" \
            or build.get("context") not in (".", "./"):
        problems.append(f"services.master.build: {build!r}, expected context . and deploy/docker/Dockerfile")
    elif (interpolation((build.get("args") or {}).get("PYTHON_IMAGE")) or ("",))[0] != "PYTHON_IMAGE":
        problems.append("services.master.build.args.PYTHON_IMAGE: the base image must be settable "
                        "(${PYTHON_IMAGE:-python:3.12-slim})")
    # the open-files limit: settable, since a limit above the Docker engine's hard limit fails to start
    for name in TOKENSWARM_SERVICES:
        nofile = (services[name].get("ulimits") or {}).get("nofile")
        values = list(nofile.values()) if isinstance(nofile, dict) else [nofile] if nofile is not None else []
        if any((interpolation(v) or ("",))[0] != "NOFILE" for v in values):
            problems.append(f"services.{name}.ulimits.nofile: {nofile!r}; a fixed limit fails where Docker's hard "
                            f"limit is lower (error setting rlimit type 7): use ${{NOFILE:-65536}}")
    # dependencies: existing services, and never on a service of a profile the dependent lacks
    for name, svc in services.items():
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else list(deps):
            if dep not in services:
                problems.append(f"services.{name}.depends_on: unknown service {dep!r}")
                continue
            dep_profiles, own = set(services[dep].get("profiles") or []), set(svc.get("profiles") or [])
            if dep_profiles and not (own and own <= dep_profiles):
                problems.append(f"services.{name}.depends_on: {dep!r} is only in profiles {sorted(dep_profiles)}, "
                                f"which {name!r} does not share: compose refuses it when they are inactive")
    worker, master = services["worker"], services["master"]
    for key in ("container_name", "ports"):
        if key in worker:
            problems.append(f"services.worker.{key}: a worker scaled with --scale worker=N cannot have one")
    deps = worker.get("depends_on") or []
    if "master" not in (deps if isinstance(deps, list) else list(deps)):
        problems.append("services.worker.depends_on: must include master")
    if "--master-host" not in argv(worker.get("command")) or "master" not in argv(worker.get("command")):
        problems.append(f"services.worker.command: {worker.get('command')!r} does not connect to the master")
    published = [str(p) for p in master.get("ports") or []]
    if not any(p.split(":")[-1].split("/")[0] == "8089" for p in published):
        problems.append(f"services.master.ports: {published} does not publish the web UI (8089)")
    if not any("${WEB_PORT:-8089}:8089" in p for p in published):
        problems.append(f"services.master.ports: {published}: the host port must be settable (${{WEB_PORT:-8089}}), "
                        "8089 may be taken")
    if any(p.split(":")[-1].split("/")[0] == "5557" for p in published):
        problems.append("services.master.ports: 5557 must not be published on the host (workers get the API key)")
    if "5557" not in [str(p) for p in master.get("expose") or []]:
        problems.append("services.master.expose: must list 5557 for the workers")
    # settings by environment, with defaults
    env = env_mapping(master.get("environment"))
    wanted = {"TOKENSWARM_ENGINE": ("ENGINE", "sim"), "TOKENSWARM_HOST": ("HOST", "http://simengine:8000"),
              "TOKENSWARM_MODEL": ("MODEL", None), "TOKENSWARM_LEVELS": ("LEVELS", None),
              "TOKENSWARM_LEVEL_DURATION": ("LEVEL_DURATION", None), "WORKERS": ("WORKERS", None),
              "MODE": ("MODE", "ui")}
    for var, (short, default) in wanted.items():
        parsed = interpolation(env.get(var))
        if parsed is None or parsed[0] != short or parsed[1] != ":-":
            problems.append(f"services.master.environment.{var}: {env.get(var)!r}, expected ${{{short}:-...}}")
        elif default is not None and parsed[2] != default:
            problems.append(f"services.master.environment.{var}: default {parsed[2]!r}, expected {default!r}")
    # the web UI listens on 0.0.0.0 in the container: the login must be on, with a password the user sets
    if str(env.get("LOCUST_WEB_LOGIN")).lower() != "true":
        problems.append("services.master.environment.LOCUST_WEB_LOGIN: must be \"true\" (the UI listens beyond "
                        "loopback)")
    password = interpolation(env.get("TOKENSWARM_WEB_PASSWORD"))
    if password is None or password[1] != ":?":
        problems.append("services.master.environment.TOKENSWARM_WEB_PASSWORD: must be ${WEB_PASSWORD:?message} "
                        "so compose refuses to start without one")
    for var in ("TOKENSWARM_API_KEY", "OPENAI_API_KEY"):
        if var not in env:
            problems.append(f"services.master.environment.{var}: the API key must be passed through")
    if not any(str(v).rsplit(":", 1) in (["./reports", "/app/reports"], ["${REPORTS_DIR:-./reports}", "/app/reports"])
               for v in master.get("volumes") or []):
        problems.append("services.master.volumes: ./reports (or ${REPORTS_DIR:-./reports}) must be mounted at "
                        "/app/reports")
    problems += secret_problems_compose(doc)
    return problems


def secret_problems_compose(doc: dict) -> list[str]:
    """Secret-looking variables may only pass a variable through (``${X}``, ``${X:-}``, ``${X:?msg}``)."""
    problems = []
    for name, svc in (doc.get("services") or {}).items():
        for var, value in env_mapping(svc.get("environment")).items():
            if not is_secret_name(var) or value is None:
                continue
            parsed = interpolation(value)
            if parsed is None or (parsed[1].endswith("-") and parsed[2]):
                problems.append(f"services.{name}.environment.{var}: a literal secret value; pass it from "
                                f"the environment (${{{var}:-}})")
        for arg in argv(svc.get("command")):
            if re.match(r"--(api-key|web-auth|password)\b", arg):
                problems.append(f"services.{name}.command: {arg!r}: secrets never go on a command line")
    return problems


def test_compose_file_passes_the_python_checks():
    assert compose_problems(compose()) == []


def _broken(mutate) -> dict:
    doc = copy.deepcopy(compose())
    mutate(doc)
    return doc


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d.update(version="3.8"), "version"),
    (lambda d: d["services"]["worker"].update(container_name="w"), "container_name"),
    (lambda d: d["services"]["worker"].update(ports=["5557:5557"]), "worker.ports"),
    (lambda d: d["services"]["master"].update(depends_on=["simengine"]), "only in profiles"),
    (lambda d: d["services"]["master"].update(ports=["8089:8089", "5557:5557"]), "5557"),
    (lambda d: d["services"]["master"]["environment"].update(TOKENSWARM_API_KEY="sk-123"), "literal secret"),
    (lambda d: d["services"]["master"]["environment"].update(TOKENSWARM_WEB_PASSWORD="${WEB_PASSWORD:-x}"),
     "WEB_PASSWORD"),
    (lambda d: d["services"]["master"]["environment"].pop("LOCUST_WEB_LOGIN"), "LOCUST_WEB_LOGIN"),
    (lambda d: d["services"]["worker"].update(image="other:1"), "one image"),
    (lambda d: d["services"]["worker"].update(build={"context": ".", "dockerfile": "deploy/docker/Dockerfile"}),
     "only master"),
    (lambda d: d["services"]["master"]["build"].pop("args"), "PYTHON_IMAGE"),
    (lambda d: d["services"]["worker"].update(ulimits={"nofile": {"soft": 65536, "hard": 65536}}), "rlimit"),
    (lambda d: d["services"]["master"].update(ports=["127.0.0.1:8089:8089"]), "WEB_PORT"),
    (lambda d: d["services"]["simengine"].pop("profiles"), "simengine.profiles"),
    (lambda d: d["services"]["master"]["environment"].update(TOKENSWARM_HOST="${HOST:-http://localhost:8000}"),
     "TOKENSWARM_HOST"),
])
def test_compose_python_checks_catch_broken_files(mutate, expect):
    problems = compose_problems(_broken(mutate))
    assert any(expect in p for p in problems), problems


# -- docker-compose: the real validator ---------------------------------------------------------
def docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose not installed (Debian: apt-get install docker-compose); the Python checks "
                    "still ran")
    return exe


def compose_config(path: str, *args: str, password: str | None = "test-only") -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    if password is not None:
        env["WEB_PASSWORD"] = password
    return subprocess.run([docker_compose(), "-f", path, *args, "config", "-q"], cwd=os.path.dirname(path),
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("profiles", [(), ("sim",), ("obs",), ("sim", "obs")])
def test_docker_compose_config_accepts_the_file(profiles):
    args = [a for p in profiles for a in ("--profile", p)]
    p = compose_config(COMPOSE_FILE, *args)
    assert p.returncode == 0, p.stderr


def test_docker_compose_refuses_to_start_without_a_web_password():
    p = compose_config(COMPOSE_FILE, password=None)
    assert p.returncode != 0 and "WEB_PASSWORD" in p.stderr, p.stderr


def _compose_copy(tmp_path, edit=lambda text: text) -> str:
    """The compose file (edited) in a temporary project with the files it refers to."""
    for rel in ("deploy/docker/tokenswarm.env", "deploy/prometheus/prometheus.yml"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        shutil.copy(os.path.join(ROOT, rel), tmp_path / rel)
    with open(COMPOSE_FILE, encoding="utf-8") as fh:
        text = fh.read()
    edited = edit(text)
    path = tmp_path / "docker-compose.yml"
    path.write_text(edited, encoding="utf-8")
    return str(path)


def _replace(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, f"the mutation no longer applies: {old!r} is not in docker-compose.yml"
        return text.replace(old, new, 1)
    return edit


@pytest.mark.parametrize("edit", [
    _replace("  init: true", '  init: "maybe"'),                       # wrong type
    _replace('    expose: ["5557"]', "    expose: {port: 5557}"),      # a mapping where a list belongs
    _replace("    stop_grace_period: 90s", "    stop_grace_perod: 90s"),  # unknown key
    _replace('nofile: {soft: "${NOFILE:-65536}"', 'nofile: {soft: "lots"'),  # not an integer
], ids=["init-type", "expose-type", "unknown-key", "ulimit-type"])
def test_docker_compose_config_rejects_a_broken_copy(tmp_path, edit):
    assert compose_config(_compose_copy(tmp_path)).returncode == 0  # the unbroken copy is fine
    broken = _compose_copy(tmp_path, edit)
    p = compose_config(broken)
    with open(broken, encoding="utf-8") as fh:
        assert p.returncode != 0, f"docker-compose accepted a broken file:\n{fh.read()}"


# -- kustomize: Python checks on the source files --------------------------------------------
def kustomization_dirs() -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(K8S):
        if "kustomization.yaml" in files:
            out.append(dirpath)
    return sorted(out)


def kustomization_problems(root: str) -> list[str]:
    """Files a kustomization lists must exist: resources, components, patches, generator files."""
    rel = os.path.relpath(root, ROOT)
    k = load_yaml(os.path.join(root, "kustomization.yaml")) or {}
    problems = []
    kind = k.get("kind", "Kustomization")
    want_api = "kustomize.config.k8s.io/v1alpha1" if kind == "Component" else "kustomize.config.k8s.io/v1beta1"
    if k.get("apiVersion") != want_api:
        problems.append(f"{rel}/kustomization.yaml: apiVersion {k.get('apiVersion')!r}, expected {want_api}")
    for key in ("bases", "patchesStrategicMerge", "patchesJson6902", "commonLabels", "vars"):
        if key in k:
            problems.append(f"{rel}/kustomization.yaml: {key!r} is deprecated in kustomize v5")
    for entry in k.get("resources") or []:
        path = os.path.normpath(os.path.join(root, entry))
        if os.path.isdir(path):
            if not os.path.isfile(os.path.join(path, "kustomization.yaml")):
                problems.append(f"{rel}: resource {entry!r} is a folder without kustomization.yaml")
            elif (load_yaml(os.path.join(path, "kustomization.yaml")) or {}).get("kind") == "Component":
                problems.append(f"{rel}: resource {entry!r} is a Component; list it under components")
            elif os.path.commonpath([path, root]) == path:
                problems.append(f"{rel}: resource {entry!r} contains this kustomization (kustomize: cycle)")
        elif not os.path.isfile(path):
            problems.append(f"{rel}: resource {entry!r} does not exist")
    for entry in k.get("components") or []:
        path = os.path.normpath(os.path.join(root, entry))
        kfile = os.path.join(path, "kustomization.yaml")
        if not os.path.isfile(kfile) or (load_yaml(kfile) or {}).get("kind") != "Component":
            problems.append(f"{rel}: component {entry!r} is not a folder with a kind: Component kustomization")
    files = [p.get("path") for p in k.get("patches") or [] if p.get("path")]
    for gen in (k.get("configMapGenerator") or []) + (k.get("secretGenerator") or []):
        files += [f.split("=", 1)[-1] for f in gen.get("files") or []] + list(gen.get("envs") or [])
    for entry in files:
        path = os.path.normpath(os.path.join(root, entry))
        if os.path.commonpath([path, root]) != root:
            problems.append(f"{rel}: {entry!r} is outside the kustomization's folder (kustomize refuses it)")
        elif not os.path.isfile(path):
            problems.append(f"{rel}: file {entry!r} does not exist")
    return problems


def test_every_kustomization_lists_files_that_exist():
    roots = kustomization_dirs()
    assert {os.path.relpath(r, K8S) for r in roots} >= {".", "base", "components/job", "components/sim",
                                                        "overlays/sim", "overlays/job", "overlays/sim-job"}
    problems = [p for r in roots for p in kustomization_problems(r)]
    assert problems == []


def test_kustomization_checks_catch_a_missing_file(tmp_path):
    shutil.copytree(K8S, tmp_path / "k8s")
    os.remove(tmp_path / "k8s" / "base" / "worker-deployment.yaml")
    os.remove(tmp_path / "k8s" / "base" / "locustfiles" / "chat.py")
    problems = kustomization_problems(str(tmp_path / "k8s" / "base"))
    assert any("worker-deployment.yaml" in p for p in problems) and any("chat.py" in p for p in problems)


def test_every_manifest_belongs_to_a_kustomization():
    listed = set()
    for root in kustomization_dirs():
        k = load_yaml(os.path.join(root, "kustomization.yaml")) or {}
        for entry in (k.get("resources") or []) + [p.get("path") for p in k.get("patches") or []]:
            if entry:
                listed.add(os.path.normpath(os.path.join(root, entry)))
    orphans = []
    for dirpath, _dirs, files in os.walk(K8S):
        for f in files:
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, K8S)
            if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml" and path not in listed \
                    and rel not in K8S_STANDALONE:
                orphans.append(rel)
    assert orphans == [], "manifests no kustomization applies"


def assemble(root: str) -> tuple[list[dict], dict[str, dict[str, str]]]:
    """A small kustomize stand-in: the objects a kustomization produces (resources, components,
    ``$patch: delete``) and its generated ConfigMaps as {name: literals}, without hash suffixes."""
    k = load_yaml(os.path.join(root, "kustomization.yaml")) or {}
    objects: list[dict] = []
    generated: dict[str, dict[str, str]] = {}
    for entry in k.get("resources") or []:
        path = os.path.normpath(os.path.join(root, entry))
        if os.path.isdir(path):
            objs, gens = assemble(path)
            objects += objs
            generated.update(gens)
        else:
            objects += load_docs(path)
    for entry in k.get("components") or []:
        objs, gens = assemble(os.path.normpath(os.path.join(root, entry)))
        objects += [o for o in objs if o.get("$patch") != "delete"]
        for name, literals in gens.items():
            generated.setdefault(name, {}).update(literals)
        objects = _apply_deletes(objects, os.path.normpath(os.path.join(root, entry)))
    for gen in k.get("configMapGenerator") or []:
        data = dict(line.split("=", 1) for line in gen.get("literals") or [])
        data.update({os.path.basename(f.split("=", 1)[-1]): "<file>" for f in gen.get("files") or []})
        if gen.get("behavior") == "merge":
            generated.setdefault(gen["name"], {}).update(data)
        else:
            generated[gen["name"]] = data
    return _apply_deletes(objects, root), generated


def _apply_deletes(objects: list[dict], root: str) -> list[dict]:
    k = load_yaml(os.path.join(root, "kustomization.yaml")) or {}
    for patch in k.get("patches") or []:
        if not patch.get("path"):
            continue
        for doc in load_docs(os.path.join(root, patch["path"])):
            if doc.get("$patch") == "delete":
                key = (doc.get("kind"), doc.get("metadata", {}).get("name"))
                objects = [o for o in objects if (o.get("kind"), o.get("metadata", {}).get("name")) != key]
    return objects


def pod_spec(obj: dict) -> dict | None:
    if obj.get("kind") == "Pod":
        return obj.get("spec") or {}
    if obj.get("kind") in WORKLOAD_KINDS:
        return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def pod_labels(obj: dict) -> dict:
    if obj.get("kind") == "Pod":
        return (obj.get("metadata") or {}).get("labels") or {}
    return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def manifest_problems(obj: dict, where: str) -> list[str]:
    """What the Kubernetes API would reject in one object, and what tokenswarm's pods must have."""
    problems: list[str] = []
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name")
    at = f"{where}: {kind}/{name}"
    if not obj.get("apiVersion") or not isinstance(kind, str) or not isinstance(name, str):
        return [f"{where}: apiVersion, kind and metadata.name are required ({obj.get('apiVersion')!r}, "
                f"{kind!r}, {name!r})"]
    if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
        problems.append(f"{at}: metadata.name is not a DNS subdomain")
    expected_api = {"Deployment": "apps/v1", "Job": "batch/v1", "Service": "v1", "ConfigMap": "v1", "Pod": "v1",
                    "PersistentVolumeClaim": "v1", "Secret": "v1"}.get(kind)
    if expected_api and obj["apiVersion"] != expected_api:
        problems.append(f"{at}: apiVersion {obj['apiVersion']!r}, expected {expected_api}")
    for key, value in ((obj.get("metadata") or {}).get("labels") or {}).items():
        if not isinstance(value, str):
            problems.append(f"{at}: label {key} must be a string, not {value!r}")
    spec = obj.get("spec") or {}
    if kind == "Secret":
        problems.append(f"{at}: no Secret objects in the repository: reference one the user creates")
    if kind == "Deployment":
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = pod_labels(obj)
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{at}: spec.selector.matchLabels {selector} does not match the pod labels {labels}")
        if not isinstance(spec.get("replicas", 1), int):
            problems.append(f"{at}: spec.replicas must be an integer")
    if kind == "Job":
        if pod_spec(obj).get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append(f"{at}: a Job's restartPolicy must be Never or OnFailure")
        if not isinstance(spec.get("backoffLimit", 6), int):
            problems.append(f"{at}: spec.backoffLimit must be an integer")
    if kind == "Service":
        if not spec.get("selector"):
            problems.append(f"{at}: spec.selector is empty")
        names = []
        for port in spec.get("ports") or []:
            names.append(port.get("name"))
            if not isinstance(port.get("port"), int) or not 0 < port["port"] < 65536:
                problems.append(f"{at}: port {port.get('port')!r} must be an integer in 1..65535")
            if not isinstance(port.get("targetPort", 0), (int, str)):
                problems.append(f"{at}: targetPort {port.get('targetPort')!r} must be an integer or a port name")
        if len(names) > 1 and (None in names or len(set(names)) != len(names)):
            problems.append(f"{at}: a Service with several ports needs a unique name for each")
    pod = pod_spec(obj)
    if pod is not None:
        problems += pod_problems(pod, at)
    return problems


def pod_problems(pod: dict, at: str) -> list[str]:
    problems = []
    volumes = {v.get("name") for v in pod.get("volumes") or []}
    if pod.get("enableServiceLinks") is not False:
        problems.append(f"{at}: enableServiceLinks must be false (service links inject TOKENSWARM_MASTER_* "
                        f"variables, tokenswarm's own namespace)")
    if (pod.get("securityContext") or {}).get("runAsNonRoot") is not True:
        problems.append(f"{at}: securityContext.runAsNonRoot must be true")
    containers = pod.get("containers") or []
    if not containers:
        problems.append(f"{at}: no containers")
    if len({c.get("name") for c in containers}) != len(containers):
        problems.append(f"{at}: container names must be unique")
    for c in containers:
        cat = f"{at} container {c.get('name')!r}"
        if not isinstance(c.get("name"), str) or not DNS_LABEL.match(c["name"]):
            problems.append(f"{cat}: name is required, a DNS label")
        image = c.get("image")
        if not isinstance(image, str) or not image:
            problems.append(f"{cat}: image is required")
        elif ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            problems.append(f"{cat}: image {image!r} needs a fixed tag")
        for key in ("command", "args"):
            if c.get(key) is not None and not all(isinstance(a, str) for a in c[key]):
                problems.append(f"{cat}: {key} must be strings only, got {c[key]!r}")
        for port in c.get("ports") or []:
            if not isinstance(port.get("containerPort"), int) or not 0 < port["containerPort"] < 65536:
                problems.append(f"{cat}: containerPort {port.get('containerPort')!r} must be an integer")
        for e in c.get("env") or []:
            if not isinstance(e.get("name"), str) or not e["name"]:
                problems.append(f"{cat}: env entry {e!r} has no name")
            elif ("value" in e) == ("valueFrom" in e):
                problems.append(f"{cat}: env {e['name']} needs exactly one of value and valueFrom")
            elif "value" in e and not isinstance(e["value"], str):
                problems.append(f"{cat}: env {e['name']} value {e['value']!r} must be a string (quote it)")
            elif is_secret_name(e["name"]) and "secretKeyRef" not in (e.get("valueFrom") or {}):
                problems.append(f"{cat}: env {e['name']} must come from a Secret (valueFrom.secretKeyRef)")
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                problems.append(f"{cat}: volumeMount {m.get('name')!r} refers to no declared volume")
            if not str(m.get("mountPath", "")).startswith("/"):
                problems.append(f"{cat}: mountPath {m.get('mountPath')!r} must be absolute")
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(kind) or {}):
                problems.append(f"{cat}: resources.{kind} needs cpu and memory")
    return problems


def variant_problems(objects: list[dict], generated: dict[str, dict[str, str]], where: str) -> list[str]:
    """Problems of one applied variant: references between objects, the master Service and pods."""
    problems = [p for o in objects for p in manifest_problems(o, where)]
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objects:
        by_kind.setdefault(o.get("kind"), {})[(o.get("metadata") or {}).get("name")] = o
    configmaps = dict(generated)
    for name, cm in by_kind.get("ConfigMap", {}).items():
        configmaps[name] = {k: "<file>" if "\n" in str(v) else str(v) for k, v in (cm.get("data") or {}).items()}
    claims = set(by_kind.get("PersistentVolumeClaim", {}))
    service = by_kind.get("Service", {}).get("tokenswarm-master")
    masters = [o for o in objects if pod_spec(o) is not None and o.get("kind") != "Pod"
               and pod_labels(o).get("app.kubernetes.io/component") == "master"]
    if service is None:
        problems.append(f"{where}: no Service tokenswarm-master")
    else:
        ports = {p.get("port") for p in service["spec"].get("ports") or []}
        if not ports >= MASTER_PORTS:
            problems.append(f"{where}: Service tokenswarm-master exposes {sorted(map(str, ports))}, needs 5557, "
                            f"5558 and 8089")
        selector = service["spec"].get("selector") or {}
        matching = [m for m in masters if all(pod_labels(m).get(k) == v for k, v in selector.items())]
        if len(masters) != 1 or len(matching) != 1:
            problems.append(f"{where}: Service tokenswarm-master must select exactly one master workload, "
                            f"selects {len(matching)} of {len(masters)}")
        others = [o for o in objects if pod_spec(o) is not None and o not in masters
                  and selector and all(pod_labels(o).get(k) == v for k, v in selector.items())]
        if others:
            names = [o["metadata"]["name"] for o in others]
            problems.append(f"{where}: Service tokenswarm-master also selects {names}")
    if "tokenswarm-worker" not in by_kind.get("Deployment", {}):
        problems.append(f"{where}: no Deployment tokenswarm-worker")
    for o in objects:
        pod = pod_spec(o)
        if pod is None:
            continue
        at = f"{where}: {o.get('kind')}/{o['metadata'].get('name')}"
        for v in pod.get("volumes") or []:
            cm = (v.get("configMap") or {}).get("name")
            if cm is not None and cm not in configmaps:
                problems.append(f"{at}: volume {v.get('name')} uses ConfigMap {cm!r}, which is not generated")
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is not None and claim not in claims:
                problems.append(f"{at}: volume {v.get('name')} uses the PVC {claim!r}, which is not declared")
        for c in pod.get("containers") or []:
            env_names = {e.get("name") for e in c.get("env") or []}
            for src in c.get("envFrom") or []:
                cm = (src.get("configMapRef") or {}).get("name")
                if cm is not None:
                    if cm not in configmaps:
                        problems.append(f"{at}: envFrom uses ConfigMap {cm!r}, which is not generated")
                    env_names |= set(configmaps.get(cm, {}))
                if "secretRef" in src:
                    problems.append(f"{at}: envFrom secretRef puts every key in the environment; name them")
            env_names.add("HOSTNAME")
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and ref.get("key") not in configmaps.get(ref.get("name"), {}):
                    problems.append(f"{at}: env {e['name']} refers to the missing key {ref.get('key')} of "
                                    f"ConfigMap {ref.get('name')}")
            for arg in [*(c.get("command") or []), *(c.get("args") or [])]:
                for var in re.findall(r"\$\((\w+)\)", str(arg)):
                    if var not in env_names:
                        problems.append(f"{at}: argument {arg!r} refers to $({var}), which the container lacks")
    problems += consistency_problems(objects, configmaps, where)
    return problems


def consistency_problems(objects: list[dict], configmaps: dict[str, dict[str, str]], where: str) -> list[str]:
    """tokenswarm's own rules: expected workers = worker replicas, the locustfile is in the ConfigMap."""
    problems = []
    config = next((v for k, v in configmaps.items() if k.startswith("tokenswarm-config")), None)
    locustfiles = next((v for k, v in configmaps.items() if k.startswith("tokenswarm-locustfiles")), None)
    if config is None or locustfiles is None:
        return [f"{where}: the ConfigMaps tokenswarm-config and tokenswarm-locustfiles are required"]
    worker = next((o for o in objects if o.get("kind") == "Deployment"
                   and o["metadata"]["name"] == "tokenswarm-worker"), None)
    if worker is not None and str(worker["spec"].get("replicas", 1)) != config.get("EXPECT_WORKERS"):
        problems.append(f"{where}: EXPECT_WORKERS={config.get('EXPECT_WORKERS')} in tokenswarm-config but the "
                        f"worker Deployment has {worker['spec'].get('replicas', 1)} replicas")
    if config.get("LOCUSTFILE") not in locustfiles:
        problems.append(f"{where}: LOCUSTFILE={config.get('LOCUSTFILE')} is not in the locustfiles ConfigMap "
                        f"({sorted(locustfiles)})")
    for key in config:
        if is_secret_name(key):
            problems.append(f"{where}: tokenswarm-config holds {key}: secrets belong in a Secret")
    return problems


@pytest.mark.parametrize("variant", K8S_VARIANTS)
def test_k8s_variant_passes_the_python_checks(variant):
    objects, generated = assemble(os.path.join(K8S, variant))
    assert variant_problems(objects, generated, variant or ".") == []


def test_k8s_standalone_manifests_pass_the_python_checks():
    for rel in sorted(K8S_STANDALONE):
        problems = [p for o in load_docs(os.path.join(K8S, rel)) for p in manifest_problems(o, rel)]
        assert problems == []


def test_k8s_job_variant_replaces_the_web_ui_master():
    objects, _ = assemble(os.path.join(K8S, "overlays", "job"))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Job", "tokenswarm-sweep") in kinds and ("Deployment", "tokenswarm-master") not in kinds
    job = next(o for o in objects if o["kind"] == "Job")
    container = pod_spec(job)["containers"][0]
    assert container["args"][:2] == ["sweep", "--master"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = {v["name"]: v for v in pod_spec(job)["volumes"]}[mounts["/app/reports"]]
    assert claim["persistentVolumeClaim"]["claimName"] == "tokenswarm-reports"
    # the sweep's load shape lives in the locustfile: the master's must have one
    config = next(v for _objs, gens in [assemble(os.path.join(K8S, "overlays", "job"))]
                  for k, v in gens.items() if k == "tokenswarm-config")
    with open(os.path.join(K8S_LOCUSTFILES, config["LOCUSTFILE"]), encoding="utf-8") as fh:
        assert "Shape" in fh.read(), f"{config['LOCUSTFILE']} has no load shape: the Job would not sweep"
    assert config.get("TOKENSWARM_LEVELS")


def test_k8s_web_ui_master_requires_the_login():
    objects, _ = assemble(K8S)
    master = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "tokenswarm-master")
    container = pod_spec(master)["containers"][0]
    assert container["args"][container["args"].index("--web-host") + 1] == "0.0.0.0"
    env = {e["name"]: e for e in container["env"]}
    assert env["LOCUST_WEB_LOGIN"]["value"] == "true"
    ref = env["TOKENSWARM_WEB_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "tokenswarm-secrets" and not ref.get("optional", False)  # no password: no pod


def _master(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "tokenswarm-master")


@pytest.mark.parametrize("mutate, expect", [
    (lambda objs, gen: _master(objs)["spec"]["selector"]["matchLabels"].update(
        {"app.kubernetes.io/component": "other"}), "does not match the pod labels"),
    (lambda objs, gen: pod_spec(_master(objs))["containers"][0].pop("image"), "image is required"),
    (lambda objs, gen: pod_spec(_master(objs))["containers"][0]["ports"][0].update(containerPort="5557"),
     "containerPort"),
    (lambda objs, gen: pod_spec(_master(objs))["containers"][0]["args"].append(8089), "strings only"),
    (lambda objs, gen: pod_spec(_master(objs))["containers"][0]["env"].append({"name": "X", "value": 1}),
     "must be a string"),
    (lambda objs, gen: pod_spec(_master(objs))["containers"][0]["env"].append({"name": "X"}), "exactly one"),
    (lambda objs, gen: pod_spec(_master(objs))["containers"][0]["env"].append(
        {"name": "OPENAI_API_KEY", "value": "sk-1"}), "must come from a Secret"),
    (lambda objs, gen: pod_spec(_master(objs))["containers"][0]["volumeMounts"].append(
        {"name": "nope", "mountPath": "/x"}), "no declared volume"),
    (lambda objs, gen: pod_spec(_master(objs))["containers"][0].pop("resources"), "resources.requests"),
    (lambda objs, gen: pod_spec(_master(objs)).pop("enableServiceLinks"), "enableServiceLinks"),
    (lambda objs, gen: next(o for o in objs if o["kind"] == "Service")["spec"]["ports"].pop(), "needs 5557"),
    (lambda objs, gen: next(o for o in objs if o["kind"] == "Service")["spec"]["ports"][0].update(port="5557"),
     "must be an integer"),
    (lambda objs, gen: next(o for o in objs if o["kind"] == "Service")["spec"]["selector"].update(
        {"app.kubernetes.io/component": "worker"}), "exactly one master"),
    (lambda objs, gen: gen["tokenswarm-config"].update(EXPECT_WORKERS="99"), "replicas"),
    (lambda objs, gen: gen["tokenswarm-config"].update(LOCUSTFILE="missing.py"), "not in the locustfiles"),
    (lambda objs, gen: gen.pop("tokenswarm-locustfiles"), "not generated"),
    (lambda objs, gen: pod_spec(_master(objs))["containers"][0]["args"].append("$(NOPE)"), "$(NOPE)"),
    (lambda objs, gen: objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                                    "stringData": {"api-key": "sk-1"}}), "no Secret objects"),
    (lambda objs, gen: objs.append({"kind": "Service", "metadata": {"name": "s"}}), "apiVersion, kind"),
])
def test_k8s_python_checks_catch_broken_manifests(mutate, expect):
    objects, generated = assemble(K8S)
    objects, generated = copy.deepcopy(objects), copy.deepcopy(generated)
    mutate(objects, generated)
    problems = variant_problems(objects, generated, "mutated")
    assert any(expect in p for p in problems), problems


# -- kustomize: the real renderer, and the Kubernetes OpenAPI schemas ----------------------------
def kustomize_command() -> list[str]:
    """``kustomize build`` or ``kubectl kustomize`` with kustomize >= 3.7 (components); skip otherwise."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("neither kustomize nor kubectl is installed; the Python checks still ran")
    out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"Kustomize Version: v(\d+)\.(\d+)", out)
    if m is None or (int(m[1]), int(m[2])) < (3, 7):
        pytest.skip(f"kubectl's kustomize is missing or older than v3.7 (no components): {out.strip()!r}")
    return [kubectl, "kustomize"]


def kustomize_build(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([*kustomize_command(), path], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("variant", K8S_VARIANTS)
def test_kustomize_renders_each_variant(variant):
    p = kustomize_build(os.path.join(K8S, variant))
    assert p.returncode == 0, p.stderr
    objects = [d for d in yaml.safe_load_all(p.stdout) if d]
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    # generated names carry a hash suffix; every reference must have been rewritten to one of them
    assert all(re.match(r"^tokenswarm-(config|locustfiles)-[a-z0-9]{10}$", n) for n in configmaps), configmaps
    problems = variant_problems(objects, {}, f"rendered {variant or '.'}")
    assert problems == []


def test_kustomize_rejects_a_broken_copy(tmp_path):
    shutil.copytree(K8S, tmp_path / "k8s")
    assert kustomize_build(str(tmp_path / "k8s")).returncode == 0
    os.remove(tmp_path / "k8s" / "base" / "locustfiles" / "completions.py")
    p = kustomize_build(str(tmp_path / "k8s"))
    assert p.returncode != 0 and "completions.py" in p.stderr, p.stderr


def _schema_documents() -> Iterator[tuple[str, dict]]:
    """Rendered variants where kustomize is available, else the source manifests themselves."""
    try:
        kustomize_command()
    except pytest.skip.Exception:
        for root in kustomization_dirs():
            k = load_yaml(os.path.join(root, "kustomization.yaml")) or {}
            for entry in k.get("resources") or []:
                path = os.path.join(root, entry)
                if os.path.isfile(path):
                    yield from ((os.path.relpath(path, ROOT), d) for d in load_docs(path))
    else:
        for variant in K8S_VARIANTS:
            p = kustomize_build(os.path.join(K8S, variant))
            assert p.returncode == 0, p.stderr
            yield from ((f"rendered {variant or '.'}", d) for d in yaml.safe_load_all(p.stdout) if d)
    for rel in sorted(K8S_STANDALONE):
        yield from ((rel, d) for d in load_docs(os.path.join(K8S, rel)))


def test_manifests_validate_against_the_kubernetes_schemas():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (pip install "
                             "kubernetes-validate): the Python checks still ran")
    failures = []
    for where, doc in _schema_documents():
        try:
            kv.validate(doc, kv.utils.latest_version(), strict=True)
        except kv.ValidationError as e:
            failures.append(f"{where}: {doc['kind']}/{doc['metadata']['name']}: {e}")
    assert failures == []


# -- consistency: tokenswarm subcommands and flags, Dockerfile, locustfile copies ------------------
def master_script_invocations() -> list[list[str]]:
    """``tokenswarm SUB --flags`` lines of deploy/docker/master.sh."""
    out = []
    with open(MASTER_SCRIPT, encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].split(";;", 1)[0]
            words = shlex.split(line) if "tokenswarm " in line else []
            if "tokenswarm" in words:
                out.append(words[words.index("tokenswarm") + 1:])
    return out


def dockerfile_instructions() -> list[tuple[str, str]]:
    with open(DOCKERFILE, encoding="utf-8") as fh:
        text = re.sub(r"\\\n", " ", fh.read())
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln.strip() else "")
            for ln in (raw.strip() for raw in text.splitlines()) if ln and not ln.startswith("#")]


def installed_programs() -> dict[str, str]:
    """Programs the Dockerfile installs from deploy/: {path in the image: source file}."""
    out = {}
    for op, rest in dockerfile_instructions():
        if op == "COPY" and "--from" not in rest:
            words = [w for w in rest.split() if not w.startswith("--")]
            if len(words) == 2 and words[0].startswith("deploy/"):
                out[os.path.basename(words[1]) if words[1].startswith("/usr/") else words[1]] = words[0]
    return out


def invocations() -> list[tuple[str, list[str]]]:
    """Every tokenswarm invocation in the deploy files: (where, [subcommand, args...])."""
    found: list[tuple[str, list[str]]] = []
    scripts = installed_programs()
    for name, svc in (compose().get("services") or {}).items():
        if name not in TOKENSWARM_SERVICES:
            continue
        entry = argv(svc.get("entrypoint"))
        if not entry or entry == ["tokenswarm"]:
            found.append((f"docker-compose.yml services.{name}", argv(svc.get("command"))))
        elif entry[0] in scripts and scripts[entry[0]] == "deploy/docker/master.sh":
            found += [(f"deploy/docker/master.sh (services.{name})", inv) for inv in master_script_invocations()]
        else:
            found.append((f"docker-compose.yml services.{name}", ["<entrypoint>", *entry]))
    objects = [o for variant in K8S_VARIANTS for o in assemble(os.path.join(K8S, variant))[0]]
    objects += [o for rel in sorted(K8S_STANDALONE) for o in load_docs(os.path.join(K8S, rel))]
    for o in objects:
        for c in (pod_spec(o) or {}).get("containers") or []:
            if str(c.get("image", "")).startswith("tokenswarm") and not c.get("command"):
                found.append((f"deploy/k8s {o['kind']}/{o['metadata']['name']}", [str(a) for a in c["args"]]))
    for op, rest in dockerfile_instructions():
        if op == "RUN":  # `tokenswarm X` or `/opt/venv/bin/tokenswarm X` in command position
            for m in re.finditer(r"(?:^|&&|;|\|\|)\s*(?:\S*/)?tokenswarm\s+(\S+)", rest):
                found.append(("deploy/docker/Dockerfile RUN", [m[1]]))
    return found


def test_every_tokenswarm_subcommand_is_known():
    seen = invocations()
    subs = {inv[0] for _where, inv in seen}
    assert subs >= {"simengine", "ui", "sweep", "worker"}, seen
    assert {"run", "sweep", "ui", "worker", "simengine", "report", "compare", "capacity", "runs"} <= SUBCOMMANDS
    unknown = [(where, inv[:1]) for where, inv in seen if inv[0] not in SUBCOMMANDS | {"--version", "--help"}]
    assert unknown == []


def cli_help(*args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "tokenswarm", *args, "--help"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    return p.stdout if p.returncode == 0 else ""


def test_every_flag_in_the_deploy_files_is_a_cli_flag():
    if not re.search(r"\bworker\b", cli_help()):
        pytest.skip("`tokenswarm worker` does not exist yet (the distributed runtime has not landed)")
    missing = []
    helps: dict[str, str] = {}
    for where, inv in invocations():
        sub, flags = inv[0], [a.split("=", 1)[0] for a in inv[1:] if a.startswith("--")]
        if sub not in SUBCOMMANDS:
            continue
        text = helps.setdefault(sub, cli_help(sub))
        missing += [f"{where}: tokenswarm {sub} {f}" for f in flags
                    if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert missing == []


def test_locust_variables_exist_in_locust():
    spec = importlib.util.find_spec("locust")  # found, not imported: importing locust monkey-patches
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("locust is not installed")
    with open(os.path.join(list(spec.submodule_search_locations)[0], "argument_parser.py"), encoding="utf-8") as fh:
        blocks = fh.read().split("add_argument(")
    valid = {m for b in blocks if "raise_argument_type_error" not in b for m in re.findall(r'env_var="(\w+)"', b)}
    used = set(env_mapping(compose()["services"]["master"].get("environment")))
    for o in assemble(K8S)[0] + assemble(os.path.join(K8S, "overlays", "sim-job"))[0]:
        for c in (pod_spec(o) or {}).get("containers") or []:
            used |= {e["name"] for e in c.get("env") or []}
    bad = sorted(v for v in used if v.startswith("LOCUST_") and v not in valid)
    assert bad == [], "not Locust variables, or removed ones (LOCUST_WEB_AUTH is an error since Locust 2.22)"
    assert "LOCUST_WEB_LOGIN" in valid


def test_dockerfile_copies_what_pip_install_needs():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= set(project["tool"]["setuptools"]["packages"]["find"]["where"])
    copied = set()
    for op, rest in dockerfile_instructions():
        if op == "COPY" and "--from" not in rest:
            words = [w for w in rest.split() if not w.startswith("--")]
            copied |= {w.rstrip("/") for w in words[:-1]}
            for w in words[:-1]:
                assert os.path.exists(os.path.join(ROOT, w)), f"Dockerfile copies {w}, which does not exist"
    assert needed <= copied, f"pip install . needs {sorted(needed - copied)}"
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as fh:
        ignored = {ln.strip().rstrip("/") for ln in fh if ln.strip() and not ln.startswith("#")}
    assert not (needed | {"locustfiles", "deploy/docker/master.sh", "deploy/docker/wheels"}) & ignored
    assert {".venv", "reports", ".git", ".pytest_cache", ".ruff_cache", "**/__pycache__"} <= ignored


def test_dockerfile_runs_tokenswarm_as_a_non_root_user_without_secrets():
    ins = dockerfile_instructions()
    assert ins[-1] == ("CMD", '["--help"]') and ("ENTRYPOINT", '["tokenswarm"]') in ins
    froms = [rest for op, rest in ins if op == "FROM"]
    assert froms and all("${PYTHON_IMAGE}" in f for f in froms)
    assert ("ARG", "PYTHON_IMAGE=python:3.12-slim") in ins
    users = [rest for op, rest in ins if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    workdir = [rest for op, rest in ins if op == "WORKDIR"][-1]
    assert workdir == "/app"  # reports/ relative to it is the mounted /app/reports
    for op, rest in ins:
        if op in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", rest) or rest.split()[:1]
            assert not any(map(is_secret_name, names)), f"{op} {rest}: no secrets in the image"
    assert "tokenswarm-master" in installed_programs()


BUILDKIT_ONLY_FLAGS = {"chmod", "mount", "link", "network", "security", "parents", "exclude", "checksum"}


def dockerfile_builder_problems(text: str) -> list[str]:
    """What keeps a Dockerfile from building with the legacy builder, or makes BuildKit pull more than the base:
    a `# syntax=` line (BuildKit pulls that frontend image from Docker Hub), flags only BuildKit knows
    (`COPY --chmod`, `RUN --mount`, ...), heredocs; and a FROM other than the PYTHON_IMAGE build argument or
    a stage of the same file."""
    problems = []
    if re.search(r"^#\s*syntax\s*=", text, re.M | re.I):
        problems.append("a `# syntax=` line: BuildKit pulls that frontend image (no registry, no build)")
    joined = re.sub(r"\\\n", " ", text)
    stages: set[str] = set()
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        words = rest.split()
        flags = {w[2:].split("=", 1)[0] for w in itertools.takewhile(lambda w: w.startswith("--"), words)}
        if flags & BUILDKIT_ONLY_FLAGS:
            problems.append(f"{op} {rest[:50]}: --{', --'.join(sorted(flags & BUILDKIT_ONLY_FLAGS))} needs BuildKit")
        if "<<" in rest and op.upper() in ("RUN", "COPY"):
            problems.append(f"{op} {rest[:50]}: heredocs need BuildKit")
        if op.upper() == "FROM":
            base = [w for w in words if not w.startswith("--")]
            if base and base[0] != "${PYTHON_IMAGE}" and base[0] not in stages:
                problems.append(f"FROM {base[0]}: the base image comes from the PYTHON_IMAGE build argument")
            if len(base) == 3 and base[1].upper() == "AS":
                stages.add(base[2])
    return problems


def test_dockerfile_builds_without_buildkit_and_pulls_only_its_base():
    with open(DOCKERFILE, encoding="utf-8") as fh:
        assert dockerfile_builder_problems(fh.read()) == []
    assert any(op == "COPY" and rest.split()[:1] == ["deploy/docker/wheels"] for op, rest in dockerfile_instructions())


@pytest.mark.parametrize("old, new, expect", [
    ("# One image", "# syntax=docker/dockerfile:1\n# One image", "syntax"),
    ("COPY deploy/docker/master.sh", "COPY --chmod=0755 deploy/docker/master.sh", "--chmod"),
    ("RUN python3 -m venv /opt/venv", "RUN --mount=type=cache,target=/root/.cache python3 -m venv /opt/venv",
     "--mount"),
    ("FROM ${PYTHON_IMAGE}\n", "FROM python:3.12-slim\n", "PYTHON_IMAGE"),
])
def test_dockerfile_builder_check_catches_a_broken_copy(old, new, expect):
    with open(DOCKERFILE, encoding="utf-8") as fh:
        text = fh.read()
    assert old in text, f"the mutation no longer applies: {old!r}"
    problems = dockerfile_builder_problems(text.replace(old, new, 1))
    assert any(expect in p for p in problems), problems


def test_master_script_is_valid_shell():
    p = subprocess.run(["sh", "-n", MASTER_SCRIPT], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


def test_master_script_builds_each_mode(tmp_path):
    fake = tmp_path / "tokenswarm"
    fake.write_text('#!/bin/sh\necho "tokenswarm $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "WORKERS": "8"}
    for mode, expect in [("ui", "tokenswarm ui --master --expect-workers 8 --web-host 0.0.0.0 --web-port 8089"),
                         ("sweep", "tokenswarm sweep --master --expect-workers 8"),
                         ("run", "tokenswarm run --master --expect-workers 8")]:
        p = subprocess.run(["sh", MASTER_SCRIPT], env={**env, "MODE": mode}, capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout.strip() == expect, p.stdout + p.stderr
    for bad in ({"MODE": "swep"}, {"MODE": "ui", "WORKERS": "0"}, {"MODE": "ui", "WORKERS": "many"}):
        p = subprocess.run(["sh", MASTER_SCRIPT], env={**env, **bad}, capture_output=True, text=True)
        assert p.returncode == 2 and "error" in p.stderr and not p.stdout, (bad, p.stdout, p.stderr)


@pytest.mark.parametrize("env, args, message", [
    ({"WORKERS": "0"}, [], "WORKERS=0: must be a whole number of workers, at least 1"),
    ({"WORKERS": "four"}, [], "WORKERS=four"),
    ({"MODE": "ui"}, [], "MODE=ui: this script runs headless tests"),
    ({"TIMEOUT": "soon"}, [], "TIMEOUT=soon"),
    ({}, ["stop"], "unknown action 'stop'"),
])
def test_up_local_script_bad_input_is_one_line_and_exit_2(env, args, message):
    """Checked before anything is installed or started."""
    script = os.path.join(ROOT, "deploy", "docker", "up-local.sh")
    p = subprocess.run([script, *args], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
                                              **env}, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
    assert p.stderr.splitlines() == [f"up-local.sh: error: {p.stderr.split('error: ', 1)[1].strip()}"]
    assert message in p.stderr


def test_shell_scripts_pass_shellcheck():
    """The compose master's entry point, the compose bring-up, the engine build and GPU scripts (deploy/gpu/vllm/
    too, following the files they source), and CI's entry point."""
    scripts = [MASTER_SCRIPT, os.path.join(ROOT, ".ci", "run"),
               *glob.glob(os.path.join(ROOT, "deploy", "*", "*.sh")),
               *glob.glob(os.path.join(ROOT, "deploy", "*", "*", "*.sh"))]
    assert os.path.join(ROOT, "deploy", "llamacpp", "build.sh") in scripts
    assert os.path.join(ROOT, "deploy", "gpu", "vllm", "sweep.sh") in scripts
    assert os.path.join(ROOT, "deploy", "docker", "up-local.sh") in scripts
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (Debian: apt-get install shellcheck); `sh -n` still ran")
    p = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stdout


def test_k8s_locustfile_copies_equal_the_top_level_locustfiles():
    top = sorted(f for f in os.listdir(LOCUSTFILES) if f.endswith(".py"))
    copies = sorted(f for f in os.listdir(K8S_LOCUSTFILES) if f.endswith(".py"))
    assert copies == top, "deploy/k8s/base/locustfiles/ must hold a copy of each locustfiles/*.py"
    _match, mismatch, errors = filecmp.cmpfiles(LOCUSTFILES, K8S_LOCUSTFILES, top, shallow=False)
    assert mismatch == [] and errors == [], (
        f"deploy/k8s/base/locustfiles/ differs from locustfiles/ in {mismatch + errors}: "
        "cp locustfiles/*.py deploy/k8s/base/locustfiles/")
    generator = next(g for g in load_yaml(os.path.join(K8S, "base", "kustomization.yaml"))["configMapGenerator"]
                     if g["name"] == "tokenswarm-locustfiles")
    assert sorted(os.path.basename(f) for f in generator["files"]) == top


# -- prometheus ----------------------------------------------------------------------------
def test_prometheus_config_scrapes_the_master_and_the_engine():
    config = load_yaml(PROMETHEUS_CONFIG)
    targets = {}
    for job in config["scrape_configs"]:
        for sc in job["static_configs"]:
            for t in sc["targets"]:
                targets[t] = job.get("metrics_path", "/metrics")
    assert targets.get("master:8089") == "/metrics" and targets.get("simengine:8000") == "/metrics", targets
    services = compose()["services"]
    assert {t.split(":")[0] for t in targets} <= set(services)
    mounts = [str(v).split(":") for v in services["prometheus"]["volumes"]]
    assert ["./deploy/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml", "ro"] in mounts


def test_promtool_accepts_the_prometheus_config():
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus); the Python check still ran")
    p = subprocess.run(["promtool", "check", "config", PROMETHEUS_CONFIG], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


# -- Grafana -----------------------------------------------------------------------------------
GRAFANA = os.path.join(ROOT, "deploy", "grafana")


def test_grafana_dashboard_queries_metrics_that_exist():
    """Every metric the dashboard queries is one tokenswarm exports, an engine name tokenswarm.enginemetrics maps,
    or a DCGM field tokenswarm.gpumetrics reads."""
    import json
    import re

    from tokenswarm.enginemetrics import MAPPING
    from tokenswarm.gpumetrics import FIELDS

    with open(os.path.join(GRAFANA, "dashboards", "tokenswarm.json")) as fh:
        dash = json.load(fh)
    exported = {"tokenswarm_ttft_seconds_bucket", "tokenswarm_tpot_seconds_bucket", "tokenswarm_itl_seconds_bucket",
                "tokenswarm_e2e_seconds_bucket", "tokenswarm_output_tokens_total", "tokenswarm_input_tokens_total",
                "tokenswarm_requests_total", "tokenswarm_users", "tokenswarm_level", "tokenswarm_worker_cpu_percent",
                "tokenswarm_worker_loop_lag_seconds"}
    engine = {name for name, *_ in MAPPING} | set(FIELDS)
    titles = [p["title"] for p in dash["panels"]]
    for want in ("Output tokens/s", "TTFT p50 / p99", "TPOT p50 / p99", "Users and level", "Requests by status",
                 "Engine KV-cache use", "GPU power (W)", "Energy per output token (J)"):
        assert want in titles
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"
        for t in panel["targets"]:
            names = set(re.findall(r"\b([a-z_]+:[a-z_:]+|tokenswarm_[a-z_]+|DCGM_FI_[A-Z_]+)\b", t["expr"]))
            assert names, t["expr"]
            for n in names:
                assert n in exported or n in engine, (panel["title"], n)
    with open(os.path.join(GRAFANA, "provisioning", "datasources", "prometheus.yml")) as fh:
        ds = yaml.safe_load(fh)
    assert ds["datasources"][0]["uid"] == "prometheus" and ds["datasources"][0]["url"] == "http://prometheus:9090"


def test_grafana_is_wired_into_the_obs_profile():
    g = compose()["services"]["grafana"]
    assert g["profiles"] == ["obs"] and "prometheus" in g["depends_on"]
    mounts = " ".join(g["volumes"])
    assert "./deploy/grafana/provisioning" in mounts and "./deploy/grafana/dashboards" in mounts
    assert all(p.startswith("127.0.0.1:") for p in g["ports"])
