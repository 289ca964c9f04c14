"""Imports every domain's tables so ``Base.metadata`` is complete (for Alembic and tests)."""

from consentry.auth import models as auth_models
from consentry.consent import models as consent_models
from consentry.datasets import models as datasets_models
from consentry.db import Base
from consentry.exports import models as exports_models
from consentry.jobs import models as jobs_models
from consentry.links import models as links_models
from consentry.metering import models as metering_models
from consentry.partners import models as partners_models
from consentry.retention import models as retention_models
from consentry.social import changes as social_changes
from consentry.social import models as social_models
from consentry.transparency import models as transparency_models

__all__ = [
    "Base",
    "auth_models",
    "consent_models",
    "datasets_models",
    "exports_models",
    "jobs_models",
    "links_models",
    "metering_models",
    "partners_models",
    "retention_models",
    "social_changes",
    "social_models",
    "transparency_models",
]
