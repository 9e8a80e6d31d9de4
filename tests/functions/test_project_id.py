"""The gcp backend finds its project without GOOGLE_CLOUD_PROJECT (current Cloud Functions
runtimes do not set it): from the default credentials, as google.auth.default() finds them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from skypanda.domain.errors import InvalidInput
from skypanda.runtime.gcp import project_id


def _service_account_file(path: Path, project: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": "k1",
        "private_key": pem, "client_email": f"fn@{project}.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
    }))  # fmt: skip
    return path


@pytest.fixture
def no_project_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no gcloud default
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server answers
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    return monkeypatch


def test_the_project_comes_from_the_default_credentials(
    no_project_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    creds = _service_account_file(tmp_path / "sa.json", "my-proj-123")
    no_project_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds))
    assert project_id() == "my-proj-123"


def test_the_variable_wins_when_set(no_project_env: pytest.MonkeyPatch) -> None:
    no_project_env.setenv("GOOGLE_CLOUD_PROJECT", "named")
    assert project_id() == "named"


def test_no_project_anywhere_is_a_clear_error(
    no_project_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_project_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(InvalidInput, match="GOOGLE_CLOUD_PROJECT"):
        project_id()
