"""The serving pod of an InferenceEndpoint: loads a compiled artifact after checking its
digests and serves it over the Open Inference Protocol (v2) with kserve's ModelServer. The
operator sets its environment (KOMPILE_MODEL_NAME, KOMPILE_ARTIFACT_URI,
KOMPILE_ARTIFACT_SHA256, KOMPILE_HTTP_PORT, S3 settings); see settings.py.
"""
