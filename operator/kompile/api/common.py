"""Types shared by every Kompile resource.

Python names are snake_case; the Kubernetes wire format is camelCase, as in every
Kubernetes API. Each model forbids unknown fields so that `kompile validate` and the
operator reject typos instead of dropping them.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "kompile.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# The label every pool node carries; HardwareTargets select on it by convention.
HARDWARE_TARGET_LABEL = f"{GROUP}/hardware-target"


class KModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The Kubernetes form: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# A DNS-1123 label: the names we turn into Kubernetes object names.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A DNS-1123 subdomain: names of other objects we refer to.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]

# An S3 URI: bucket names follow S3's rules (3-63 chars, lowercase, digits, dots, hyphens).
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
S3Uri = Annotated[str, Field(pattern=S3_URI, max_length=1024)]

# Kubernetes resource quantities ("500m", "2Gi", 4), in the int-or-string form the
# API server's own types use.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
Quantity = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v),
    Field(pattern=QUANTITY_PATTERN),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
IntOrPercent = Annotated[
    int | str,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": r"^(0|[1-9][0-9]*)%?$",
            "x-kubernetes-int-or-string": True,
        }
    ),
]


class Framework(enum.StrEnum):
    """Source frameworks, named as Neo's InputConfig.Framework names them."""

    ONNX = "ONNX"
    PYTORCH = "PYTORCH"
    TENSORFLOW = "TENSORFLOW"
    TFLITE = "TFLITE"
    KERAS = "KERAS"
    MXNET = "MXNET"
    XGBOOST = "XGBOOST"


class Precision(enum.StrEnum):
    FP32 = "FP32"
    FP16 = "FP16"
    BF16 = "BF16"
    INT8 = "INT8"


class DataType(enum.StrEnum):
    """Tensor element types, named as the Open Inference Protocol (v2) names them."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    BF16 = "BF16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @property
    def array_type(self) -> str | None:
        """The numpy (and torch) name of this type, where Kompile compiles and serves it."""
        return ARRAY_TYPES.get(self)

    @classmethod
    def of_array_type(cls, name: str) -> DataType | None:
        """The type whose numpy or torch name is `name` (float32, torch.int64, ...), if Kompile has it."""
        return _BY_ARRAY_TYPE.get(name.removeprefix("torch."))


# The one table of tensor types frontends, the parity gate and the artifact loader share.
ARRAY_TYPES = {
    DataType.FP32: "float32",
    DataType.FP16: "float16",
    DataType.FP64: "float64",
    DataType.INT64: "int64",
    DataType.INT32: "int32",
    DataType.INT8: "int8",
    DataType.UINT8: "uint8",
    DataType.BOOL: "bool",
}
_BY_ARRAY_TYPE = {name: dtype for dtype, name in ARRAY_TYPES.items()}


class ResourceRequirements(KModel):
    """Compute resources of a container, as in a Pod spec."""

    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class Toleration(KModel):
    """A Pod toleration, copied onto the pods placed on a node pool."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KModel):
    """A Kubernetes-style condition (the shape of metav1.Condition)."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(max_length=316)
    status: ConditionStatus
    reason: str | None = Field(None, max_length=1024)
    message: str | None = Field(None, max_length=32768)
    last_transition_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(None, ge=0)


class ObservedStatus(KModel):
    """What every status holds: the generation it describes and its conditions."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int | None = None
    conditions: list[Condition] | None = None


class TensorSpec(KModel):
    """One named model input or output."""

    name: str = Field(min_length=1, max_length=253)
    shape: list[int] = Field(min_length=0, max_length=16, description="Static dimensions.")
    datatype: DataType = DataType.FP32
