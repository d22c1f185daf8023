"""genserve: generated gRPC stubs, the Python REST SDK and the command-line client."""
