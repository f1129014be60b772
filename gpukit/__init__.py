"""`python -m gpukit.<module>` in a checkout: its code is guitar_distill.gpukit
(`python -m guitar_distill.gpukit.<module>`).

Only the package guitar_distill is installed, so no generic top-level name ever lands in site-packages.
"""

import guitar_distill.gpukit as _code

__path__ = _code.__path__  # `python -m gpukit.<module>` finds guitar_distill/gpukit/<module>.py
