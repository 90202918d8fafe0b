"""All ORM models; importing this package registers every table on Base.metadata."""

from . import (  # noqa: F401
    datasets,
    events,
    files,
    images,
    jobs,
    models,
    resources,
    searches,  # noqa: F401  (hyperparameter searches)
    serving,  # noqa: F401  (inference services)
    templates,
    users,
)
from .base import Base, IdMixin, TimestampMixin, utcnow  # noqa: F401
from .events import EventModel  # noqa: F401
from .resources import (  # noqa: F401
    AllocationModel,
    FlavorModel,
    NodeModel,
    QuotaModel,
    ResourceGroupModel,
    TagModel,
)
from .templates import ServiceTemplateModel  # noqa: F401
from .users import ApiTokenModel, UserModel  # noqa: F401
