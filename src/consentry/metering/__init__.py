"""Scraping meter and liquidated damages.

Counts posts served per organisation over a rolling 24 hours (in memory or in Redis), attributes traffic
(API key, CIDR, AI crawler user agent, client network), enforces a per-organisation mode in ASGI
middleware, keeps an append-only access log and computes damages statements from it.
"""
