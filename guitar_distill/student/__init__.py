"""The student: a shallow Network-in-Network (builder in student.model, CLI in student.__main__)."""
