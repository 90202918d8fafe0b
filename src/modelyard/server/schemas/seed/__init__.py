"""The seed's (000) request bodies, declared as the seed does; routers/compat maps them."""

from modelyard.server.schemas.seed.finetune import (
    CreateTaskBO,
    GPUResource,
    HyperParameter,
    ListBody,
    ResourceItem,
)
from modelyard.server.schemas.seed.resources import QuotaRemainRequest, RemainRequest
from modelyard.server.schemas.seed.serving import (
    ModelServer,
    ModelServerCriteria,
    ModelServerDTO,
    ModelServerPageBody,
    ModelServerVersion,
)

__all__ = ["CreateTaskBO", "GPUResource", "HyperParameter", "ListBody", "ModelServer", "ModelServerCriteria",
           "ModelServerDTO", "ModelServerPageBody", "ModelServerVersion", "QuotaRemainRequest", "RemainRequest",
           "ResourceItem"]
