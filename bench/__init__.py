"""Benchmarks: ``make bench`` prints one table of their figures (``bench/run_all.py``).

Every benchmark imports diffusers and transformers; routed through logging first,
with their progress bars off and the notices nobody can act on dropped (torchao's
on a CPU build of torch among them), the table is what a run prints.
"""

from inference_server.quiet import quiet_libraries

quiet_libraries()
