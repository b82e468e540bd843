"""The chart's CRDs and AIBrix-shaped manifests, offline.

crds/brix-crds.yaml (made by `brix kubernetes crds`) must equal the binary's output, carry
AIBrix's groups, kinds and subresources, and validate strictly as CustomResourceDefinitions
(kubernetes-validate, 1.33 and newest). Every manifest in deploy/examples/aibrix/*.yaml must
validate against its CRD's openAPIV3Schema as the API server checks it with kubectl's default
strict field validation: the OpenAPI schema is turned into JSON Schema (`nullable`, unknown fields
rejected unless `x-kubernetes-preserve-unknown-fields`), then checked with jsonschema. Every
manifest in deploy/examples/aibrix/invalid/ must fail."""

import copy
import pathlib

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import CHART, ROOT, brix_kubernetes
from kubernetes_validate.utils import latest_version

CRD_FILE = CHART / "crds" / "brix-crds.yaml"
EXAMPLES = ROOT / "deploy" / "examples" / "aibrix"
# AIBrix's (group, kind) → the subresources its CRD has.
EXPECTED = {
    ("model.aibrix.ai", "ModelAdapter"): {"status"},
    ("autoscaling.aibrix.ai", "PodAutoscaler"): {"status"},
    ("orchestration.aibrix.ai", "RayClusterFleet"): {"status", "scale"},
}


def load_all(path: pathlib.Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def crds():
    if not CRD_FILE.exists():
        pytest.fail(f"{CRD_FILE.relative_to(ROOT)} is missing: h/crd commits it (the output of "
                    "`brix kubernetes crds`); merge main once it has landed")
    docs = load_all(CRD_FILE)
    assert docs and all(d["kind"] == "CustomResourceDefinition" for d in docs)
    return docs


def manifests(folder: pathlib.Path):
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    if not files:
        pytest.fail(f"no manifests in {folder.relative_to(ROOT)}: h/crd commits them; merge main "
                    "once they have landed")
    return [(f"{f.name}#{i}", doc) for f in files for i, doc in enumerate(load_all(f))]


def test_crd_file_is_the_binary_output(brix, crds):
    generated = [d for d in yaml.safe_load_all(brix_kubernetes(brix, "crds")) if d]
    assert generated == crds, (f"{CRD_FILE.relative_to(ROOT)} drifted from the Rust types: "
                               "regenerate with `brix kubernetes crds > " +
                               str(CRD_FILE.relative_to(ROOT)) + "`")


def test_crds_have_aibrix_groups_kinds_and_subresources(crds):
    by_key = {(c["spec"]["group"], c["spec"]["names"]["kind"]): c for c in crds}
    assert EXPECTED.keys() <= by_key.keys(), sorted(by_key)
    for key, subresources in EXPECTED.items():
        crd = by_key[key]
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{key[0]}"
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
        assert version["served"] and version["storage"]
        assert set(version.get("subresources", {})) >= subresources, key
        assert version["schema"]["openAPIV3Schema"]["type"] == "object"


@pytest.mark.parametrize("version", ["1.33.0", latest_version()])
def test_crds_validate_strictly(crds, version):
    for crd in crds:
        try:
            kubernetes_validate.validate(crd, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{crd['metadata']['name']} (k8s {version}): "
                        f"{'.'.join(map(str, e.path))}: {e.message}")


def to_json_schema(node, root=False):
    """An OpenAPI v3 structural schema as Draft 2020-12 JSON Schema, as strict as the server."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("properties", "patternProperties"):
            out[k] = {name: to_json_schema(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties", "not") and isinstance(v, dict):
            out[k] = to_json_schema(v)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = to_json_schema(v)
        else:
            out[k] = v
    if root:
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (out.get("type") == "object" and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def validator_for(crds, doc):
    group, _, version = doc.get("apiVersion", "").rpartition("/")
    for crd in crds:
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == doc.get("kind"):
            for v in crd["spec"]["versions"]:
                if v["name"] == version and v["served"]:
                    schema = to_json_schema(v["schema"]["openAPIV3Schema"], root=True)
                    return jsonschema.Draft202012Validator(schema)
    return None


def errors(crds, doc):
    if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
        return ["metadata.name missing"]
    validator = validator_for(crds, doc)
    if validator is None:
        return [f"no served CRD for {doc.get('apiVersion')} {doc.get('kind')}"]
    return [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(doc)]


def test_aibrix_manifests_validate(crds):
    docs = manifests(EXAMPLES)
    kinds = {d["kind"] for _, d in docs}
    assert {"ModelAdapter", "PodAutoscaler"} <= kinds, kinds
    bad = {name: errs for name, doc in docs if (errs := errors(crds, doc))}
    assert not bad, bad


def test_invalid_aibrix_manifests_fail(crds):
    for name, doc in manifests(EXAMPLES / "invalid"):
        assert errors(crds, doc), f"invalid/{name} passed validation"


def test_unknown_fields_are_rejected(crds):
    """The strictness above is real: an unknown spec field and a wrong type fail."""
    name, doc = next((n, d) for n, d in manifests(EXAMPLES) if d["kind"] == "ModelAdapter")
    extra = copy.deepcopy(doc)
    extra["spec"]["notAField"] = 1
    assert errors(crds, extra), f"{name} with an unknown field passed"
    wrong = copy.deepcopy(doc)
    wrong["spec"]["podSelector"] = "app=x"
    assert errors(crds, wrong), f"{name} with a string podSelector passed"
