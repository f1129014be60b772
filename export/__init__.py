"""`python -m export` in a checkout: its code is guitar_distill.export
(installed, `python -m guitar_distill.export`).

Only the package guitar_distill is installed, so no generic top-level name ever lands in site-packages.
"""

import guitar_distill.export as _code

__path__ = _code.__path__  # `python -m export.<module>` finds guitar_distill/export/<module>.py
