"""Connections the bridge opens on a client's behalf: safe fetches, the address policy,
input images, webhook deliveries."""
