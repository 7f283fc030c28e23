"""nftables transactions as typed commands, printed as nft text or raw netlink, run in a
network namespace.

The service proxy and the calico plugin's policy table describe what they write as
lists of :data:`Command` s (:mod:`._model`: tables, chains, sets and maps, elements,
rules of typed expressions). :func:`to_nft_text` prints them for ``nft -f`` and for
people; :func:`encode` turns them into one raw nf_tables netlink batch, without the
cache libnftables reads before every transaction; :class:`Nft` runs a command list as
one transaction in a network namespace, by netlink when every command is encodable,
else through libnftables.

It stands on :mod:`kubetrio.netns` only.
"""

from ._model import AddChain as AddChain
from ._model import AddElements as AddElements
from ._model import AddrMatch as AddrMatch
from ._model import AddRule as AddRule
from ._model import AddSet as AddSet
from ._model import AddTable as AddTable
from ._model import Command as Command
from ._model import CtMatch as CtMatch
from ._model import DeleteChain as DeleteChain
from ._model import DeleteElements as DeleteElements
from ._model import DeleteSet as DeleteSet
from ._model import DeleteTable as DeleteTable
from ._model import Dnat as Dnat
from ._model import DnatMap as DnatMap
from ._model import Element as Element
from ._model import Expr as Expr
from ._model import FibLocal as FibLocal
from ._model import Field as Field
from ._model import FlushChain as FlushChain
from ._model import FlushSet as FlushSet
from ._model import Hook as Hook
from ._model import Jhash as Jhash
from ._model import Key as Key
from ._model import L4ProtoMatch as L4ProtoMatch
from ._model import MarkMatch as MarkMatch
from ._model import MarkSet as MarkSet
from ._model import Masquerade as Masquerade
from ._model import Numgen as Numgen
from ._model import NumgenMatch as NumgenMatch
from ._model import Raw as Raw
from ._model import Reject as Reject
from ._model import Rule as Rule
from ._model import SetFlag as SetFlag
from ._model import SetMatch as SetMatch
from ._model import SetUpdate as SetUpdate
from ._model import Table as Table
from ._model import Verdict as Verdict
from ._model import VerdictMap as VerdictMap
from ._model import remove_table as remove_table
from ._model import replace_table as replace_table
from ._netlink import Unsupported as Unsupported
from ._netlink import encode as encode
from ._runner import Nft as Nft
from ._runner import NftError as NftError
from ._text import command_lines as command_lines
from ._text import element_text as element_text
from ._text import rule_text as rule_text
from ._text import to_nft_text as to_nft_text
