"""Signed label tokens. /predict hands one out with every in-experiment answer that has a
score, and /feedback takes it back with the true label. The token carries what the label is
judged against (experiment, variant, score, request id), so the answer path writes nothing
for it, and no client can pair a label with a score the service never gave."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import NamedTuple

from ml_api.errors import InvalidLabelToken

PREFIX = "l1."  # the token format's version
SIGNATURE_BYTES = 16  # HMAC-SHA256 truncated to 128 bits (RFC 2104 section 5)


class LabelClaim(NamedTuple):
    """What a verified token says: which answer the label is for."""

    experiment_id: int
    experiment: str
    variant: str
    score: float
    request_id: str


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LabelSigner:
    """Issues and verifies label tokens with a key derived from the deployment's secret: every
    worker and host given the same secret accepts the others' tokens."""

    def __init__(self, secret: str):
        self._key = hashlib.sha256(b"ml_api label token\0" + secret.encode()).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.digest(self._key, payload, "sha256")[:SIGNATURE_BYTES]

    def issue(self, experiment_id: int, experiment: str, variant: str, score: float,
              request_id: str) -> str:
        payload = f"{experiment_id}|{experiment}|{variant}|{score!r}|{request_id}".encode()
        return f"{PREFIX}{_encode(payload)}.{_encode(self._sign(payload))}"

    def verify(self, token: str) -> LabelClaim:
        """The token's claim, or InvalidLabelToken if it was not issued with this secret."""
        try:
            if not token.startswith(PREFIX):
                raise ValueError("unknown format")
            body, signature = token[len(PREFIX):].split(".")
            payload = _decode(body)
            if not hmac.compare_digest(self._sign(payload), _decode(signature)):
                raise ValueError("bad signature")
            experiment_id, experiment, variant, score, request_id = payload.decode().split("|")
            return LabelClaim(int(experiment_id), experiment, variant, float(score), request_id)
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidLabelToken("'label_token' is not a token this service issued") from exc
