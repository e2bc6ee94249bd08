"""The Deployment API: one set of pydantic models from which the CRD, parsing, validation, DB enums and metric labels come."""

from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import Condition, ConditionStatus, ConditionType, DeploymentStatus, Phase

GROUP = "deploymind.io"
VERSION = "v1alpha1"
KIND = "Deployment"
PLURAL = "deployments"
SINGULAR = "deployment"
SHORT_NAME = "dmd"
CATEGORY = "deploymind"
API_VERSION = f"{GROUP}/{VERSION}"
CRD_NAME = f"{PLURAL}.{GROUP}"

__all__ = [
    "API_VERSION", "CATEGORY", "CRD_NAME", "GROUP", "KIND", "PLURAL", "SHORT_NAME", "SINGULAR", "VERSION",
    "Condition", "ConditionStatus", "ConditionType", "DeploymentSpec", "DeploymentStatus", "Phase",
]
