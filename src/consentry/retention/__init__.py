"""Retention: rules per data category, legal holds, purge plans (dry runs) and purge runs."""
