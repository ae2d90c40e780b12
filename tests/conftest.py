from pathlib import Path

import pytest
import yaml

# The real S3 server fixture (`s3`), shared by the compiler, runtime and e2e tests.
pytest_plugins = ["tests.s3server"]

ROOT = Path(__file__).resolve().parents[1]


def load_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
