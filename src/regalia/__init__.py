"""Regalia: a registry for versioned ML artifacts, with W&B's SDK names.

import regalia as wandb

run = wandb.init(entity="my-team", project="zoo")
art = wandb.Artifact("zoo_model", type="model")
art.add_file("model.pt")
run.link_artifact(art, "wandb-registry-model/zoo", aliases=["staging"])
wandb.Api().artifact("wandb-registry-model/zoo:staging").download()
"""

from __future__ import annotations

from regalia import errors
from regalia.errors import RegaliaError
from regalia.sdk.api import Api, Collection, Registry
from regalia.sdk.artifact import Artifact
from regalia.sdk.run import Run, init

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
