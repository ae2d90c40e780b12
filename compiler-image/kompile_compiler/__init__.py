"""The compiler that runs in a CompilationJob's pod (`python -m kompile_compiler`).

It reads the job from the KOMPILE_JOB environment variable the operator sets, compiles
with Apache TVM, checks the result against a reference runtime and uploads the artifact.
Frontends, targets and the pipeline arrive with the compiler issue; what is here is the
pod's contract with the operator (`report`).
"""
