"""deploy/kubernetes, deploy/ray, deploy/docker checked as what they claim to be.

The KubeRay CRD schema is not available offline (no PyPI package carries it),
so the custom resources are checked against KUBERAY_V1, a minimal schema of the
ray.io/v1 RayCluster/RayJob fields written from the KubeRay v1 API (unknown
fields are errors), and every pod template inside them is checked field by
field against the Kubernetes core/v1 models of the `kubernetes` client."""
from __future__ import annotations

import glob
import os
import re

import jsonschema
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(ROOT, "deploy", "kubernetes")

_str_map = {"type": "object", "additionalProperties": {"type": "string"}}
_template = {"type": "object", "required": ["spec"]}  # checked against core/v1 separately
_head = {"type": "object", "additionalProperties": False, "required": ["template"],
         "properties": {"rayStartParams": _str_map, "template": _template, "serviceType": {"type": "string"},
                        "headService": {"type": "object"}, "enableIngress": {"type": "boolean"},
                        "resources": _str_map, "labels": _str_map}}
_worker = {"type": "object", "additionalProperties": False, "required": ["groupName", "template"],
           "properties": {"groupName": {"type": "string"}, "replicas": {"type": "integer", "minimum": 0},
                          "minReplicas": {"type": "integer", "minimum": 0},
                          "maxReplicas": {"type": "integer", "minimum": 0},
                          "idleTimeoutSeconds": {"type": "integer"}, "numOfHosts": {"type": "integer"},
                          "rayStartParams": _str_map, "template": _template, "suspend": {"type": "boolean"},
                          "scaleStrategy": {"type": "object"}, "resources": _str_map, "labels": _str_map}}
_cluster_spec = {
    "type": "object", "additionalProperties": False, "required": ["headGroupSpec"],
    "properties": {
        "rayVersion": {"type": "string"}, "enableInTreeAutoscaling": {"type": "boolean"},
        "autoscalerOptions": {"type": "object", "additionalProperties": False, "properties": {
            "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
            "idleTimeoutSeconds": {"type": "integer"}, "image": {"type": "string"},
            "imagePullPolicy": {"type": "string"}, "resources": {"type": "object"}, "env": {"type": "array"},
            "envFrom": {"type": "array"}, "volumeMounts": {"type": "array"}, "securityContext": {"type": "object"},
            "version": {"enum": ["v1", "v2"]}}},
        "headGroupSpec": _head, "workerGroupSpecs": {"type": "array", "items": _worker},
        "headServiceAnnotations": _str_map, "suspend": {"type": "boolean"}, "managedBy": {"type": "string"},
        "gcsFaultToleranceOptions": {"type": "object"}}}
_meta = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}, "namespace": {"type": "string"},
    "labels": _str_map, "annotations": _str_map}}
KUBERAY_V1 = {
    "RayCluster": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
                   "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayCluster"},
                                  "metadata": _meta, "spec": _cluster_spec}},
    "RayJob": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
               "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"}, "metadata": _meta,
                              "spec": {"type": "object", "additionalProperties": False, "required": ["entrypoint"],
                                       "oneOf": [{"required": ["rayClusterSpec"]}, {"required": ["clusterSelector"]}],
                                       "properties": {
                                           "entrypoint": {"type": "string", "minLength": 1},
                                           "metadata": _str_map, "runtimeEnvYAML": {"type": "string"},
                                           "jobId": {"type": "string"},
                                           "shutdownAfterJobFinishes": {"type": "boolean"},
                                           "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                                           "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                                           "backoffLimit": {"type": "integer", "minimum": 0},
                                           "rayClusterSpec": _cluster_spec, "clusterSelector": _str_map,
                                           "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode",
                                                                       "SidecarMode"]},
                                           "submitterPodTemplate": _template, "submitterConfig": {"type": "object"},
                                           "entrypointNumCpus": {"type": "number"},
                                           "entrypointNumGpus": {"type": "number"},
                                           "entrypointResources": {"type": "string"},
                                           "suspend": {"type": "boolean"}, "managedBy": {"type": "string"},
                                           "deletionStrategy": {"type": "object"}}}}},
}


def _check_model(obj, type_name: str, where: str, errors: list[str]) -> None:
    """Check a dict against a kubernetes client model: unknown fields and wrong
    scalar types are errors (what `kubectl apply --validate=strict` reports)."""
    import kubernetes.client as kc

    if type_name.startswith("list["):
        if not isinstance(obj, list):
            errors.append(f"{where}: expected a list")
            return
        for i, x in enumerate(obj):
            _check_model(x, type_name[5:-1], f"{where}[{i}]", errors)
        return
    if type_name.startswith("dict("):
        inner = type_name[5:-1].split(", ", 1)[1]
        if not isinstance(obj, dict):
            errors.append(f"{where}: expected a mapping")
            return
        for k, v in obj.items():
            _check_model(v, inner, f"{where}.{k}", errors)
        return
    scalars = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if type_name in scalars:
        if not isinstance(obj, scalars[type_name]) or (type_name == "int" and isinstance(obj, bool)):
            errors.append(f"{where}: expected {type_name}, got {obj!r}")
        return
    if type_name == "object":
        return
    model = getattr(kc, type_name)
    if not isinstance(obj, dict):
        errors.append(f"{where}: expected a {type_name} mapping")
        return
    by_json = {v: k for k, v in model.attribute_map.items()}
    for key, val in obj.items():
        if key not in by_json:
            errors.append(f"{where}: unknown field {key!r} in {type_name}")
            continue
        _check_model(val, model.openapi_types[by_json[key]], f"{where}.{key}", errors)


def _pod_templates(doc: dict) -> list[tuple[str, dict]]:
    spec = doc["spec"]
    out = []
    cluster = spec if doc["kind"] == "RayCluster" else spec.get("rayClusterSpec")
    if cluster:
        out.append(("headGroupSpec.template", cluster["headGroupSpec"]["template"]))
        for g in cluster.get("workerGroupSpecs", []):
            out.append((f"workerGroupSpecs[{g['groupName']}].template", g["template"]))
    if doc["kind"] == "RayJob" and "submitterPodTemplate" in spec:
        out.append(("submitterPodTemplate", spec["submitterPodTemplate"]))
    return out


def validate(doc: dict) -> list[str]:
    """Every error in one manifest (an empty list: valid)."""
    kind = doc.get("kind")
    core = {"Secret": "V1Secret", "Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount"}
    if kind in core:
        errors: list[str] = []
        _check_model(doc, core[kind], kind, errors)
        return errors
    if kind not in KUBERAY_V1:
        return [f"unexpected kind {kind!r}"]
    v = jsonschema.Draft7Validator(KUBERAY_V1[kind])
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(doc)]
    if errors:
        return errors
    for where, tpl in _pod_templates(doc):
        _check_model(tpl, "V1PodTemplateSpec", where, errors)
    return errors


def _docs(folder: str = K8S) -> dict[str, dict]:
    """Every manifest that `kubectl apply -f folder` applies (not recursive)."""
    out = {}
    for p in sorted(glob.glob(os.path.join(folder, "*.yaml"))):
        for d in yaml.safe_load_all(open(p)):
            if d:
                out[f"{os.path.basename(p)}:{d['kind']}/{d['metadata']['name']}"] = d
    return out


def test_manifests_are_valid_kuberay_and_core_objects():
    docs = _docs()
    examples = _docs(os.path.join(K8S, "examples"))
    kinds = sorted(d["kind"] for d in docs.values())
    assert kinds.count("RayJob") >= 2 and kinds.count("RayCluster") >= 1
    # `kubectl apply -f deploy/kubernetes/` must never overwrite a real Secret with the example
    assert "Secret" not in kinds and [d["kind"] for d in examples.values()] == ["Secret"]
    for name, d in {**docs, **examples}.items():
        assert validate(d) == [], name
        if d["kind"] == "RayJob":
            assert isinstance(yaml.safe_load(d["spec"].get("runtimeEnvYAML", "{}")), dict), name


def test_validator_rejects_broken_manifests():
    docs = _docs()
    cluster = next(d for d in docs.values() if d["kind"] == "RayCluster")
    import copy

    bad = copy.deepcopy(cluster)
    bad["spec"]["workerGroupSpec"] = bad["spec"].pop("workerGroupSpecs")          # misspelt CRD field
    assert any("workerGroupSpec" in e for e in validate(bad))
    bad = copy.deepcopy(cluster)
    bad["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resource"] = {}  # core/v1 typo
    assert any("unknown field 'resource'" in e for e in validate(bad))
    bad = copy.deepcopy(cluster)
    bad["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0                  # must be a string
    assert validate(bad)
    bad = copy.deepcopy(cluster)
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "6379"
    assert any("containerPort" in e for e in validate(bad))


def _containers(doc):
    for where, tpl in _pod_templates(doc):
        for c in tpl["spec"]["containers"]:
            yield where, tpl["spec"], c


def test_manifests_wire_s3_secret_gpus_and_entrypoints():
    docs = _docs()
    examples = _docs(os.path.join(K8S, "examples"))
    secrets = {d["metadata"]["name"] for d in examples.values() if d["kind"] == "Secret"}
    for d in examples.values():
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(d["stringData"])
    # the namespace and the ServiceAccount the pods run as are created by the applied folder
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs.values()
                if d["kind"] == "ServiceAccount"}
    namespaces = {d["metadata"]["name"] for d in docs.values() if d["kind"] == "Namespace"}
    first = sorted(glob.glob(os.path.join(K8S, "*.yaml")))[0]
    assert {d["kind"] for d in yaml.safe_load_all(open(first)) if d} == {"Namespace", "ServiceAccount"}
    for name, d in docs.items():
        if d["kind"] in ("Namespace", "ServiceAccount"):
            continue
        assert d["metadata"]["namespace"] in namespaces, name
        for where, spec, _c in _containers(d):
            if "serviceAccountName" in spec:
                assert (d["metadata"]["namespace"], spec["serviceAccountName"]) in accounts, f"{name} {where}"
        for where, _, c in _containers(d):
            if where == "submitterPodTemplate":
                continue
            refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
            assert refs and set(refs) <= secrets, f"{name} {where}: S3 credentials not from the Secret"
    curate = next(d for d in docs.values() if d["kind"] == "RayJob" and "curate" in d["metadata"]["name"])
    train = next(d for d in docs.values() if d["kind"] == "RayJob" and "pretrain" in d["metadata"]["name"])
    cluster = next(d for d in docs.values() if d["kind"] == "RayCluster")
    # curation: CPU workers with autoscaling bounds, the job targets that cluster
    cpu = cluster["spec"]["workerGroupSpecs"][0]
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cpu["minReplicas"] <= cpu["replicas"] <= cpu["maxReplicas"]
    assert curate["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    # the entrypoint names files that exist in the repository (the image copies it to /opt/lmrefinery)
    for job in (curate, train):
        paths = re.findall(r"/opt/lmrefinery/(\S+)", job["spec"]["entrypoint"])
        assert paths and all(os.path.exists(os.path.join(ROOT, p)) for p in paths), paths
    assert re.search(r"^python /opt/lmrefinery/jobs/pretrain\.py ", train["spec"]["entrypoint"])
    # every ${VAR} without a default in the training recipe is given to the job
    recipe = re.findall(r"/opt/lmrefinery/(conf/\S+\.yaml)", train["spec"]["entrypoint"])[0]
    needed = set(re.findall(r"\$\{(\w+)\}", open(os.path.join(ROOT, recipe)).read()))
    given = set(yaml.safe_load(train["spec"]["runtimeEnvYAML"])["env_vars"])
    assert needed and needed <= given, needed - given
    # training: GPU workers with GPU resources, a GPU node selector and the GPU taint tolerated
    gpu_groups = [g for g in train["spec"]["rayClusterSpec"]["workerGroupSpecs"]
                  if any("nvidia.com/gpu" in c["resources"].get("limits", {}) for c in g["template"]["spec"]["containers"])]
    assert gpu_groups
    for g in gpu_groups:
        spec = g["template"]["spec"]
        assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
        for c in spec["containers"]:
            assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"]


def test_ray_cluster_config_for_ray_up():
    """deploy/ray/cluster.yaml: the fields `ray up` reads, CPU and GPU node types,
    autoscaling bounds, S3 through an instance profile."""
    cfg = yaml.safe_load(open(os.path.join(ROOT, "deploy", "ray", "cluster.yaml")))
    assert {"cluster_name", "provider", "auth", "available_node_types", "head_node_type", "max_workers",
            "setup_commands", "head_start_ray_commands", "worker_start_ray_commands"} <= set(cfg)
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    cpu = types["cpu_worker"]
    gpu = types["gpu_worker"]
    assert 0 <= cpu["min_workers"] <= cpu["max_workers"] and 0 <= gpu["min_workers"] <= gpu["max_workers"]
    assert gpu["resources"]["GPU"] >= 1 and "GPU" not in cpu["resources"]
    for t in types.values():
        assert t["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")
    assert sum(t["max_workers"] for n, t in types.items() if n != cfg["head_node_type"]) <= cfg["max_workers"]
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("--address=$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])


def test_dockerfile_from_official_ray_image_non_root():
    text = open(os.path.join(ROOT, "deploy", "docker", "Dockerfile")).read()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), "?"), f)
             for f in re.findall(r"^FROM\s+(\S+)", text, re.M)]
    assert froms and all(f.startswith("rayproject/ray:") for f in froms)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    # the package is installed from its wheel (not editable, not from source), with its extras,
    # and the final image has no lib/ that could shadow the wheel and hide missing package data
    assert re.search(r"pip wheel --no-deps[^\n]* \.\n", text)
    assert re.search(r"pip install[^\n]*lmrefinery-\*\.whl\)\[spark,train,tracking\]", text)
    assert "pip install -e" not in text and "--editable" not in text
    final = text[text.rindex("\nFROM "):]
    assert "COPY --chown=ray:users lib" not in final and "/src" not in final
    # BuildKit reads <Dockerfile>.dockerignore next to the Dockerfile
    ignore = open(os.path.join(ROOT, "deploy", "docker", "Dockerfile.dockerignore")).read().split()
    assert ".venv" in ignore or ".venv*" in ignore


@pytest.mark.parametrize("path", ["deploy/ray/runtime_env.yaml"])
def test_runtime_env_example_is_a_valid_ray_runtime_env(path):
    from ray.runtime_env import RuntimeEnv

    rt = yaml.safe_load(open(os.path.join(ROOT, path)))
    RuntimeEnv(**rt)   # raises on unknown or malformed fields
    assert rt["working_dir"] == "." and {".git", "runs/", "samples/"} <= set(rt["excludes"])
    assert all(os.path.isdir(os.path.join(ROOT, m)) for m in rt.get("py_modules", []))
