from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
