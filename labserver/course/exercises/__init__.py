"""Checked exercises, one module per lesson.

In a notebook::

    from labserver.course.exercises import lesson00 as ex
    ex.q1                       # the question
    ex.q1.check((2, True))      # Correct / Incorrect: ... / Check: you have not answered yet ...
    ex.q1.hint(); ex.q1.solution()
    await ex.q3.check_async(my_async_function)   # for async answers and live checks

See :mod:`.core` for writing new problems.
"""

from __future__ import annotations

from .core import (
    NOT_ANSWERED,
    AwaitRequired,
    CheckError,
    ChoiceProblem,
    FunctionProblem,
    Incorrect,
    Lesson,
    LiveProblem,
    Markdown,
    Problem,
    Status,
    ValueProblem,
    Verdict,
    get_lesson,
    lessons,
    seq_ranges,
    show,
)

__all__ = [
    "NOT_ANSWERED",
    "AwaitRequired",
    "CheckError",
    "ChoiceProblem",
    "FunctionProblem",
    "Incorrect",
    "Lesson",
    "LiveProblem",
    "Markdown",
    "Problem",
    "Status",
    "ValueProblem",
    "Verdict",
    "get_lesson",
    "lessons",
    "seq_ranges",
    "show",
]
