"""manifests/README.md's install steps work on the shipped files."""

from __future__ import annotations

import re

import yaml

from tests.manifests.shipped import INSTALL_ORDER, MANIFESTS, find, load_docs

README = (MANIFESTS / "README.md").read_text()


def _sed_edits() -> list[tuple[str, str]]:
    return [(a.replace('\\"', '"'), b.replace('\\"', '"')) for a, b in re.findall(r's\|([^|]+)\|([^|]+)\|', README)]


def test_every_sed_edit_of_the_readme_finds_its_text_in_the_shipped_files() -> None:
    edits = _sed_edits()
    assert len(edits) == 6
    extender = (MANIFESTS / "extender.yaml").read_text()
    controller = (MANIFESTS / "controller.yaml").read_text()
    agent = (MANIFESTS / "agent.yaml").read_text()
    for pattern, _ in edits:
        assert pattern in extender or pattern in controller, pattern
    image = 'image: "kbl:0.1.0"'
    assert extender.count(image) == controller.count(image) == 1
    assert agent.count(image) == 3  # the agent, the init container that owns its hostPath, the CSI driver


def test_readme_edits_produce_the_users_image_role_and_cluster() -> None:
    text = (MANIFESTS / "controller.yaml").read_text()
    values = {"$IMAGE": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kbl:0.1.0", "$ROLE_ARN": "arn:aws:iam::123456789012:role/kbl-controller",
              "$CLUSTER_NAME": "prod", "$AWS_ACCOUNT_ID": "123456789012", "$NODE_ROLE_NAME": "eks-node-role"}  # fmt: skip
    for pattern, replacement in _sed_edits():
        for var, value in values.items():
            replacement = replacement.replace(var, value)
        text = text.replace(pattern, replacement)
    deployment = find(list(yaml.safe_load_all(text)), "Deployment", "kbl-controller")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == values["$IMAGE"]
    assert container["args"][container["args"].index("--cluster-name") + 1] == "prod"
    assert container["args"][container["args"].index("--node-role-arn") + 1] == "arn:aws:iam::123456789012:role/eks-node-role"
    account = find(list(yaml.safe_load_all(text)), "ServiceAccount", "kbl-controller")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == values["$ROLE_ARN"]


def test_readme_applies_the_files_in_install_order() -> None:
    positions = []
    for rel in INSTALL_ORDER:
        name = "manifests/crds/" if rel.startswith("crds/") else f"manifests/{rel}"
        assert name in README, rel
        positions.append(README.index(name))
    assert positions == sorted(positions)
    for example in ("dataset.yaml", "kbl.yaml", "workload.yaml"):
        assert f"manifests/examples/{example}" in README
    assert load_docs(MANIFESTS / "examples" / "workload.yaml")
