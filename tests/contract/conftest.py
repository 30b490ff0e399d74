"""The contract's outside: the console script as a process, the gateway through a WSGI client.

Nothing here imports a module behind the public names of CONTRACT.md, so a test that fails
names a deviation a user (or the acceptance suite) would see, not an internal refactor.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import SECRET
from tests.support.processes import BIN

ENVROUTE = str(BIN / "envroute")

CONFIG = f"""
secret = "{SECRET}"
[store]
url = "sqlite:///keys.db"
[scopes]
"charges:read" = ["GET /v1/charges", "GET /v1/charges/*"]
[backends.sandbox]
app = "envroute.demo_apps:sandbox_app"
[[routes]]
when = {{environment = "sandbox"}}
backend = "sandbox"
"""


@dataclass
class Cli:
    """``envroute --config envroute.toml …`` in a project folder of its own."""

    cwd: Path

    def run(self, *args: str, stdin: str = "", status: int | None = 0
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([ENVROUTE, *args], cwd=self.cwd, input=stdin,
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "ENVROUTE_CONFIG": "envroute.toml"})
        if status is not None:
            assert result.returncode == status, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "envroute.toml").write_text(CONFIG)
    return Cli(tmp_path)
