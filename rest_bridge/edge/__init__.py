"""The HTTP edge: the envelope, errors, answers, OpenAPI, access log, metrics, body limits."""
