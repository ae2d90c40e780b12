"""The Kompile API (group kompile.dev, version v1alpha1).

These pydantic models are the single source of the CRD schemas in crds/
(`python -m kompile.api.crd` writes them) and of the operator's and compiler's
view of every spec.
"""

from kompile.api.common import API_VERSION, GROUP, HARDWARE_TARGET_LABEL, VERSION, Framework, Precision
from kompile.api.compilationjob import COMPILATION_JOB, CompilationJobSpec, CompilationJobStatus, Phase
from kompile.api.compiledmodel import COMPILED_MODEL, CompiledModelSpec
from kompile.api.datainput import DataInputConfig, DataInputConfigError, parse_data_input_config
from kompile.api.hardwaretarget import HARDWARE_TARGET, HardwareTargetSpec
from kompile.api.inferenceendpoint import INFERENCE_ENDPOINT, InferenceEndpointSpec
from kompile.api.recommendation import INFERENCE_RECOMMENDATION, InferenceRecommendationSpec

RESOURCES = (HARDWARE_TARGET, COMPILATION_JOB, COMPILED_MODEL, INFERENCE_ENDPOINT, INFERENCE_RECOMMENDATION)

__all__ = [
    "API_VERSION",
    "COMPILATION_JOB",
    "COMPILED_MODEL",
    "GROUP",
    "HARDWARE_TARGET",
    "HARDWARE_TARGET_LABEL",
    "INFERENCE_ENDPOINT",
    "INFERENCE_RECOMMENDATION",
    "RESOURCES",
    "VERSION",
    "CompilationJobSpec",
    "CompilationJobStatus",
    "CompiledModelSpec",
    "DataInputConfig",
    "DataInputConfigError",
    "Framework",
    "HardwareTargetSpec",
    "InferenceEndpointSpec",
    "InferenceRecommendationSpec",
    "Phase",
    "Precision",
    "parse_data_input_config",
]
