"""Who may call: API keys, signed-in browser sessions, and the limits and brakes on both."""
