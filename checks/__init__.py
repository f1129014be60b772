"""`python -m checks.<module>` in a checkout: its code is guitar_distill.checks
(`python -m guitar_distill.checks.<module>`).

Only the package guitar_distill is installed, so no generic top-level name ever lands in site-packages.
"""

import guitar_distill.checks as _code

__path__ = _code.__path__  # `python -m checks.<module>` finds guitar_distill/checks/<module>.py
