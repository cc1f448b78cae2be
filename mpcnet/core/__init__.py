"""Pure protocol math: no sockets, no asyncio, no grpc.

Everything here is testable as plain function calls on numpy arrays.
"""
