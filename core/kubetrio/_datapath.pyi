"""Type stub of the Rust extension ``kubetrio._datapath`` (checked with ``mypy.stubtest``)."""

__version__: str

def internet_checksum(data: bytes, /) -> int: ...
