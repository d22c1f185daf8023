"""The web pages: sign-up, log-in and Settings → API Keys, rendered on the server."""
