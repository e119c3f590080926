"""The HTTP/JSON transport: the same API as gRPC, in the same process, over the same engine and policy."""
