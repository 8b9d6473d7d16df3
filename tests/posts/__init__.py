"""The posts index's tests (issue 19): a package, so that its conftest has a name of its own."""
