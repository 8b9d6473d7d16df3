"""API keys for the owner's own tools: their shape, their store in Redis, the check of a request's
`Authorization: Bearer`, and the `llmgw keys` command."""
