"""The gRPC link to the inference servers: channels, their credentials, the model catalogue."""
