"""checkov (a CI-only venv in .tools/checkov, installed by ``make test-deploy``) finds nothing in
the Dockerfile and the rendered manifests; every finding we keep is skipped with its reason next
to it (a ``checkov:skip`` comment in the Dockerfile, ``checkov.io/skipN`` annotations in the
manifests). ``--skip-download`` keeps checkov offline."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_manifests import K8S, OVERLAYS, ROOT, kustomize_build

pytestmark = pytest.mark.deploy

CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".tools" / "checkov-3.3.30" / "bin" / "checkov"))


def checkov(path: Path, framework: str) -> dict[str, Any]:
    assert CHECKOV.exists(), f"{CHECKOV} missing: run `make test-deploy` (installs it)"
    out = subprocess.run(
        [str(CHECKOV), "--file", str(path), "--framework", framework, "--skip-download",
         "--output", "json"],
        capture_output=True, text=True, timeout=120,
    )
    report = json.loads(out.stdout)
    reports: list[dict[str, Any]] = report if isinstance(report, list) else [report]
    [result] = [r for r in reports if r.get("check_type") == framework]
    return result


def assert_clean(result: dict[str, Any], what: str) -> None:
    summary, found = result["summary"], result["results"]
    failed = [(c["check_id"], c["check_name"]) for c in found["failed_checks"]]
    assert failed == [], f"{what}: {failed}"
    assert summary["parsing_errors"] == 0 and summary["passed"] > 0, what
    for skipped in found["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, f"{what}: {skipped['check_id']} skipped without a reason"


def test_dockerfile_has_no_findings():
    assert_clean(checkov(ROOT / "Dockerfile", "dockerfile"), "Dockerfile")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_manifests_have_no_findings(overlay: str, tmp_path: Path):
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(kustomize_build(K8S / "overlays" / overlay)))
    result = checkov(manifest, "kubernetes")
    assert_clean(result, overlay)
    assert result["summary"]["resource_count"] >= 8
