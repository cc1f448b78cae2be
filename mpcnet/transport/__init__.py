"""grpc.aio glue: channels, servers, deadlines, chunked arrays, status mapping."""
