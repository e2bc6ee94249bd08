"""The Kubernetes API emulator behind `deploymind sandbox` and the test world: kmock plus kube-apiserver's semantics.

Its third-party dependencies (kmock, cel-python, jsonpatch, cryptography) come with the `sandbox` extra; the operator itself
(`deploymind run`) never imports this package, so an operator image can leave them out.
"""

from importlib.util import find_spec

_MISSING = [name for name in ("kmock", "celpy", "jsonpatch", "cryptography") if find_spec(name) is None]
if _MISSING:
    raise ModuleNotFoundError(f"SandboxExtraMissing: the Kubernetes API emulator needs {', '.join(_MISSING)}: "
                              "install the sandbox extra (pip install 'deploymind[sandbox]', or scripts/install-deps)")
