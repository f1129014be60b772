"""`python -m edge` in a checkout: its code is guitar_distill.edge
(installed, `python -m guitar_distill.edge`).

Only the package guitar_distill is installed, so no generic top-level name ever lands in site-packages.
"""

import guitar_distill.edge as _code

__path__ = _code.__path__  # `python -m edge.<module>` finds guitar_distill/edge/<module>.py
