"""Consent-enforced dataset releases: eligibility, transforms, engines, manifests, lineage."""
