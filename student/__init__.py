"""The student: a shallow Network-in-Network."""
from student.model import build_nin_student  # noqa: F401
