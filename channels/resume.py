"""The resume secret: the credential that lets a client talk to a conversation again (``hello`` or a first
``message`` naming a conversation, see the wire spec in :mod:`channels.protocol`).

A conversation id is no credential. The server issues a secret with every new session (:func:`new_session`),
derives the conversation's id from it (:func:`conversation_id_for`) and stores only its sha256; a resume is
checked against the stored row, or, before the row exists, against the derived id (:func:`verify_resume`). No
I/O: the caller loads the row; the only outside input is the randomness of a new secret.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Final

from channels.auth import new_token, token_hash
from channels.error_codes import RESUME_DENIED
from channels.errors import ProtocolError
from dialogue.types import Conversation, NewConversation

#: Domain separation: a conversation id is derived from its secret with another prefix than the stored hash.
_ID_PREFIX: Final = b"kefu.conversation-id\x00"
DENIED_REASON: Final = "conversation_id, secret and user do not match a conversation this client may resume"


# A resume secret is a token like the console's session tokens (256 random bits, base64url), and the store keeps
# what it keeps of those: the sha256, hex (a dump of the database resumes nothing). One definition serves both.
new_secret = new_token
secret_hash = token_hash


def conversation_id_for(secret: str) -> str:
    """The conversation id of a secret: a UUID made of another sha256 of it.

    Deriving the id from the secret lets the server check a session whose conversation does not exist yet (a
    ``hello`` creates nothing) without storing anything: only the holder of the secret can claim its id, so a
    leaked id cannot be squatted before the first message, and clients cannot choose ids. The id reveals nothing
    of the secret (a one-way hash of 256 random bits).
    """
    digest = hashlib.sha256(_ID_PREFIX + secret.encode("ascii")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def new_session(language: str | None = None, user: str | None = None) -> tuple[NewConversation, str]:
    """A new conversation for a client (nothing stored yet) and its secret, for the ``session`` frame."""
    secret = new_secret()
    return NewConversation(conversation_id_for(secret), secret_hash(secret), language, user), secret


def verify_resume(
    conversation_id: str,
    secret: str | None,
    user: str | None,
    stored: Conversation | None,
    *,
    language: str | None = None,
    reply_to: str | None = None,
) -> NewConversation:
    """Check a client's claim to resume ``conversation_id``; return the session to open (raises ``resume_denied``).

    ``stored`` is the conversation's row (``None``: not created yet). An existing conversation needs the secret
    whose sha256 is stored (constant-time comparison; a row without hash, from before migration 0005, is never
    resumable) and, when it was created for a ``user``, that user. A conversation not created yet needs a secret
    whose derived id (:func:`conversation_id_for`) is ``conversation_id``; it will be created with ``language``
    and ``user``. Every refusal has the same reason, so the answer does not tell which part was wrong or whether
    the id exists.
    """
    denied = ProtocolError(RESUME_DENIED, DENIED_REASON, reply_to=reply_to)
    if secret is None:
        raise denied
    hashed = secret_hash(secret)
    if stored is not None:
        if stored.id != conversation_id or stored.secret_hash is None:
            raise denied
        if not hmac.compare_digest(hashed, stored.secret_hash):
            raise denied
        if stored.sender is not None and not hmac.compare_digest((user or "").encode(), stored.sender.encode()):
            raise denied
        return NewConversation(stored.id, stored.secret_hash, stored.language, stored.sender)
    if not hmac.compare_digest(conversation_id_for(secret), conversation_id):
        raise denied
    return NewConversation(conversation_id, hashed, language, user)
