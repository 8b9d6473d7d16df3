"""What a visitor may read of the model server's own words about an error: never a credential,
a path or an address, and the words around them kept."""

from __future__ import annotations

import json

import pytest

from app.upstream.answer_errors import public_message


def said(message: str) -> str | None:
    """The visitor's reading of an upstream error body carrying this message."""
    return public_message(json.dumps({"error": {"message": message}}).encode())


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("header Authorization: Bearer sk-lm-Ab12Cd34:Ef56Gh78 refused", "Bearer … refused"),
        ("Authorization: Basic dXNlcjpwYXNz is wrong", "Basic … is wrong"),
        ("invalid api key sk-proj-Abc123Def456Ghi789 given", "invalid api key … given"),
        ("unknown token lm-9f8e7d6c5b4a39281706 for this server", "token … for this server"),
        ("GET models?token=s3cr3t-value&x=1 failed", "?token=…&x=1 failed"),
        ("api_key: hunter2hunter2, try again", "api_key: …, try again"),
        ("X-Api-Key=1234567890 not allowed", "X-Api-Key=… not allowed"),
        ("password=correct-horse rejected", "password=… rejected"),
        ("load failed (api_key=hunter2hunter2)", "load failed (api_key=…)"),
        ("header [Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0] refused", "[Bearer …] refused"),
    ],
)
def test_a_credential_in_an_error_never_reaches_the_visitor(message: str, shown: str) -> None:
    """A key, token or password the model server echoes back is cut out, its label kept."""
    text = said(message)
    assert text is not None
    assert text.endswith(shown)
    for secret in ("sk-", "Ab12", "dXNlcjpw", "lm-9f8e", "s3cr3t", "hunter2", "123456", "horse"):
        assert secret not in text


@pytest.mark.parametrize(
    "message",
    [
        "Reached context length of 4096 tokens",
        "max_tokens=100 is more than the token limit allows",
        "basic authentication failed",
        "the lm-studio server could not load the model",
        "Unexpected token } in JSON at position 5",
    ],
)
def test_words_that_only_look_like_credentials_are_kept(message: str) -> None:
    """Token counts, a limit's name and product names are the message, not a secret."""
    assert said(message) == message


def test_a_secret_in_a_bare_string_error_is_cut_too() -> None:
    """LM Studio's `{"error": "text"}` shape is read the same way."""
    body = json.dumps({"error": "bad request with Bearer abc.def.ghi"}).encode()
    assert public_message(body) == "bad request with Bearer …"
