"""Regalia: a registry for versioned ML artifacts, with W&B's SDK names.

import regalia as wandb

run = wandb.init(entity="my-team", project="zoo")
art = wandb.Artifact("zoo_model", type="model")
art.add_file("model.pt")
run.link_artifact(art, "wandb-registry-model/zoo", aliases=["staging"])
wandb.Api().artifact("wandb-registry-model/zoo:staging").download()
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from regalia import errors
from regalia.errors import RegaliaError

if TYPE_CHECKING:
    from regalia.sdk.api import Api, Collection, Registry
    from regalia.sdk.artifact import Artifact
    from regalia.sdk.run import Run, init

# The SDK loads on first use, so that the server and the CLI start without it.
_SDK = {
    "Api": "regalia.sdk.api",
    "Collection": "regalia.sdk.api",
    "Registry": "regalia.sdk.api",
    "Artifact": "regalia.sdk.artifact",
    "Run": "regalia.sdk.run",
    "init": "regalia.sdk.run",
}


def __getattr__(name: str) -> Any:
    module = _SDK.get(name)
    if module is None:
        raise AttributeError(f"module 'regalia' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Api",
    "Artifact",
    "Collection",
    "RegaliaError",
    "Registry",
    "Run",
    "__version__",
    "errors",
    "init",
]
