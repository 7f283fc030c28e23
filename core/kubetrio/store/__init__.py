"""kubetrio's store: a revisioned key-value log on embedded SQLite, or on etcd for HA.

One contract (:class:`Store`, etcd's v3 shape: revisions, compare-and-swap, watch from a
revision, compaction), two backends that pass one test suite:

* :func:`open_sqlite_store` / ``sqlite:///path``: append-only log, group commit, the default;
* :func:`open_etcd_store` / ``etcd://h:p,h:p``: etcd 3.4 through its JSON gateway.

Open either with ``async with open_store(url) as store:``. The store sees keys and opaque
bytes only — no models, no HTTP. :class:`EncryptedStore` wraps either to encrypt the
resources an EncryptionConfiguration names (``_encryption``). Backups, restores and
migrations copy a store (``_backup``). Old versions are kept past
compaction under a :class:`HistoryPolicy`, with a note of who wrote each (``_history``).
"""

from ._backup import BUMP_REVISION as BUMP_REVISION
from ._backup import Copied as Copied
from ._backup import backup_sqlite as backup_sqlite
from ._backup import copy_live as copy_live
from ._backup import restore_sqlite as restore_sqlite
from ._encryption import EncryptedStore as EncryptedStore
from ._encryption import EncryptionConfig as EncryptionConfig
from ._encryption import EncryptionConfigError as EncryptionConfigError
from ._encryption import StaleKeyValue as StaleKeyValue
from ._encryption import Undecryptable as Undecryptable
from ._encryption import check_readable as check_readable
from ._encryption import load_encryption_config as load_encryption_config
from ._encryption import parse_encryption_config as parse_encryption_config
from ._encryption import write_default_encryption_config as write_default_encryption_config
from ._errors import AlreadyExists as AlreadyExists
from ._errors import Compacted as Compacted
from ._errors import Conflict as Conflict
from ._errors import FutureRevision as FutureRevision
from ._errors import NotFound as NotFound
from ._errors import StoreError as StoreError
from ._errors import Unavailable as Unavailable
from ._errors import WatchClosed as WatchClosed
from ._etcd import EtcdStore as EtcdStore
from ._etcd import open_etcd_store as open_etcd_store
from ._history import DEFAULT_OVERRIDES as DEFAULT_OVERRIDES
from ._history import HISTORY_KEEP_ALL as HISTORY_KEEP_ALL
from ._history import HISTORY_OFF as HISTORY_OFF
from ._history import WRITE_NOTE as WRITE_NOTE
from ._history import HistoryEntry as HistoryEntry
from ._history import HistoryExpired as HistoryExpired
from ._history import HistoryPage as HistoryPage
from ._history import HistoryPolicy as HistoryPolicy
from ._history import HistoryStore as HistoryStore
from ._history import HistoryUnsupported as HistoryUnsupported
from ._history import noted as noted
from ._history import resource_prefix as resource_prefix
from ._open import open_store as open_store
from ._protocol import Deleted as Deleted
from ._protocol import Event as Event
from ._protocol import EventType as EventType
from ._protocol import Key as Key
from ._protocol import KeyValue as KeyValue
from ._protocol import ListResult as ListResult
from ._protocol import Store as Store
from ._protocol import as_key as as_key
from ._protocol import prefix_end as prefix_end
from ._protocol import watch_progress as watch_progress
from ._sqlite import CompactionPolicy as CompactionPolicy
from ._sqlite import SQLiteStore as SQLiteStore
from ._sqlite import open_sqlite_store as open_sqlite_store
from ._watch import HistoryUnavailable as HistoryUnavailable
from ._watch import Subscription as Subscription
from ._watch import WatchHub as WatchHub
