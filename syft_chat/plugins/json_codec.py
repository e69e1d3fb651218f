"""The built-in wire codec: an envelope as compact JSON.

Registered like any plugin, last (``trylast``): an encryption plugin that returns
ciphertext from ``chat_encode_body`` (and decodes it in ``chat_decode_body``) runs first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from syft_chat.errors import RefuseMessage
from syft_chat.hookspecs import hookimpl
from syft_chat.models import Envelope, describe_error

if TYPE_CHECKING:
    from syft_chat.interfaces import IncomingRequest


@hookimpl(trylast=True)
def chat_encode_body(envelope: Envelope) -> bytes:
    """The envelope as UTF-8 JSON."""
    return envelope.model_dump_json().encode()


@hookimpl(trylast=True)
def chat_decode_body(request: IncomingRequest) -> Envelope:
    """Parse the body as a JSON envelope; anything else is refused as malformed (the
    reason never echoes the input back to its sender)."""
    try:
        return Envelope.model_validate_json(request.body)
    except (ValidationError, ValueError, OverflowError) as exc:
        raise RefuseMessage(f"malformed message: {describe_error(exc)}") from None
