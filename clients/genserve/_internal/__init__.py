"""What the servers share and the SDK does not offer: log format, PEM checks, command-line
plumbing. Not part of genserve-client's public surface; no stability promised."""
