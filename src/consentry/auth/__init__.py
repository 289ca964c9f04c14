"""Bearer tokens for account holders and operators."""
