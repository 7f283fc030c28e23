"""Encryption at rest: kube-apiserver's EncryptionConfiguration, as a store that encrypts.

:class:`EncryptedStore` wraps any :class:`~kubetrio.store.Store` and transforms the values
of the resources an :class:`EncryptionConfig` names (``secrets`` by default) on their way
in and out, as upstream's storage transformers do at the same seam (between the registry
and etcd):

* the config is upstream's file (``apiVersion: apiserver.config.k8s.io/v1``,
  ``kind: EncryptionConfiguration``, ``resources: [{resources: [...], providers: [...]}]``)
  with the providers ``aesgcm``, ``aescbc``, ``secretbox`` and ``identity``;
* a stored value carries upstream's prefix ``k8s:enc:<provider>:v1:<key name>:``; the
  **first** key of the **first** provider encrypts every write, and every configured key
  is tried by prefix for reading (``identity`` reads plaintext), so keys rotate as upstream
  documents: add the new key second, restart, make it first, restart, rewrite every object
  (``kubectl get secrets -A -o json | kubectl replace -f -``), then remove the old key;
* a value read with any key but the writing one is *stale* (:class:`StaleKeyValue`): the
  registry then rewrites it even when the object did not change, which is what makes that
  ``replace`` re-encrypt;
* a value that does not decrypt (tampered with, or written with a key no longer
  configured) raises :class:`Undecryptable` naming the key; the API server answers 500
  for that object and goes on serving the rest.

Formats, as upstream writes them: ``aesgcm`` is a 12-byte random nonce, then the
ciphertext and tag, with the store key as additional authenticated data (a value moved
to another key does not decrypt); ``aescbc`` a 16-byte random IV, then the PKCS#7-padded
ciphertext; ``secretbox`` (XSalsa20-Poly1305, NaCl's ``secretbox``) a 24-byte random
nonce, then the sealed box. ``cryptography`` provides AES; it has no XSalsa20-Poly1305
(its ChaCha20Poly1305 is another construction whose bytes upstream could not read), so
``secretbox`` uses PyNaCl's ``SecretBox`` (libsodium) — the one dependency added for it.
Generated configs use ``secretbox``: its 24-byte random nonces need no rotation after a
number of writes, which upstream asks of ``aesgcm`` keys.

Which values are transformed is decided from the key, laid out by the registry as
``/registry/<group or core>/<resource>/...``; a resource is named as upstream names it
(``secrets``, ``deployments.apps``, ``*.apps``, ``*.*``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import AlreadyExists, Conflict, StoreError
from ._history import HistoryPage, HistoryStore, HistoryUnsupported
from ._protocol import (
    Deleted,
    Event,
    EventType,
    Key,
    KeyValue,
    ListResult,
    Store,
    as_key,
    watch_progress,
)

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
ENCRYPTED = b"k8s:enc:"
"""What every encrypted value starts with (identity refuses to read such data)."""

RECENT_EVENTS = 1024
"""Decrypted watch events kept for the other watchers of the same change."""
_AES_KEY_SIZES = (16, 24, 32)
_SECRETBOX_KEY_SIZE = 32


class EncryptionConfigError(ValueError):
    """An EncryptionConfiguration that cannot be used; the message is one line naming
    the file and the field."""


class Undecryptable(StoreError):
    """A stored value that no configured key decrypts (tampered, or its key is gone)."""

    def __init__(self, key: bytes, reason: str) -> None:
        super().__init__(f"cannot decrypt {key.decode(errors='replace')}: {reason}")
        self.key = key
        self.reason = reason


class StaleKeyValue(KeyValue, frozen=True, gc=False):
    """A value read with a key other than the one that encrypts new writes: rewriting it
    (even unchanged) moves it to the current key."""


# --- providers ---------------------------------------------------------------------------


class _Provider:
    """One key of one provider: its prefix, how it seals and opens a value."""

    prefix: bytes = b""
    what: str = ""

    def seal(self, data: bytes, key: bytes) -> bytes:
        raise NotImplementedError

    def open(self, payload: bytes, key: bytes) -> bytes:
        raise NotImplementedError


class _AESGCM(_Provider):
    def __init__(self, name: str, secret: bytes) -> None:
        self.prefix = f"k8s:enc:aesgcm:v1:{name}:".encode()
        self.what = f'aesgcm key "{name}"'
        self._aead = AESGCM(secret)

    def seal(self, data: bytes, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return self.prefix + nonce + self._aead.encrypt(nonce, data, key)

    def open(self, payload: bytes, key: bytes) -> bytes:
        if len(payload) < 12 + 16:
            raise ValueError("the data is too short")
        try:
            return self._aead.decrypt(payload[:12], payload[12:], key)
        except InvalidTag:
            raise ValueError("message authentication failed") from None


class _AESCBC(_Provider):
    def __init__(self, name: str, secret: bytes) -> None:
        self.prefix = f"k8s:enc:aescbc:v1:{name}:".encode()
        self.what = f'aescbc key "{name}"'
        self._key = secret

    def seal(self, data: bytes, key: bytes) -> bytes:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        return self.prefix + iv + encryptor.update(padded) + encryptor.finalize()

    def open(self, payload: bytes, key: bytes) -> bytes:
        if len(payload) < 32 or len(payload) % 16:
            raise ValueError("the data is not a whole number of blocks")
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(payload[:16])).decryptor()
        padded = decryptor.update(payload[16:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise ValueError("invalid PKCS#7 padding (wrong key or tampered data)") from None


class _Secretbox(_Provider):
    def __init__(self, name: str, secret: bytes) -> None:
        from nacl.secret import SecretBox

        self.prefix = f"k8s:enc:secretbox:v1:{name}:".encode()
        self.what = f'secretbox key "{name}"'
        self._box = SecretBox(secret)

    def seal(self, data: bytes, key: bytes) -> bytes:
        return self.prefix + bytes(self._box.encrypt(data))  # nonce (24) + sealed box

    def open(self, payload: bytes, key: bytes) -> bytes:
        from nacl.exceptions import CryptoError

        try:
            return self._box.decrypt(payload)
        except (CryptoError, ValueError):
            raise ValueError("the box does not open (wrong key or tampered data)") from None


class _Identity(_Provider):
    what = "identity"

    def seal(self, data: bytes, key: bytes) -> bytes:
        return data

    def open(self, payload: bytes, key: bytes) -> bytes:
        if payload.startswith(ENCRYPTED):
            raise ValueError("identity transformer tried to read encrypted data")
        return payload


@dataclasses.dataclass(frozen=True)
class Transformer:
    """The keys of one resource entry, in the order they were configured."""

    providers: tuple[_Provider, ...]

    @property
    def encrypts(self) -> bool:
        """Whether new writes are encrypted (the first provider is not identity)."""
        return bool(self.providers[0].prefix)

    def to_storage(self, data: bytes, key: bytes) -> bytes:
        """The value to store: sealed by the first key."""
        return self.providers[0].seal(data, key)

    def from_storage(self, data: bytes, key: bytes) -> tuple[bytes, bool]:
        """The plaintext of a stored value and whether it is stale.

        :raises ValueError: no key opens it; the message says why.
        """
        for index, provider in enumerate(self.providers):
            if not data.startswith(provider.prefix):
                continue
            try:
                plain = provider.open(data[len(provider.prefix) :], key)
            except ValueError as exc:
                if not provider.prefix:
                    continue  # identity: another provider may claim the data
                raise ValueError(f"{provider.what}: {exc}") from None
            return plain, index != 0
        if data.startswith(ENCRYPTED):
            label = data[: data.find(b":", data.find(b":v1:") + 4) + 1].decode(errors="replace")
            raise ValueError(f"no configured key matches the prefix {label!r}")
        raise ValueError("the data is not encrypted and identity is not among the providers")


# --- the configuration -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EncryptionConfig:
    """A parsed EncryptionConfiguration: which resources use which keys."""

    entries: tuple[tuple[tuple[str, ...], Transformer], ...]
    """(resource names as configured, their transformer), in file order."""
    source: str = ""

    def transformer_for(self, group: str, resource: str) -> Transformer | None:
        """The transformer of ``resource`` in API group ``group`` (first matching entry)."""
        wanted = {f"{resource}.{group}" if group else resource, f"*.{group}", "*.*"}
        if not group:
            wanted.add(f"{resource}.")
        for names, transformer in self.entries:
            if wanted.intersection(names):
                return transformer
        return None

    def prefixes(self) -> list[str]:
        """The store key prefixes of every configured resource (for :func:`check_readable`)."""
        found: list[str] = []
        for names, _ in self.entries:
            for name in names:
                resource, _, group = name.partition(".")
                if resource == "*":
                    found.append("/registry/" if group == "*" else f"/registry/{group}/")
                else:
                    found.append(f"/registry/{group or 'core'}/{resource}/")
        return found


def _b64_secret(value: Any, field: str, sizes: Sequence[int]) -> bytes:
    if not isinstance(value, str) or not value:
        raise EncryptionConfigError(f"{field}: Required value: a base64-encoded key is required")
    try:
        secret = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EncryptionConfigError(
            f'{field}: Invalid value: "REDACTED": secret is not a valid base64 string'
        ) from None
    if len(secret) not in sizes:
        raise EncryptionConfigError(
            f'{field}: Invalid value: "REDACTED": secret is not of the expected length, '
            f"got {len(secret)}, expected one of {list(sizes)}"
        )
    return secret


_KEYED = {
    "aesgcm": (_AESGCM, _AES_KEY_SIZES),
    "aescbc": (_AESCBC, _AES_KEY_SIZES),
    "secretbox": (_Secretbox, (_SECRETBOX_KEY_SIZE,)),
}


def _providers(item: Any, field: str) -> list[_Provider]:
    if not isinstance(item, dict) or len(item) != 1:
        raise EncryptionConfigError(
            f"{field}: Invalid value: exactly one provider must be specified in each "
            "element (aesgcm, aescbc, secretbox or identity)"
        )
    (kind, settings), *_ = item.items()
    if kind == "identity":
        return [_Identity()]
    if kind == "kms":
        raise EncryptionConfigError(f"{field}.kms: Unsupported value: kubetrio has no KMS provider")
    if kind not in _KEYED:
        raise EncryptionConfigError(
            f'{field}: Unsupported value: "{kind}": supported values: '
            '"aesgcm", "aescbc", "secretbox", "identity"'
        )
    cls, sizes = _KEYED[kind]
    keys = (settings or {}).get("keys") if isinstance(settings, dict) else None
    if not isinstance(keys, list) or not keys:
        raise EncryptionConfigError(
            f"{field}.{kind}.keys: Required value: at least one key is required"
        )
    made: list[_Provider] = []
    names: set[str] = set()
    for k, key in enumerate(keys):
        where = f"{field}.{kind}.keys[{k}]"
        name = key.get("name") if isinstance(key, dict) else None
        if not isinstance(name, str) or not name:
            raise EncryptionConfigError(f"{where}.name: Required value: a key name is required")
        if ":" in name:
            raise EncryptionConfigError(
                f'{where}.name: Invalid value: "{name}": a key name cannot contain ":"'
            )
        if name in names:
            raise EncryptionConfigError(f'{where}.name: Duplicate value: "{name}"')
        names.add(name)
        made.append(cls(name, _b64_secret(key.get("secret"), f"{where}.secret", sizes)))
    return made


def parse_encryption_config(text: str, source: str = "") -> EncryptionConfig:
    """Parse an EncryptionConfiguration document.

    :raises EncryptionConfigError: naming ``source`` and the field that is wrong.
    """
    try:
        return _parse(text, source)
    except EncryptionConfigError as exc:
        raise EncryptionConfigError(f"{source}: {exc}" if source else str(exc)) from None


def _parse(text: str, source: str) -> EncryptionConfig:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EncryptionConfigError(f"not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict):
        raise EncryptionConfigError(f"expected a {KIND} object")
    if doc.get("kind") != KIND or doc.get("apiVersion") != API_VERSION:
        raise EncryptionConfigError(
            f"expected apiVersion {API_VERSION} and kind {KIND}, "
            f"got {doc.get('apiVersion')!r} and {doc.get('kind')!r}"
        )
    resources = doc.get("resources")
    if not isinstance(resources, list) or not resources:
        raise EncryptionConfigError("resources: Required value: at least one entry is required")
    entries: list[tuple[tuple[str, ...], Transformer]] = []
    for r, entry in enumerate(resources):
        field = f"resources[{r}]"
        names = entry.get("resources") if isinstance(entry, dict) else None
        if not isinstance(names, list) or not names:
            raise EncryptionConfigError(
                f"{field}.resources: Required value: at least one resource is required"
            )
        for n, name in enumerate(names):
            if not isinstance(name, str) or not name or name != name.lower():
                raise EncryptionConfigError(
                    f"{field}.resources[{n}]: Invalid value: {name!r}: "
                    "resource names must be lowercase, as resource.group"
                )
        items = entry.get("providers")
        if not isinstance(items, list) or not items:
            raise EncryptionConfigError(
                f"{field}.providers: Required value: at least one provider is required"
            )
        providers: list[_Provider] = []
        for p, item in enumerate(items):
            providers += _providers(item, f"{field}.providers[{p}]")
        entries.append((tuple(names), Transformer(tuple(providers))))
    return EncryptionConfig(tuple(entries), source)


def load_encryption_config(path: Path) -> EncryptionConfig:
    """Read an EncryptionConfiguration file (``--encryption-provider-config``).

    :raises EncryptionConfigError: the file is missing, unreadable or not valid.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise EncryptionConfigError(
            f"encryption provider config {path}: {exc.strerror or exc}"
        ) from None
    return parse_encryption_config(text, str(path))


def write_default_encryption_config(path: Path) -> None:
    """Write a config encrypting Secrets with a new random secretbox key (mode 0600),
    identity second so Secrets stored before encryption was on stay readable."""
    key = base64.b64encode(secrets.token_bytes(_SECRETBOX_KEY_SIZE)).decode()
    text = (
        f"# Made by kubetrio on first start: Secrets are encrypted with key1.\n"
        f"apiVersion: {API_VERSION}\n"
        f"kind: {KIND}\n"
        "resources:\n"
        "  - resources: [secrets]\n"
        "    providers:\n"
        "      - secretbox:\n"
        "          keys:\n"
        f"            - name: key1\n"
        f"              secret: {key}\n"
        "      - identity: {}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


# --- the store ---------------------------------------------------------------------------


class EncryptedStore:
    """A :class:`~kubetrio.store.Store` whose configured resources are encrypted at rest.

    Everything else passes through untouched; the wrapped store sees only ciphertext for
    the configured resources, in its log, its history and its watch events.
    """

    def __init__(self, store: Store, config: EncryptionConfig) -> None:
        self.inner = store
        self.config = config
        self._by_resource: dict[bytes, Transformer | None] = {}
        self._recent: dict[tuple[bytes, int, EventType], Event] = {}

    # which key gets which transformer

    def _for_key(self, key: bytes) -> Transformer | None:
        parts = key.split(b"/", 4)
        if len(parts) < 4 or parts[1] != b"registry":
            return None
        group_resource = parts[2] + b"/" + parts[3]
        try:
            return self._by_resource[group_resource]
        except KeyError:
            group = parts[2].decode(errors="replace")
            found = self.config.transformer_for(
                "" if group == "core" else group, parts[3].decode(errors="replace")
            )
            self._by_resource[group_resource] = found
            return found

    def _for_prefix(self, prefix: bytes) -> bool:
        """Whether any key under ``prefix`` may be transformed."""
        parts = prefix.split(b"/")
        if len(parts) >= 5 and parts[1] == b"registry" and parts[3]:
            return self._for_key(prefix) is not None  # one resource
        return bool(self.config.entries)

    def _plain(self, found: KeyValue) -> KeyValue:
        transformer = self._for_key(found.key)
        if transformer is None or not found.value:
            return found
        try:
            value, stale = transformer.from_storage(found.value, found.key)
        except ValueError as exc:
            raise Undecryptable(found.key, str(exc)) from None
        cls = StaleKeyValue if stale else KeyValue
        return cls(found.key, value, found.create_revision, found.mod_revision)

    def _sealed(self, key: bytes, value: bytes) -> bytes:
        transformer = self._for_key(key)
        return value if transformer is None else transformer.to_storage(value, key)

    # the Store protocol

    async def current_revision(self) -> int:
        """As the wrapped store."""
        return await self.inner.current_revision()

    async def get(self, key: Key, *, revision: int = 0) -> KeyValue | None:
        """The wrapped store's version, decrypted."""
        found = await self.inner.get(key, revision=revision)
        return None if found is None else self._plain(found)

    async def list(
        self,
        prefix: Key,
        *,
        revision: int = 0,
        limit: int = 0,
        continue_key: Key | None = None,
    ) -> ListResult:
        """The wrapped store's page, decrypted."""
        page = await self.inner.list(
            prefix, revision=revision, limit=limit, continue_key=continue_key
        )
        if not self._for_prefix(as_key(prefix)):
            return page
        return msgspec.structs.replace(page, kvs=[self._plain(found) for found in page.kvs])

    async def count(self, prefix: Key) -> int:
        """As the wrapped store."""
        return await self.inner.count(prefix)

    async def create(self, key: Key, value: bytes) -> KeyValue:
        """Create with the value encrypted; returns the plaintext version."""
        key = as_key(key)
        try:
            created = await self.inner.create(key, self._sealed(key, value))
        except AlreadyExists as exc:
            current = exc.current
            if current is not None:
                try:
                    current = self._plain(current)
                except Undecryptable:
                    current = None
            raise AlreadyExists(key, current) from None
        return msgspec.structs.replace(created, value=value)

    async def update(self, key: Key, value: bytes, *, expected_revision: int) -> KeyValue:
        """Update with the value encrypted; a conflict carries the plaintext version."""
        key = as_key(key)
        try:
            updated = await self.inner.update(
                key, self._sealed(key, value), expected_revision=expected_revision
            )
        except Conflict as exc:
            raise Conflict(key, exc.expected_revision, self._plain(exc.current)) from None
        return msgspec.structs.replace(updated, value=value)

    async def delete(self, key: Key, *, expected_revision: int | None = None) -> Deleted:
        """Delete; the deleted version comes back decrypted."""
        key = as_key(key)
        try:
            deleted = await self.inner.delete(key, expected_revision=expected_revision)
        except Conflict as exc:
            raise Conflict(key, exc.expected_revision, self._plain(exc.current)) from None
        return Deleted(deleted.revision, self._plain(deleted.prev_kv))

    def watch(
        self, key: Key, *, prefix: bool = False, revision: int = 0
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """The wrapped store's events, values decrypted (:class:`Undecryptable` ends it)."""
        if not (self._for_prefix(as_key(key)) if prefix else self._for_key(as_key(key))):
            return self.inner.watch(key, prefix=prefix, revision=revision)
        return self._watch(key, prefix=prefix, revision=revision)

    @asynccontextmanager
    async def _watch(
        self, key: Key, *, prefix: bool, revision: int
    ) -> AsyncIterator[AsyncIterator[Event]]:
        async with self.inner.watch(key, prefix=prefix, revision=revision) as events:
            yield self._decrypted(events)

    def _decrypted(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        return _Decrypted(self, events)

    def _decrypted_event(self, event: Event) -> Event:
        # Every watcher of a prefix gets the same Event from the hub: decrypt it once and
        # hand all of them the same result, as the hub decodes once for all.
        seen = (event.kv.key, event.kv.mod_revision, event.type)
        plain = self._recent.get(seen)
        if plain is None:
            prev = event.prev_kv
            plain = Event(
                event.type, self._plain(event.kv), None if prev is None else self._plain(prev)
            )
            self._recent[seen] = plain
            if len(self._recent) > RECENT_EVENTS:
                del self._recent[next(iter(self._recent))]
        return plain

    async def compact(self, revision: int) -> None:
        """As the wrapped store."""
        await self.inner.compact(revision)

    async def history(self, key: Key, *, before: int = 0, limit: int = 0) -> HistoryPage:
        """The wrapped store's kept versions, decrypted (they are stored as written:
        encrypted)."""
        if not isinstance(self.inner, HistoryStore):
            raise HistoryUnsupported(f"{type(self.inner).__name__} keeps no history")
        page = await self.inner.history(key, before=before, limit=limit)
        if self._for_key(as_key(key)) is None:
            return page
        entries = [msgspec.structs.replace(e, kv=self._plain(e.kv)) for e in page.entries]
        return msgspec.structs.replace(page, entries=entries)

    async def compact_revision(self) -> int:
        """As the wrapped store."""
        return await self.inner.compact_revision()


async def check_readable(store: EncryptedStore, *, sample: int = 100) -> None:
    """Refuse to start with keys that cannot read what is stored: decrypt up to ``sample``
    values under each configured resource.

    :raises EncryptionConfigError: one line naming the config file and the stored key.
    """
    for prefix in store.config.prefixes():
        try:
            await store.list(prefix, limit=sample)
        except Undecryptable as exc:
            raise EncryptionConfigError(
                f"the encryption provider config {store.config.source or '(embedded)'} "
                f"cannot read the stored {exc.key.decode(errors='replace')}: {exc.reason}; "
                "configure the key that wrote it (rotation keeps the old key until every "
                "object is rewritten)"
            ) from None


class _Decrypted:
    """A watch's events, decrypted; its progress is the wrapped watch's."""

    def __init__(self, store: EncryptedStore, events: AsyncIterator[Event]) -> None:
        self._store = store
        self._events = events

    def progress(self) -> int | None:
        """See :func:`~kubetrio.store.watch_progress`."""
        return watch_progress(self._events)

    def __aiter__(self) -> _Decrypted:
        return self

    async def __anext__(self) -> Event:
        return self._store._decrypted_event(await self._events.__anext__())
