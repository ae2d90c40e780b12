"""CompilationJob: compile one model for one hardware target (Neo's CreateCompilationJob).

Field names follow Neo's API in camelCase: inputConfig {s3Uri, framework,
frameworkVersion, dataInputConfig}, outputConfig {s3OutputLocation, targetDevice or
targetPlatform, compilerOptions}, stoppingCondition {maxRuntimeInSeconds}; the status
follows Neo's CompilationJobStatus lifecycle.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import Field, model_validator

from kompile.api.common import (
    DNS_LABEL,
    Framework,
    KModel,
    ObjectName,
    ObservedStatus,
    Precision,
    ResourceRequirements,
    S3Uri,
)
from kompile.api.datainput import DataInputConfig, parse_data_input_config
from kompile.api.hardwaretarget import TargetPlatform
from kompile.api.resource import CustomResource, PrinterColumn


class Phase(enum.StrEnum):
    """Neo's CompilationJobStatus values."""

    STARTING = "Starting"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.STOPPED)


class InputConfig(KModel):
    """Where the model is and how to read it."""

    s3_uri: S3Uri = Field(description="The model: a file, or a model.tar.gz packaged as Neo expects.")
    framework: Framework
    framework_version: str | None = Field(None, pattern=r"^[0-9]+(\.[0-9]+){0,2}$", max_length=32)
    data_input_config: Any = Field(
        None,
        description="Input names and shapes: a dictionary {name: shape}, a list of shapes (PyTorch), or the "
        "same as a JSON string, as in Neo. NCHW for Keras/MXNet/ONNX/PyTorch, NHWC for TensorFlow/TFLite, "
        "none for XGBoost.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    sample_data_s3_uri: S3Uri | None = Field(
        None,
        description="Sample inputs for the parity check: an .npz whose arrays are named like the model's inputs, "
        "each of the input's shape or a stack of samples [k, ...shape]. Random inputs of the declared shapes "
        "where absent.",
    )

    def parsed_inputs(self) -> DataInputConfig:
        return parse_data_input_config(self.data_input_config, self.framework)


class CompilerOptions(KModel):
    opt_level: int = Field(3, ge=0, le=3, description="TVM optimisation level.")


class OutputConfig(KModel):
    """Where the artifact goes and what it is compiled for."""

    s3_output_location: S3Uri = Field(description="Prefix the artifact, manifest and digests are written under.")
    target_device: ObjectName | None = Field(None, description="Name of a HardwareTarget.")
    target_platform: TargetPlatform | None = Field(
        None, description="An inline platform, when no HardwareTarget names the hardware."
    )
    precision: Precision = Precision.FP32
    compiler_options: CompilerOptions | None = None
    compiled_model_name: str | None = Field(
        None,
        max_length=63,
        pattern=DNS_LABEL,
        description="Name of the CompiledModel to create on success (default: the job's name).",
    )

    uncompiled: bool = Field(
        False,
        description="Package the ONNX model as it is, for onnxruntime in the serving pod, instead of compiling "
        "it: the baseline a compiled model is compared with.",
    )

    model_config = KModel.model_config | {
        "json_schema_extra": {"oneOf": [{"required": ["targetDevice"]}, {"required": ["targetPlatform"]}]}
    }

    @model_validator(mode="after")
    def _one_target(self) -> OutputConfig:
        if (self.target_device is None) == (self.target_platform is None):
            raise ValueError("give exactly one of targetDevice (a HardwareTarget name) and targetPlatform")
        return self


class StoppingCondition(KModel):
    max_runtime_in_seconds: int = Field(
        900, ge=60, le=86400, description="The compiler pod is stopped after this long (Neo: 900 s default)."
    )


class Tuning(KModel):
    """MetaSchedule auto-tuning."""

    trials: int = Field(
        0,
        ge=0,
        le=100000,
        description="Total tuning trials; 0 compiles without tuning. A budget too small for every kernel goes to "
        "the kernels where a round saves the most time in the model as compiled with the records there are "
        "(a first round on a kernel without a record before another round on one with a record).",
    )
    max_trials_per_task: int | None = Field(
        None, ge=1, le=10000, description="Trials per kernel (default 64, one MetaSchedule search round)."
    )


class CompilationJobSpec(KModel):
    input_config: InputConfig
    output_config: OutputConfig
    stopping_condition: StoppingCondition = Field(default_factory=StoppingCondition)
    tuning: Tuning | None = None
    resources: ResourceRequirements | None = Field(None, description="Resources of the compiler pod.")
    credentials_secret_name: ObjectName | None = Field(
        None,
        description="Secret in the job's namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(and optionally AWS_SESSION_TOKEN) for the object store.",
    )
    stop: bool = Field(False, description="Set to true to stop the job (Neo's StopCompilationJob).")

    @model_validator(mode="after")
    def _uncompiled_is_onnx(self) -> CompilationJobSpec:
        if self.output_config.uncompiled and self.input_config.framework is not Framework.ONNX:
            raise ValueError(
                f"outputConfig.uncompiled serves ONNX models with onnxruntime, not {self.input_config.framework.value}"
            )
        return self

    @property
    def compiled_model_name(self) -> str | None:
        return self.output_config.compiled_model_name


class Artifact(KModel):
    uri: str
    sha256: str = Field(pattern=r"^[a-f0-9]{64}$")
    size_bytes: int = Field(ge=0)


class CompilationJobStatus(ObservedStatus):
    phase: Phase | None = None
    failure_reason: str | None = Field(None, max_length=4096)
    compilation_start_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    compilation_end_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    compiler_job_name: str | None = None
    progress: str | None = Field(
        None, max_length=512, description="The compiler's latest step while it runs, e.g. 'tuning: 320/1000 trials'."
    )
    artifact: Artifact | None = None
    compiled_model_name: str | None = None


COMPILATION_JOB = CustomResource(
    kind="CompilationJob",
    plural="compilationjobs",
    short_names=("kcj", "compjob"),
    spec=CompilationJobSpec,
    status=CompilationJobStatus,
    description="Compiles a model in object storage for a hardware target with Apache TVM.",
    columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Framework", ".spec.inputConfig.framework"),
        PrinterColumn("Target", ".spec.outputConfig.targetDevice"),
        PrinterColumn("Precision", ".spec.outputConfig.precision"),
        PrinterColumn("Reason", ".status.failureReason", priority=0),
        PrinterColumn("Progress", ".status.progress", priority=1),
        PrinterColumn("Model", ".status.compiledModelName", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
)
