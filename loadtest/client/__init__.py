"""One request against an endpoint: building it, the transport seam, SSE timing, classification and the record
contract; credentials; the one-request probe. Library-independent (the gevent transport lives in the engine)."""

__all__: list[str] = []
