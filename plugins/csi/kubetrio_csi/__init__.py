"""kubetrio's CSI adapter: external CSI drivers, reached over their gRPC unix socket.

``csi.proto`` is the CSI specification's protocol (v1.9.0), written down from the published
spec; ``csi_pb2``/``csi_pb2_grpc`` are generated from it by ``scripts/gen_csi_stubs.py``.

Why the generated modules are committed rather than generated at build time: the plugin
then installs with ``grpcio`` and ``protobuf`` alone (no protoc, no build step in
``pip install``), mypy reads the committed ``csi_pb2.pyi``, and a reader sees the exact
code that runs. ``scripts/gen_csi_stubs.py --check`` (in ``make lint``) regenerates them with
the pinned grpcio-tools and fails when they drift from ``csi.proto``.
"""
