"""`python -m student` in a checkout: its code is guitar_distill.student
(installed, `python -m guitar_distill.student`).

Only the package guitar_distill is installed, so no generic top-level name ever lands in site-packages.
"""

import guitar_distill.student as _code

__path__ = _code.__path__  # `python -m student.<module>` finds guitar_distill/student/<module>.py
