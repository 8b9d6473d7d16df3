"""Browser tests of the `<llmgw-chat>` widget (a package, so its conftest has its own name)."""
