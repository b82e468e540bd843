"""The Helm chart, offline: helm lint, helm template with default and non-default values, every
rendered object validated against Kubernetes' own schemas (kubernetes-validate, strict, for 1.33
and the newest version it ships), pod security on every container, RBAC equal to the code's
table (`brix kubernetes rbac`), the chart's flags known to the binary, and the probe paths served
by a real `brix gateway`. The CRDs and AIBrix manifests are in test_crds.py."""

import copy
import json
import os
import re

import kubernetes_validate
import pytest
from conftest import (CHART, NAMESPACE, RELEASE, rbac_table, render, run)
from kubernetes_validate.utils import latest_version

K8S_VERSIONS = ["1.33.0", latest_version()]
FULL = RELEASE  # the release name contains the chart name, so it is the prefix

# Everything non-default at once: namespaced RBAC, Redis, replica counts, keys from a Secret.
CUSTOM = {
    "image": {"repository": "registry.example/brix", "tag": "test", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "pull"}],
    "serviceAccount": {"gatewayName": "gw-sa", "controllersName": "ctl-sa",
                       "annotations": {"iam.example/role": "brix"}},
    "gateway": {
        "replicas": 3, "watchNamespace": "models",
        "service": {"type": "NodePort", "port": 80, "nodePort": 30888},
        "apiKeys": {"existingSecret": "brix-keys", "secretKeys": ["k1", "k2"]},
        "routingStrategy": "prefix-cache:2,least-request", "readinessPath": "/ready",
        "extraArgs": ["--seed", "7"],
        "extraEnv": [{"name": "AIBRIX_PREFIX_CACHE_BLOCK_SIZE", "value": "128"}],
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "controllers": {
        "replicas": 3, "watchNamespace": "models", "controllers": "podautoscaler,modeladapter",
        "leaderElection": {"enabled": True, "leaseName": "brix-leader"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
    },
    "redis": {"enabled": True},
}
# One unelected controller replica and no gateway.
SINGLE = {"gateway": {"enabled": False},
          "controllers": {"replicas": 1, "leaderElection": {"enabled": False}}}
VALUE_SETS = {"default": {}, "custom": CUSTOM, "single": SINGLE}


@pytest.fixture(scope="module")
def rendered(helm, tmp_path_factory):
    out = {}
    for name, values in VALUE_SETS.items():
        out[name] = render(helm, values, tmp_path_factory.mktemp(name))
    return out


def objects(docs, kind, component=None):
    return [d for d in docs if d["kind"] == kind and (
        component is None
        or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)]


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def container(deployment):
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env(c):
    return {e["name"]: e for e in c.get("env", [])}


def test_helm_lint(helm, tmp_path):
    out = run([helm, "lint", "--strict", str(CHART)])
    assert out.returncode == 0, out.stdout + out.stderr
    (tmp_path / "v.yaml").write_text(json.dumps(CUSTOM))
    out = run([helm, "lint", "--strict", str(CHART), "-f", str(tmp_path / "v.yaml")])
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_every_object_validates_strictly(rendered, values, version):
    docs = rendered[values]
    assert docs
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']} ({values} values, k8s {version})"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{where}: {e.message}")


def test_default_values(rendered):
    docs = rendered["default"]
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs
                   if d["kind"] != "CustomResourceDefinition")
    assert kinds == sorted([
        ("ServiceAccount", f"{FULL}-gateway"), ("ServiceAccount", f"{FULL}-controllers"),
        ("ClusterRole", f"{FULL}-gateway"), ("ClusterRoleBinding", f"{FULL}-gateway"),
        ("ClusterRole", f"{FULL}-controllers"), ("ClusterRoleBinding", f"{FULL}-controllers"),
        ("Role", f"{FULL}-controllers-leases"), ("RoleBinding", f"{FULL}-controllers-leases"),
        ("Deployment", f"{FULL}-gateway"), ("Service", f"{FULL}-gateway"),
        ("Deployment", f"{FULL}-controllers"),
    ])
    gw = one(docs, "Deployment", f"{FULL}-gateway")
    assert gw["spec"]["replicas"] == 2
    c = container(gw)
    assert c["image"] == "brix:0.1.0"
    assert c["args"] == ["gateway", "--kubernetes", "--listen", "0.0.0.0:8888"]
    assert c["ports"] == [{"name": "http", "containerPort": 8888, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert "REDIS_URL" not in env(c)
    svc = one(docs, "Service", f"{FULL}-gateway")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8888, "targetPort": "http",
                                     "protocol": "TCP"}]
    assert svc["spec"]["selector"] == gw["spec"]["selector"]["matchLabels"]
    assert gw["spec"]["selector"]["matchLabels"].items() <= \
        gw["spec"]["template"]["metadata"]["labels"].items()

    ctl = one(docs, "Deployment", f"{FULL}-controllers")
    assert ctl["spec"]["replicas"] == 2
    c = container(ctl)
    assert c["args"] == ["kubernetes", "controllers", "--controllers", "*", "--leader-elect",
                         "--lease-name", "brix-controller-manager",
                         "--lease-namespace", NAMESPACE, "--health-listen", "0.0.0.0:8081"]
    # /readyz is true only on the leader: a standby must still count as Ready for rollouts.
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env(c)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_custom_values(rendered):
    docs = rendered["custom"]
    redis_url = f"redis://{FULL}-redis:6379/0"
    gw = one(docs, "Deployment", f"{FULL}-gateway")
    assert gw["spec"]["replicas"] == 3
    spec = gw["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "gw-sa"
    assert spec["imagePullSecrets"] == [{"name": "pull"}]
    assert spec["tolerations"] == CUSTOM["gateway"]["tolerations"]
    c = container(gw)
    assert c["image"] == "registry.example/brix:test"
    assert c["imagePullPolicy"] == "Always"
    assert c["args"] == [
        "gateway", "--kubernetes", "--listen", "0.0.0.0:8888", "--namespace", "models",
        "--routing-strategy", "prefix-cache:2,least-request", "--sync-redis", redis_url,
        "--gateway-id", "$(POD_NAME)", "--api-key=$(BRIX_API_KEY_0)",
        "--api-key=$(BRIX_API_KEY_1)", "--seed", "7"]
    e = env(c)
    assert e["REDIS_URL"]["value"] == redis_url
    for i, key in enumerate(["k1", "k2"]):
        assert e[f"BRIX_API_KEY_{i}"]["valueFrom"]["secretKeyRef"] == {"name": "brix-keys",
                                                                      "key": key}
    # $(VAR) in args expands only from variables defined earlier in env.
    names = [x["name"] for x in c["env"]]
    assert names.index("POD_NAME") < names.index("BRIX_API_KEY_0")
    assert e["AIBRIX_PREFIX_CACHE_BLOCK_SIZE"]["value"] == "128"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    svc = one(docs, "Service", f"{FULL}-gateway")
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0]["nodePort"] == 30888
    assert svc["spec"]["ports"][0]["port"] == 80

    ctl = one(docs, "Deployment", f"{FULL}-controllers")
    assert ctl["spec"]["replicas"] == 3
    assert ctl["spec"]["template"]["spec"]["serviceAccountName"] == "ctl-sa"
    assert container(ctl)["args"] == [
        "kubernetes", "controllers", "--controllers", "podautoscaler,modeladapter",
        "--namespace", "models", "--leader-elect", "--lease-name", "brix-leader",
        "--lease-namespace", NAMESPACE, "--health-listen", "0.0.0.0:8081"]

    redis = one(docs, "Deployment", f"{FULL}-redis")
    rc = container(redis)
    assert rc["image"] == "redis:7"
    rsvc = one(docs, "Service", f"{FULL}-redis")
    assert rsvc["spec"]["ports"][0]["port"] == 6379
    assert rsvc["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    mounts = {m["mountPath"] for m in rc["volumeMounts"]}
    assert "/data" in mounts, "redis needs a writable /data on a read-only root"
    for sa in objects(docs, "ServiceAccount"):
        assert sa["metadata"]["annotations"] == {"iam.example/role": "brix"}
    assert not objects(docs, "ClusterRole") and not objects(docs, "ClusterRoleBinding")


def test_single_unelected_controller(rendered):
    docs = rendered["single"]
    assert not objects(docs, "Deployment", "gateway") and not objects(docs, "Service")
    ctl = one(docs, "Deployment", f"{FULL}-controllers")
    assert "--leader-elect" not in container(ctl)["args"]
    assert container(ctl)["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert not [d for d in docs if d["metadata"]["name"].endswith("-leases")]


def test_refuses_two_unelected_controllers(helm, tmp_path):
    err = render(helm, {"controllers": {"replicas": 2, "leaderElection": {"enabled": False}}},
                 tmp_path, ok=False)
    assert "leaderElection" in err


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_pod_security(rendered, values):
    deployments = objects(rendered[values], "Deployment")
    assert deployments
    for d in deployments:
        spec = d["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            where = f"{d['metadata']['name']}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["privileged"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert c["resources"]["limits"] and c["resources"]["requests"], where


def granted(docs, component):
    """The union of the component's role rules: {group: {resource: set(verbs)}}, plus the roles'
    (kind, namespace) and the resourceNames seen per (group, resource)."""
    rules, where, names = {}, set(), {}
    for kind in ("ClusterRole", "Role"):
        for role in objects(docs, kind, component):
            where.add((kind, role["metadata"].get("namespace"), role["metadata"]["name"]))
            for r in role["rules"]:
                assert "nonResourceURLs" not in r
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        assert "*" not in (g, res) and "*" not in r["verbs"], r
                        rules.setdefault(g, {}).setdefault(res, set()).update(r["verbs"])
                        if r.get("resourceNames"):
                            names[(g, res)] = r["resourceNames"]
    return rules, where, names


def without_leases(table):
    t = copy.deepcopy(table)
    t.get("coordination.k8s.io", {}).pop("leases", None)
    return {g: r for g, r in t.items() if r}


def diff(want, got):
    lines = []
    for g in sorted(set(want) | set(got)):
        for res in sorted(set(want.get(g, {})) | set(got.get(g, {}))):
            w, h = want.get(g, {}).get(res, set()), got.get(g, {}).get(res, set())
            if h - w:
                lines.append(f"chart grants {g or 'core'}/{res} {sorted(h - w)} the code never uses")
            if w - h:
                lines.append(f"code needs {g or 'core'}/{res} {sorted(w - h)} the chart lacks")
    return "\n".join(lines)


@pytest.mark.parametrize("values", list(VALUE_SETS))
@pytest.mark.parametrize("component", ["gateway", "controllers"])
def test_rbac_equals_the_code(brix, rendered, values, component):
    docs = rendered[values]
    table = rbac_table(brix, component)
    enabled = {"default": True, "custom": True, "single": component == "controllers"}[values]
    if not enabled:
        assert not objects(docs, "ClusterRole", component) and not objects(docs, "Role", component)
        return
    want = table
    if values == "single":  # no leader election: no Lease access
        want = without_leases(table)
    got, where, names = granted(docs, component)
    assert got == want, diff(want, got)

    watch_ns = ((VALUE_SETS[values].get(component) or {}).get("watchNamespace"))
    main_kind = "Role" if watch_ns else "ClusterRole"
    for kind, ns, name in where:
        if name.endswith("-leases"):
            assert (kind, ns) == ("Role", NAMESPACE), "the Lease is granted in the release namespace"
        else:
            assert (kind, ns) == (main_kind, watch_ns), (kind, ns)
    if "leases" in want.get("coordination.k8s.io", {}):
        lease = (VALUE_SETS[values].get("controllers", {}).get("leaderElection", {})
                 .get("leaseName", "brix-controller-manager"))
        assert names[("coordination.k8s.io", "leases")] == [lease]
    # Every role is bound to this component's ServiceAccount, in the release namespace.
    sa = one(docs, "Deployment", f"{FULL}-{component}")["spec"]["template"]["spec"][
        "serviceAccountName"]
    bound = set()
    for kind, ns, name in where:
        binding = [b for b in objects(docs, kind + "Binding", component)
                   if b["metadata"]["name"] == name]
        assert len(binding) == 1, name
        assert binding[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                                         "name": name}
        assert binding[0]["metadata"].get("namespace") == ns
        assert binding[0]["subjects"] == [{"kind": "ServiceAccount", "name": sa,
                                           "namespace": NAMESPACE}]
        bound.add(name)
    assert bound == {n for _, _, n in where}


@pytest.mark.parametrize("component", ["gateway", "controllers"])
def test_rbac_files_match_the_code(brix, component):
    path = CHART / "rbac" / f"{component}.json"
    committed = {g: {r: set(v) for r, v in res.items()}
                 for g, res in json.loads(path.read_text()).items()}
    table = rbac_table(brix, component)
    assert committed == table, (
        f"{path} differs from `brix kubernetes rbac --component {component}`; regenerate it "
        f"(see deploy/helm/brix/rbac/README.md):\n{diff(table, committed)}")


VAR = re.compile(r"\$\(([A-Z0-9_]+)\)")


@pytest.mark.parametrize("values", ["default", "custom"])
@pytest.mark.parametrize("component", ["gateway", "controllers"])
def test_the_binary_accepts_the_rendered_args(brix, rendered, values, component):
    """The container's args, $(VAR)s expanded as the kubelet does, run by the real binary with no
    cluster: it gets past flag parsing and validation and stops only at the missing cluster."""
    c = container(one(rendered[values], "Deployment", f"{FULL}-{component}"))
    # Literal values as rendered; those from the downward API or a Secret get stand-ins.
    fake_env = {name: e.get("value", f"value-of-{name.lower()}") for name, e in env(c).items()}
    args = [VAR.sub(lambda m: fake_env[m.group(1)], a) for a in c["args"]]
    # Listen on a free port here; the address form is the chart's.
    args = [re.sub(r"^0\.0\.0\.0:\d+$", "127.0.0.1:0", a) for a in args]
    no_cluster = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    no_cluster.update(fake_env, KUBECONFIG="/nonexistent/kubeconfig", HOME="/nonexistent")
    out = run([brix, *args], env=no_cluster, timeout=60)
    assert out.returncode == 1 and "no Kubernetes cluster" in out.stderr, (
        f"`brix {' '.join(args)}` exited {out.returncode}; is the `brix kubernetes` CLI (h/mgr) "
        f"in this binary (--features kubernetes)?\n{out.stderr}")


def test_the_validator_rejects_bad_objects(rendered):
    """The strict validation above can fail: an unknown field and a non-string arg are caught."""
    gw = one(rendered["default"], "Deployment", f"{FULL}-gateway")
    for mutate in (lambda d: d["spec"].update(replica=2),
                   lambda d: container(d)["args"].append(7),
                   lambda d: container(d)["securityContext"].update(readOnlyRootFS=True)):
        bad = copy.deepcopy(gw)
        mutate(bad)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)
