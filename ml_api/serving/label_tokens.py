"""Signed label tokens. /predict hands one out with every in-experiment answer that has a
score, and /feedback takes it back with the true label. The token carries what the label is
judged against (experiment, variant, score, request id), so the answer path writes nothing
for it, and no client can pair a label with a score the service never gave."""
from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

from ml_api.errors import InvalidLabelToken

PREFIX = "l1|"  # the token format's version
SIGNATURE_BYTES = 16  # a 128-bit tag


class LabelClaim(NamedTuple):
    """What a verified token says: which answer the label is for."""

    experiment_id: int
    experiment: str
    variant: str
    score: float
    request_id: str


class LabelSigner:
    """Issues and verifies label tokens with a key derived from the deployment's secret: every
    worker and host given the same secret accepts the others' tokens.

    A token is the claim in plain text (nothing in it is secret: the answer shows it all)
    and its tag, keyed BLAKE2b (RFC 7693), a MAC on its own. BLAKE2b runs inside the
    interpreter holding the GIL, whereas hmac.digest hands a request thread's GIL over to
    OpenSSL and back, which costs a gthread worker more than the whole signature."""

    def __init__(self, secret: str):
        self._key = hashlib.sha256(b"ml_api label token\0" + secret.encode()).digest()

    def _tag(self, claim: str) -> str:
        return hashlib.blake2b(claim.encode(), key=self._key,
                               digest_size=SIGNATURE_BYTES).hexdigest()

    def issue(self, experiment_id: int, experiment: str, variant: str, score: float,
              request_id: str) -> str:
        claim = f"{PREFIX}{experiment_id}|{experiment}|{variant}|{score!r}|{request_id}"
        return f"{claim}|{self._tag(claim)}"

    def verify(self, token: str) -> LabelClaim:
        """The token's claim, or InvalidLabelToken if it was not issued with this secret."""
        claim, _, tag = token.rpartition("|")
        try:
            valid = claim.startswith(PREFIX) and hmac.compare_digest(
                self._tag(claim).encode(), tag.encode())
        except UnicodeEncodeError:  # a lone surrogate: not text this service wrote
            valid = False
        if not valid:
            raise InvalidLabelToken("'label_token' is not a token this service issued")
        experiment_id, experiment, variant, score, request_id = claim[len(PREFIX):].split("|")
        return LabelClaim(int(experiment_id), experiment, variant, float(score), request_id)
