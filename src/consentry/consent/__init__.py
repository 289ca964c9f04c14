"""Consent: the settings catalog, policy versions, the ledger, receipts and evaluation."""
