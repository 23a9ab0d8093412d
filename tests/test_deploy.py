"""Deployment artefacts, checked offline: the container images (hadolint, their conventions, the commands they
run) and the Kubernetes manifests (every overlay rendered by ``kubectl kustomize``, alone and with the
components, validated strictly against the Kubernetes API schemas, then the operational rules: non-root
read-only containers, probes on declared ports, PDBs, default-deny network policies, GPUs and queue-metric
scaling in the gpu overlay, init commands that the real CLIs accept, alert metrics that the code exports).

Slow tests install one extra into a fresh virtual environment and check what it leaves out; a Triton test
checks that the ``nv_*`` metrics the autoscaler and the alerts read are the ones Triton serves.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from conftest import REPO, SHARED

K8S = REPO / "k8s"
BIN = Path(sys.executable).parent
#: the Kubernetes versions the manifests must validate against: the oldest supported here and the newest
#: the validator ships (an API removed in between fails the first or the second)
K8S_VERSIONS = ("1.34", "1.37")
OVERLAYS = ("cpu", "gpu")
COMPONENTS = ("autoscaling", "monitoring", "network-policies")


def _own_components(overlay: str) -> tuple[str, ...]:
    kz = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    return tuple(Path(c).name for c in kz.get("components", []))


def _renders() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The renders checked: each overlay alone, with each component it does not include already, with all
    of them, and with KEDA instead of the Triton HPA."""
    renders: dict[str, tuple[str, tuple[str, ...]]] = {}
    for overlay in OVERLAYS:
        extra = tuple(c for c in COMPONENTS if c not in _own_components(overlay))
        renders[overlay] = (overlay, ())
        renders.update({f"{overlay}+{c}": (overlay, (c,)) for c in extra})
        if len(extra) > 1:
            renders[f"{overlay}+all"] = (overlay, extra)
        autoscaling = ("autoscaling",) if "autoscaling" in extra else ()
        renders[f"{overlay}+keda"] = (overlay, (*autoscaling, "autoscaling/keda"))
        renders[f"{overlay}+external-postgres"] = (overlay, ("external-postgres",))
    return renders


RENDERS = _renders()
#: every Dockerfile of the project's folders (the top-level folders are fixed)
DOCKERFILES = sorted(
    p.relative_to(REPO).as_posix()
    for top in ("services", "gateway", "export", "model_repository", "k8s", "loadtests")
    for p in [*(REPO / top).glob("**/Dockerfile"), *(REPO / top).glob("**/Containerfile")]
) + sorted(p.name for p in REPO.glob("*file") if p.name in ("Dockerfile", "Containerfile"))
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install the dev extra (pip install -e '.[dev]' -c constraints.txt)")
    return found


def _run(cmd: list[str], *, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


# --- images ----------------------------------------------------------------------------------------------


def test_every_deployable_has_a_dockerfile() -> None:
    assert DOCKERFILES == [
        "gateway/Dockerfile",
        "model_repository/Dockerfile",
        "services/kinematics/Dockerfile",
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint(dockerfile: str) -> None:
    done = _run([_tool("hadolint"), "--no-color", "--failure-threshold", "info", dockerfile], cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def _stages(dockerfile: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(stage name, [(INSTRUCTION, arguments)]) per build stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / dockerfile).read_text())
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            name = rest.split(" AS ")[-1].strip() if " AS " in rest else f"stage{len(stages)}"
            stages.append((name, []))
        elif stages:
            stages[-1][1].append((op, rest.strip()))
    return stages


def _final_stages(dockerfile: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The stages that are images (not copied from by another stage)."""
    stages = _stages(dockerfile)
    sources = {
        m.group(1)
        for _, ins in stages
        for op, rest in ins
        if op == "COPY"
        for m in [re.search(r"--from=(\S+)", rest)]
        if m
    }
    return [(n, ins) for n, ins in stages if n not in sources]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_conventions(dockerfile: str) -> None:
    """Each image: numeric non-root user, exec-form entrypoint whose command exists, a health check, OCI
    labels, dependencies pinned by constraints.txt; every file it copies exists and passes .dockerignore."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    finals = _final_stages(dockerfile)
    assert finals, dockerfile
    for name, ins in finals:
        ops = dict(ins)
        user = [rest for op, rest in ins if op == "USER"][-1]
        uid, _, gid = user.partition(":")
        assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit()), (name, user)
        assert "HEALTHCHECK" in ops, name
        assert "org.opencontainers.image.title" in ops.get("LABEL", ""), name
        entrypoint = json.loads(ops["ENTRYPOINT"])  # exec form (a JSON array)
        assert isinstance(entrypoint, list) and entrypoint, name
        if entrypoint[0] in ("gaitway", "gaitway-kinematics"):
            assert entrypoint[0] in scripts
        elif entrypoint[0] == "python":
            assert entrypoint[1] == "-m"
            module = REPO / (entrypoint[2].replace(".", "/") + ".py")
            assert module.is_file(), entrypoint
        else:
            assert entrypoint == ["tritonserver"], entrypoint
    stages = _stages(dockerfile)
    installs = [rest for _, ins in stages for op, rest in ins if op == "RUN" and " install " in rest]
    for cmd in installs:
        if "pip install" in cmd:
            assert "-c constraints.txt" in cmd, cmd
    ignore = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    ignore = [ln for ln in ignore if ln and not ln.startswith("#")]
    assert ignore[0] == "**", "the build context starts from nothing and names what it takes"
    for _, ins in stages:
        for op, rest in ins:
            if op != "COPY" or "--from=" in rest:
                continue
            for src in shlex.split(rest)[:-1]:
                assert (REPO / src).exists(), src
                assert f"!{src}" in ignore, f"{src} is excluded from the build context by .dockerignore"


ENTRYPOINT_COMMANDS = {
    "gateway": ["gaitway", "serve", "--help"],
    "models fetch (init containers)": ["gaitway", "models", "fetch", "--help"],
    "kinematics": ["gaitway-kinematics", "--help"],
    "triton cpu": ["python", "-m", "services.pose.triton", "serve", "--help"],
    "repository (cpu init)": ["python", "-m", "export.repository", "--help"],
    "prepare (gpu init)": ["python", "-m", "export.prepare", "--help"],
    "tensorrt (gpu init)": ["python", "-m", "export.tensorrt", "--help"],
}


@pytest.mark.parametrize("what", ENTRYPOINT_COMMANDS)
def test_image_commands_start(what: str) -> None:
    """The commands the images and the init containers run exist and start (their --help)."""
    cmd = ENTRYPOINT_COMMANDS[what]
    exe = sys.executable if cmd[0] == "python" else _tool(cmd[0])
    done = _run([exe, *cmd[1:]], timeout=30, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage:" in done.stdout


# --- the extras install alone ----------------------------------------------------------------------------


def _fresh_venv(tmp_path: Path, extra: str) -> Path:
    """A new virtual environment with only ``.[extra]`` (pinned by constraints.txt), installed as the images
    install it: from a copy of what .dockerignore lets into the build context. Its bin folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("services", "gateway", "export"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp_path / "venv"
    done = _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    assert done.returncode == 0, done.stderr
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = _run([*pip, "-c", str(src / "constraints.txt"), f"{src}[{extra}]"], timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return venv / "bin"


def _importable(bin_dir: Path, modules: list[str]) -> dict[str, bool]:
    code = (
        "import importlib.util as u, json, sys; "
        "print(json.dumps({m: u.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    done = _run([str(bin_dir / "python"), "-c", code, *modules], cwd="/", timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, bool] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def rbds_body() -> dict[str, Any]:
    """The kinematics request of the RBDS001 treadmill run (10 s at 150 Hz), and the answer of the
    in-process engine to it."""
    import math

    from services.kinematics.client import LocalKinematics
    from services.kinematics.mocap import rbds_motion, read_c3d
    from services.kinematics.schema import KinematicsRequest

    root = SHARED / "data/mocap-running-rbds"
    motion = rbds_motion(read_c3d(root / "RBDS001runT35.c3d"), read_c3d(root / "RBDS001static.c3d"))
    frames = slice(0, 1500)
    joints = {
        name: [[None if not math.isfinite(v) else float(v) for v in row] for row in xyz[frames]]
        for name, xyz in motion.joints.items()
    }
    request = KinematicsRequest(
        t=[float(v) for v in motion.t[frames]],
        joints3d=joints,
        up=(float(motion.up[0]), float(motion.up[1]), float(motion.up[2])),
        metric=True,
    )
    local = LocalKinematics().analyze(request)
    return {"request": request.model_dump(mode="json"), "cadence": local.summary["cadence_spm"].mean}


@pytest.mark.slow
def test_kinematics_extra_installs_alone(tmp_path: Path, rbds_body: dict[str, Any]) -> None:
    """The kinematics image's dependency set: no video decoding, inference runtime, Triton client, gRPC,
    database or torch; and with it alone the service starts and measures RBDS001's cadence."""
    bin_dir = _fresh_venv(tmp_path, "kinematics")
    absent = ["av", "cv2", "onnxruntime", "tritonclient", "torch", "grpc", "sqlalchemy", "matplotlib"]
    assert _importable(bin_dir, absent) == dict.fromkeys(absent, False)
    done = _run([str(bin_dir / "gaitway-kinematics"), "--help"], timeout=30, cwd="/")
    assert done.returncode == 0 and "usage:" in done.stdout, done.stdout + done.stderr

    from services.pose.triton import free_port

    port = free_port()
    env = {**os.environ, "GAITWAY_KINEMATICS_HOST": "127.0.0.1", "GAITWAY_KINEMATICS_PORT": str(port)}
    log_path = tmp_path / "kinematics.log"
    with log_path.open("wb") as log_file:  # a file, not a pipe: the service's log never blocks it
        proc = subprocess.Popen(
            [str(bin_dir / "gaitway-kinematics")], env=env, cwd="/", stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-2000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the kinematics service did not become ready"
            time.sleep(0.2)
        r = httpx.post(f"{url}/v1/kinematics", json=rbds_body["request"], timeout=120)
        assert r.status_code == 200, r.text[:500]
        cadence = r.json()["summary"]["cadence_spm"]["mean"]
        assert cadence == pytest.approx(rbds_body["cadence"], abs=1e-9)
        assert abs(cadence - 171) <= 2  # the published cadence of RBDS001 at 3.5 m/s
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_gateway_extra_has_no_torch_and_no_runtime(tmp_path: Path) -> None:
    """The gateway image's dependency set runs `gaitway serve` with its models in Triton: no torch, no
    in-process inference runtime, no ONNX tooling."""
    bin_dir = _fresh_venv(tmp_path, "gateway")
    absent = ["torch", "onnxruntime", "onnx", "onnxslim"]
    assert _importable(bin_dir, absent) == dict.fromkeys(absent, False)
    # ezc3d: every analysis writes its C3D export
    present = ["av", "cv2", "tritonclient", "grpc", "sqlalchemy", "psycopg", "fastapi", "matplotlib", "ezc3d"]
    assert _importable(bin_dir, present) == dict.fromkeys(present, True)
    for cmd in (["serve", "--help"], ["models", "fetch", "--help"]):
        done = _run([str(bin_dir / "gaitway"), *cmd], timeout=60, cwd="/")
        assert done.returncode == 0 and "usage:" in done.stdout, done.stdout + done.stderr


# --- Kubernetes: rendering and schemas --------------------------------------------------------------------


@functools.cache
def render(overlay: str, components: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of an overlay, with components added by a kustomization around it."""
    if not components:
        target = K8S / "overlays" / overlay
        done = _run([_tool("kubectl"), "kustomize", str(target)])
    else:
        with tempfile.TemporaryDirectory(prefix="gaitway-kustomize-") as tmp:
            rel = os.path.relpath(K8S, tmp)
            kz = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "gaitway",
                "resources": [f"{rel}/overlays/{overlay}"],
                "components": [f"{rel}/components/{c}" for c in components],
            }
            (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kz))
            done = _run([_tool("kubectl"), "kustomize", tmp])
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _rendered(name: str) -> list[dict[str, Any]]:
    overlay, components = RENDERS[name]
    return render(overlay, components)


_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}


def _crd(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"$ref": _DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": spec,
        },
    }


#: the custom resources these manifests may use, with structural schemas of the fields of their CRDs
#: (prometheus-operator monitoring.coreos.com/v1, KEDA keda.sh/v1alpha1) that are allowed here
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _crd(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"$ref": _DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _crd(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "oneOf": [
                                        {
                                            "type": "object",
                                            "required": ["record", "expr"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "record": {
                                                    "type": "string",
                                                    "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$",
                                                },
                                                "expr": {"type": "string", "minLength": 1},
                                                "labels": _STRINGS,
                                            },
                                        },
                                        {
                                            "type": "object",
                                            "required": ["alert", "expr"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "alert": {
                                                    "type": "string",
                                                    "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$",
                                                },
                                                "expr": {"type": "string", "minLength": 1},
                                                "for": _DURATION,
                                                "keep_firing_for": _DURATION,
                                                "labels": _STRINGS,
                                                "annotations": _STRINGS,
                                            },
                                        },
                                    ]
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): _crd(
        "keda.sh/v1alpha1",
        "ScaledObject",
        {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {
                                    "$ref": _DEFS
                                    + "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
                                },
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "metadata": _STRINGS,
                        },
                    },
                },
            },
        },
    ),
}


@functools.cache
def _k8s_definitions(version: str) -> referencing.Registry[Any]:
    """The Kubernetes object definitions the validator ships for ``version`` (strict), as a registry."""
    import importlib.resources

    path = importlib.resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{version}.0-local-strict/_definitions.json"
    )
    defs = json.loads(path.read_text())
    return referencing.Registry().with_resource(defs["$id"], referencing.Resource.from_contents(defs))


def validation_errors(doc: dict[str, Any], version: str) -> list[str]:
    """Why ``doc`` is not a valid object for Kubernetes ``version`` (strict: unknown fields fail; a kind or
    API version the version does not serve fails, unless it is one of the custom resources allowed here)."""
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        schema = CRD_SCHEMAS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
        if schema is None:
            return [
                f"{where}: {doc.get('apiVersion')} {doc.get('kind')} is not served by Kubernetes {version}"
            ]
        validator = jsonschema.Draft202012Validator(schema, registry=_k8s_definitions(version))
        return [f"{where}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
    return []


@pytest.mark.parametrize("name", RENDERS)
def test_overlay_renders_and_validates(name: str) -> None:
    docs = _rendered(name)
    assert docs
    errors = [e for v in K8S_VERSIONS for d in docs for e in validation_errors(d, v)]
    assert not errors, "\n".join(errors)
    assert len({(d["kind"], d["metadata"]["name"]) for d in docs}) == len(docs), "duplicate objects"
    assert all(d["metadata"].get("namespace") == "gaitway" for d in docs if d["kind"] != "Namespace")


def _deployment(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolice="Always"),
            id="unknown-field",
        ),
        pytest.param(lambda d: d.update(apiVersion="extensions/v1beta1"), id="removed-api"),
        pytest.param(lambda d: d.update(apiVersion="example.com/v1", kind="Widget"), id="unknown-kind"),
        pytest.param(lambda d: d["spec"].update(replicas="two"), id="wrong-type"),
    ],
)
def test_validation_rejects_what_a_cluster_would(mutate: Any) -> None:
    """The check above can fail: strict validation refuses unknown fields, removed APIs and foreign kinds."""
    doc = json.loads(json.dumps(_deployment(render("cpu"), "gateway")))
    assert validation_errors(doc, K8S_VERSIONS[-1]) == []
    mutate(doc)
    assert validation_errors(doc, K8S_VERSIONS[-1])


def test_crd_schemas_reject_typos() -> None:
    docs = _rendered("gpu+keda")
    scaled = json.loads(json.dumps(next(d for d in docs if d["kind"] == "ScaledObject")))
    assert validation_errors(scaled, K8S_VERSIONS[-1]) == []
    scaled["spec"]["triggers"][0]["metricTyp"] = "Value"
    assert validation_errors(scaled, K8S_VERSIONS[-1])
    rule = json.loads(json.dumps(next(d for d in render("gpu") if d["kind"] == "PrometheusRule")))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    assert validation_errors(rule, K8S_VERSIONS[-1])


# --- Kubernetes: operational rules ------------------------------------------------------------------------


def _pods(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        if d["kind"] in POD_KINDS:
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize("name", RENDERS)
def test_every_container_is_non_root_with_a_read_only_root(name: str) -> None:
    for workload, pod in _pods(_rendered(name)):
        assert pod.get("automountServiceAccountToken") is False, workload
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0, workload
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        for c in _containers(pod):
            sc = c["securityContext"]
            where = f"{workload}/{c['name']}"
            assert sc.get("runAsNonRoot", True) is True and sc.get("runAsUser", 1) > 0, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], where
            assert "memory" in c["resources"]["limits"] and {"cpu", "memory"} <= set(
                c["resources"]["requests"]
            ), where
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: the read-only root needs a writable /tmp"


@pytest.mark.parametrize("name", RENDERS)
def test_probe_ports_name_container_ports(name: str) -> None:
    for workload, pod in _pods(_rendered(name)):
        for c in pod["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            probes = {k: c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in c}
            assert {"readinessProbe", "livenessProbe"} <= set(probes), f"{workload}/{c['name']}"
            for kind, probe in probes.items():
                handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                if handler is None:
                    assert "exec" in probe, f"{workload}/{c['name']} {kind}"
                    continue
                port = handler["port"]
                assert port in ports or port in ports.values(), f"{workload}/{c['name']} {kind}: port {port}"
    # every Service's target ports are named ports of the pods it selects
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in _rendered(name) if d["kind"] in POD_KINDS}
    for svc in (d for d in _rendered(name) if d["kind"] == "Service"):
        selected = [
            t for t in pods.values() if svc["spec"]["selector"].items() <= t["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, svc["metadata"]["name"]
        names = {p["name"] for c in selected[0]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names, svc["metadata"]["name"]


def test_triton_serves_named_ports_with_health_probes_and_memory_shm() -> None:
    for overlay in OVERLAYS:
        pod = _deployment(render(overlay), "triton")["spec"]["template"]["spec"]
        c = next(c for c in pod["containers"] if c["name"] == "triton")
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
            "http": 8000,
            "grpc": 8001,
            "metrics": 8002,
        }
        assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        volumes = {v["name"]: v for v in pod["volumes"]}
        shm = next(m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm")
        assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"
        models = next(m for m in c["volumeMounts"] if m["mountPath"] == "/models")
        assert models.get("readOnly") is True and "emptyDir" in volumes[models["name"]]
        assert pod["initContainers"][0]["name"] == "fetch-models"


def test_gateway_probes_its_health_endpoints_and_uses_postgres_and_a_shared_volume() -> None:
    from gateway.http.ops import router

    routes = {getattr(r, "path", "") for r in router.routes}
    for overlay in OVERLAYS:
        docs = render(overlay)
        pod = _deployment(docs, "gateway")["spec"]["template"]["spec"]
        c = next(c for c in pod["containers"] if c["name"] == "gateway")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[kind]["httpGet"]["path"] in routes
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        env = {e["name"]: e for e in c["env"]}
        assert env["GAITWAY_DATABASE_URL"]["value"].startswith("postgresql+psycopg://")
        assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "gaitway-postgres"
        data = next(m for m in c["volumeMounts"] if m["mountPath"] == env["GAITWAY_DATA_DIR"]["value"])
        claim = next(v for v in pod["volumes"] if v["name"] == data["name"])["persistentVolumeClaim"][
            "claimName"
        ]
        pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim)
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        postgres = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "postgres")
        assert postgres["spec"]["volumeClaimTemplates"]
        # the drain fits in the pod's grace period
        grace = float(env["GAITWAY_SHUTDOWN_GRACE_S"]["value"])
        assert pod["terminationGracePeriodSeconds"] > grace + c["lifecycle"]["preStop"]["sleep"]["seconds"]


@pytest.mark.parametrize("name", RENDERS)
def test_disruption_budgets_cover_every_deployment(name: str) -> None:
    docs = _rendered(name)
    pdbs = [d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"]
    for d in docs:
        if d["kind"] == "Deployment":
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert any(sel.items() <= labels.items() for sel in pdbs), d["metadata"]["name"]


def test_gpu_overlay_requests_gpus_and_scales_triton_on_its_queue_metric() -> None:
    docs = render("gpu")
    pod = _deployment(docs, "triton")["spec"]["template"]["spec"]
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    assert int(triton["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert "gpu" in triton["image"] and triton["args"][0] == "--model-repository=/models/repo"
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    inits = [c["name"] for c in pod["initContainers"]]
    assert inits == ["fetch-models", "prepare", "build-engines"]
    build = pod["initContainers"][2]
    assert int(build["resources"]["limits"]["nvidia.com/gpu"]) >= 1  # the plan is built on the serving GPU
    hpa = next(
        d for d in docs if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == "triton"
    )
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
    metrics = {m["pods"]["metric"]["name"]: m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert set(metrics) == {"triton_queue_compute_ratio", "triton_request_ms"}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"] >= 1
    # the adapter rule that serves the metric computes it from Triton's queue and compute times
    values = yaml.safe_load((K8S / "components/autoscaling/prometheus-adapter-values.yaml").read_text())
    rules = {r["name"]["as"]: r["metricsQuery"] for r in values["rules"]["custom"]}
    assert set(metrics) <= set(rules)
    query = rules["triton_queue_compute_ratio"]
    assert (
        query.index("nv_inference_queue_duration_us")
        < query.index("/")
        < query.index("nv_inference_compute_infer_duration_us")
    )
    query = rules["triton_request_ms"]  # per request: duration over the count of requests
    assert query.index("nv_inference_request_duration_us") < query.index("nv_inference_request_success")
    # nothing sets the replica counts the HPAs own
    for d in docs:
        if d["kind"] == "Deployment":
            assert "replicas" not in d["spec"], d["metadata"]["name"]


def test_keda_replaces_the_triton_hpa() -> None:
    docs = _rendered("gpu+keda")
    assert "triton" not in {d["metadata"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    (scaled,) = [d for d in docs if d["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "triton"
    ratio, latency = scaled["spec"]["triggers"]  # the same two signals as the HPA
    assert ratio["type"] == latency["type"] == "prometheus"
    assert "nv_inference_queue_duration_us" in ratio["metadata"]["query"]
    assert "nv_inference_request_duration_us" in latency["metadata"]["query"]
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_external_postgres_replaces_the_statefulset() -> None:
    for overlay in OVERLAYS:
        docs = _rendered(f"{overlay}+external-postgres")
        assert not [
            d for d in docs if d["kind"] in ("StatefulSet", "Service") and d["metadata"]["name"] == "postgres"
        ]
        gateway = _deployment(docs, "gateway")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in gateway["env"]}
        assert "POSTGRES_PASSWORD" not in env
        url = env["GAITWAY_DATABASE_URL"]
        assert "value" not in url and url["valueFrom"]["secretKeyRef"] == {
            "name": "gaitway-postgres",
            "key": "database-url",
        }


def test_cpu_overlay_needs_no_gpu() -> None:
    assert "nvidia.com/gpu" not in json.dumps(render("cpu"))
    pod = _deployment(render("cpu"), "triton")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["fetch-models", "repository"]


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    sel = policy["spec"]["podSelector"]
    if not sel:
        return True
    if "matchLabels" in sel and not sel["matchLabels"].items() <= labels.items():
        return False
    for expr in sel.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


@pytest.mark.parametrize(
    "name",
    [
        n
        for n, (overlay, comps) in RENDERS.items()
        if "network-policies" in (*comps, *_own_components(overlay)) and "external-postgres" not in comps
    ],
)
def test_network_policies_deny_by_default_and_allow_exactly(name: str) -> None:
    docs = _rendered(name)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] and "egress" not in p["spec"]
    ]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] in POD_KINDS}
    ports = {
        w: {p["name"]: p["containerPort"] for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for w, t in pods.items()
    }

    def ingress_ports(target: str, source: str) -> set[int]:
        """Ports of ``target`` that pods of ``source`` may open."""
        found: set[int] = set()
        for p in policies:
            if not _selects(p, pods[target]["metadata"]["labels"]):
                continue
            for rule in p["spec"].get("ingress", []):
                peers = rule.get("from")
                if peers is None or any(
                    "namespaceSelector" not in peer
                    and peer.get("podSelector", {}).get("matchLabels", {}).items()
                    <= pods[source]["metadata"]["labels"].items()
                    for peer in peers
                ):
                    found |= {ports[target].get(x["port"], x["port"]) for x in rule["ports"]}
        return found

    def egress_ports(source: str, target: str) -> set[int]:
        found: set[int] = set()
        for p in policies:
            if not _selects(p, pods[source]["metadata"]["labels"]):
                continue
            for rule in p["spec"].get("egress", []):
                peers = rule.get("to")
                if peers is not None and any(
                    peer.get("podSelector", {}).get("matchLabels", {}).items()
                    <= pods[target]["metadata"]["labels"].items()
                    and "namespaceSelector" not in peer
                    for peer in peers
                ):
                    found |= {x["port"] for x in rule["ports"]}
        return found

    allowed = {
        ("gateway", "triton"): {8001},
        ("gateway", "kinematics"): {8081},
        ("gateway", "postgres"): {5432},
    }
    for (src, dst), want in allowed.items():
        assert ingress_ports(dst, src) == want, (src, dst)
        assert egress_ports(src, dst) == want, (src, dst)
    # nothing else inside the namespace talks to Triton, the kinematics service or PostgreSQL
    for src in pods:
        for dst in ("triton", "kinematics", "postgres"):
            if (src, dst) not in allowed:
                assert not ingress_ports(dst, src) and not egress_ports(src, dst), (src, dst)
    # cluster DNS for everyone; Prometheus (namespace `monitoring`) may scrape Triton's metrics port
    dns = [p for p in policies if p["spec"]["podSelector"] == {} and p["spec"].get("egress")]
    assert dns and {x["port"] for r in dns[0]["spec"]["egress"] for x in r["ports"]} == {53}
    scrape = [
        r
        for p in policies
        if _selects(p, pods["triton"]["metadata"]["labels"])
        for r in p["spec"].get("ingress", [])
        if any("namespaceSelector" in peer for peer in r.get("from", []))
    ]
    assert scrape and {ports["triton"][x["port"]] for r in scrape for x in r["ports"]} == {8002}


# --- commands in the manifests agree with the real CLIs ---------------------------------------------------


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_model_init_commands_are_accepted_by_the_clis(overlay: str) -> None:
    from export.prepare import build_parser as prepare_parser
    from export.repository import build_parser as repository_parser
    from export.tensorrt import build_parser as tensorrt_parser
    from gateway.cli import build_parser as cli_parser
    from services.pose.families import FAMILIES
    from services.pose.models import get_manifest, get_preset

    docs = render(overlay)
    config = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("gaitway-config")
    )
    env = config["data"]
    preset = get_preset(env["GAITWAY_PRESET"])
    for workload in ("triton", "gateway"):
        pod = _deployment(docs, workload)["spec"]["template"]["spec"]
        fetch = next(c for c in pod["initContainers"] if c["name"] == "fetch-models")
        argv = _expand(fetch.get("command", ["gaitway"])[1:] + fetch.get("args", []), env)
        assert argv == ["models", "fetch", env["GAITWAY_PRESET"], "--models-dir", "/models"]
        cli_parser().parse_args(argv)
    gateway = next(c for c in _deployment(docs, "gateway")["spec"]["template"]["spec"]["containers"])
    assert cli_parser().parse_args(gateway["args"]).command == "serve"
    pod = _deployment(docs, "triton")["spec"]["template"]["spec"]
    inits = {c["name"]: c for c in pod["initContainers"]}
    if overlay == "cpu":
        cmd = _expand(inits["repository"]["command"], env)
        assert cmd[:3] == ["python", "-m", "export.repository"]
        args = repository_parser().parse_args(cmd[3:])
        assert args.preset == [env["GAITWAY_PRESET"]] and str(args.out) == "/models/repo"
        return
    # gpu: each prepared model is one of the preset's, written where the production configs expect it
    script = inits["prepare"]["command"][-1]
    prepared = {}
    for line in script.splitlines():
        if "export.prepare" in line:
            argv = shlex.split(line.replace("$repo", "/models/repo"))
            args = prepare_parser().parse_args(argv[3:])
            prepared[get_manifest(args.model).role] = (args.model, str(args.out))
    assert {role: model for role, (model, _) in prepared.items()} == {
        "detector": preset.detector,
        "pose2d": preset.pose2d,
        "lifter": preset.lifter,
    }
    build = inits["build-engines"]["command"]
    assert build[:3] == ["python", "-m", "export.tensorrt"]
    trt = tensorrt_parser().parse_args(build[3:])
    assert str(trt.onnx) == prepared["pose2d"][1] + "/model.onnx" and trt.fp16
    assert str(trt.out) == "/models/repo/pose2d/1/model.plan"
    family = get_manifest(preset.pose2d).family
    assert trt.family == family and not (trt.min or trt.opt or trt.max), "the family's registered profile"
    profile = FAMILIES[family].tensorrt
    assert profile is not None
    config = (REPO / "model_repository" / FAMILIES[family].triton_model / "config.pbtxt").read_text()
    assert re.search(r'platform:\s*"tensorrt_plan"', config)
    max_batch = re.search(r"max_batch_size:\s*(\d+)", config)
    assert max_batch and int(max_batch.group(1)) == profile.max_batch, (
        "the plan's largest batch is the config's"
    )
    # the configs copied are the production configs of the preset's Triton models, filled where they live
    loop = re.search(r"for role in ([\w ]+); do", script)
    assert loop and "/opt/gaitway/model_repository/$role/config.pbtxt" in script
    served = {
        FAMILIES[get_manifest(m).family].triton_model: m
        for m in (preset.detector, preset.pose2d, preset.lifter)
    }
    assert set(loop.group(1).split()) == set(served)
    for name, model in served.items():
        role = get_manifest(model).role
        if name != "pose2d":
            assert prepared[role][1] == f"/models/repo/{name}/1"


def test_cpu_triton_arguments_are_options_of_the_serve_command() -> None:
    """The cpu overlay's Triton arguments and the cpu image's CMD name options `serve` has."""
    done = _run([sys.executable, "-m", "services.pose.triton", "serve", "--help"], cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    options = set(re.findall(r"(--[\w-]+)", done.stdout))
    triton = next(c for c in _deployment(render("cpu"), "triton")["spec"]["template"]["spec"]["containers"])
    cpu_image = dict(next(ins for name, ins in _stages("model_repository/Dockerfile") if name == "cpu"))
    for args in (triton["args"], json.loads(cpu_image["CMD"])):
        given = {a for a in args if a.startswith("--")}
        assert given and given <= options, given - options
        assert "--repository" in given and args[args.index("--repository") + 1] == "/models/repo"


# --- the metrics the alerts and the autoscaler read exist -------------------------------------------------


def _promql_texts() -> list[str]:
    texts = [
        r["expr"]
        for d in render("gpu")
        if d["kind"] == "PrometheusRule"
        for g in d["spec"]["groups"]
        for r in g["rules"]
    ]
    texts += [
        t["metadata"]["query"]
        for d in _rendered("gpu+keda")
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
    ]
    values = yaml.safe_load((K8S / "components/autoscaling/prometheus-adapter-values.yaml").read_text())
    texts += [r["metricsQuery"] for r in values["rules"]["custom"]]
    return texts


def _metric_refs(prefix: str) -> set[tuple[str, frozenset[str]]]:
    """(metric name, label names matched) for every ``prefix*`` series the expressions read."""
    refs = set()
    for text in _promql_texts():
        for m in re.finditer(rf"\b({prefix}\w+)(\{{([^}}]*)\}})?", text):
            labels = frozenset(re.findall(r"(\w+)\s*[!=]~?", m.group(3) or "")) - {"job", "namespace", "pod"}
            refs.add((m.group(1), labels))
    return refs


def test_alerts_read_metrics_the_gateway_exports() -> None:
    from gateway.telemetry import Telemetry

    telemetry = Telemetry()
    exported: dict[str, set[str]] = {}
    for collector in telemetry.registry._collector_to_names:  # every metric of this registry
        for name in telemetry.registry._collector_to_names[collector]:
            exported[name] = set(getattr(collector, "_labelnames", ()))
    refs = _metric_refs("gaitway_")
    assert {"gaitway_jobs_finished_total", "gaitway_stream_frames_dropped_total", "gaitway_queue_depth"} <= {
        n for n, _ in refs
    }
    for name, labels in refs:
        assert name in exported, f"{name} is not a metric of gateway/telemetry.py"
        assert labels <= exported[name], (name, labels)


@pytest.mark.slow
@pytest.mark.triton
def test_triton_serves_the_metrics_the_autoscaler_and_alerts_read(tmp_path: Path) -> None:
    from export.repository import generate
    from services.pose.backends import ModelSet
    from services.pose.models import ModelStore, get_preset
    from services.pose.triton import TritonServer

    store = ModelStore([SHARED / "models", SHARED / "reference"])
    ms = ModelSet.resolve(store, get_preset("thunder"))
    generate(tmp_path / "repo", [ms.detector, ms.pose2d, ms.lifter])
    with TritonServer(tmp_path / "repo") as server:
        text = httpx.get(server.metrics_url, timeout=10).text
    served = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }
    wanted = {name for name, _ in _metric_refs("nv_")}
    assert {"nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"} <= wanted
    assert wanted <= served, wanted - served
    for name, labels in _metric_refs("nv_"):
        assert labels <= {"model", "version"}, (name, labels)
