"""One generation path: each kind of output declared once, and the way every generation runs.

- ``base.py``: what a kind declares; ``image.py``, ``video.py``, ``three_d.py``: the kinds;
  ``kinds.py``: them by name.
- ``order.py``: a validated request (model from the catalogue, price, protobuf request).
- ``run.py``: debit and row (``begin``), then RPC, files and answer (``execute``).
- ``live.py``: generations running in this process and their event logs.
- ``respond.py``: the answer modes (JSON, Server-Sent Events, 202) and ``Idempotency-Key``.
"""
