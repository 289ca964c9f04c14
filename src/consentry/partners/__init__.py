"""Partners: registry, API keys, delivery, revocations that follow the data, signed webhooks."""
