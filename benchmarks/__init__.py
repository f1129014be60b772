"""`python -m benchmarks` in a checkout: its code is guitar_distill.benchmarks
(installed, `python -m guitar_distill.benchmarks`).

Only the package guitar_distill is installed, so no generic top-level name ever lands in site-packages.
"""

import guitar_distill.benchmarks as _code

__path__ = _code.__path__  # `python -m benchmarks.<module>` finds guitar_distill/benchmarks/<module>.py
