"""`python -m dataset` in a checkout: its code is guitar_distill.dataset
(installed, `python -m guitar_distill.dataset`).

Only the package guitar_distill is installed, so no generic top-level name ever lands in site-packages.
"""

import guitar_distill.dataset as _code

__path__ = _code.__path__  # `python -m dataset.<module>` finds guitar_distill/dataset/<module>.py
