"""What consent use cases need besides the database: catalog, jurisdictions, signer, operator, log."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from consentry.config import Settings
from consentry.consent.catalog import Catalog, Jurisdictions, load_catalog, load_jurisdictions
from consentry.consent.receipts import Signer, load_or_create_signer
from consentry.transparency.service import LogContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsentContext:
    """What consent use cases need besides the database: catalog, jurisdictions, signer, operator."""

    catalog: Catalog
    jurisdictions: Jurisdictions
    signer: Signer
    operator_name: str
    operator_url: str
    log: LogContext | None = None
    """The transparency log (signs the checkpoints that releases and reports cite)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsentContext:
        """Build the context from configuration (creates the signing keys on first use)."""
        return cls(
            catalog=load_catalog(settings.catalog_file),
            jurisdictions=load_jurisdictions(settings.jurisdictions_file),
            signer=load_or_create_signer(settings.home),
            operator_name=settings.operator_name,
            operator_url=settings.operator_url,
            log=LogContext.from_settings(settings),
        )
