"""HardwareTarget and CompiledModel controllers: check each entry and say so in a condition.

The API server's schema checks shapes; these catch what a schema cannot say (a cuda
target without arch, a tvm backend without a target) and report it where `kubectl get`
shows it.
"""

from __future__ import annotations

import kopf
from pydantic import BaseModel, ValidationError

from kompile.api import COMPILED_MODEL, HARDWARE_TARGET
from kompile.api.compiledmodel import CompiledModelSpec
from kompile.api.hardwaretarget import HardwareTargetSpec
from kompile.controllers.conditions import set_condition
from kompile.controllers.validation import describe


def check(model: type[BaseModel], body: kopf.Body, condition: str, ok_reason: str, ok_message: str) -> dict:
    """The status for a catalog entry: `condition` True when the spec is usable, else why not."""
    generation = body["metadata"].get("generation")
    conditions = (body.get("status") or {}).get("conditions")
    try:
        model.model_validate(body.get("spec") or {})
    except ValidationError as err:
        conditions = set_condition(conditions, condition, False, "InvalidSpec", describe(err), generation)
        kopf.warn(body, reason="InvalidSpec", message=describe(err))
    else:
        conditions = set_condition(conditions, condition, True, ok_reason, ok_message, generation)
    return {"observedGeneration": generation, "conditions": conditions}


@kopf.on.resume(HARDWARE_TARGET.crd_name)
@kopf.on.create(HARDWARE_TARGET.crd_name)
@kopf.on.update(HARDWARE_TARGET.crd_name, field="spec")
def hardware_target(body: kopf.Body, patch: kopf.Patch, **_) -> None:
    patch.status.update(check(HardwareTargetSpec, body, "Valid", "SpecValid", "target can be compiled for"))


@kopf.on.resume(COMPILED_MODEL.crd_name)
@kopf.on.create(COMPILED_MODEL.crd_name)
@kopf.on.update(COMPILED_MODEL.crd_name, field="spec")
def compiled_model(body: kopf.Body, patch: kopf.Patch, **_) -> None:
    # The artifact's digests are verified where it is loaded: by every serving pod.
    patch.status.update(check(CompiledModelSpec, body, "Ready", "Registered", "artifact registered"))
