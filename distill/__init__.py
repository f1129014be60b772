"""`python -m distill` in a checkout: its code is guitar_distill.distill
(installed, `python -m guitar_distill.distill`).

Only the package guitar_distill is installed, so no generic top-level name ever lands in site-packages.
"""

import guitar_distill.distill as _code

__path__ = _code.__path__  # `python -m distill.<module>` finds guitar_distill/distill/<module>.py
