"""Exceptions raised by the datapath (both are ``ValueError`` subclasses)."""

from kubetrio._datapath import DatapathError as DatapathError
from kubetrio._datapath import MalformedPacketError as MalformedPacketError

__all__ = ["DatapathError", "MalformedPacketError"]
