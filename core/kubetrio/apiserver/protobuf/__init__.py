"""Reading Kubernetes protobuf objects (``application/vnd.kubernetes.protobuf``).

kubectl 1.32+ sends its generator commands' bodies (``create deployment``, ``auth can-i``,
…) as protobuf. :func:`decode_object` turns such a body into the dict its JSON form would
decode to, so the rest of the API server never sees protobuf. Decoding only: responses
stay JSON, which kubectl accepts.
"""

from ._decode import MAX_DEPTH as MAX_DEPTH
from ._decode import ProtobufError as ProtobufError
from ._decode import decode_message as decode_message
from ._decode import decode_object as decode_object
from ._decode import decode_value as decode_value
from ._decode import go_duration as go_duration
from ._wire import WireError as WireError
from ._wire import as_signed as as_signed
from ._wire import iter_fields as iter_fields
from ._wire import read_varint as read_varint
