"""`python -m teacher` in a checkout: its code is guitar_distill.teacher
(installed, `python -m guitar_distill.teacher`).

Only the package guitar_distill is installed, so no generic top-level name ever lands in site-packages.
"""

import guitar_distill.teacher as _code

__path__ = _code.__path__  # `python -m teacher.<module>` finds guitar_distill/teacher/<module>.py
