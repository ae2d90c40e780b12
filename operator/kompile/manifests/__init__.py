"""Pure functions from Kompile resources to the Kubernetes objects that realise them."""

from kompile.api.common import GROUP

MANAGED_BY = {"app.kubernetes.io/managed-by": "kompile"}
COMPILATION_JOB_LABEL = f"{GROUP}/compilation-job"
INFERENCE_ENDPOINT_LABEL = f"{GROUP}/inference-endpoint"
RECOMMENDATION_LABEL = f"{GROUP}/recommendation"
DIGEST_ANNOTATION = f"{GROUP}/artifact-sha256"

# Containers run as an unprivileged user on a read-only root; scratch space is an emptyDir.
NON_ROOT_UID = 1000
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": NON_ROOT_UID, "runAsGroup": NON_ROOT_UID, "fsGroup": NON_ROOT_UID}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
