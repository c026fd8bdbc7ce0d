"""Checked exercises for the lesson notebooks (in the spirit of Kaggle's learntools).

A lesson module builds a :class:`Lesson` and adds problems to it; a notebook does ::

    from labserver.course.exercises import lesson00 as ex
    ex.q1                      # shows the question
    ex.q1.check((2, True))     # a Verdict: green "Correct", red "Incorrect: ...", ...
    ex.q1.hint()               # Markdown
    ex.q1.solution()           # Markdown

The answer is always passed explicitly. A check never shows a traceback: a
wrong answer is an INCORRECT verdict, a crash (the student's function raised,
or the check itself failed) is an ERROR verdict naming the exception, and no
answer yet (no argument, ``...`` or ``None``) is NOT_ATTEMPTED with a reminder
of what to pass.

Writing a problem: subclass :class:`Problem` and override ``_check(answer)``:
raise :class:`Incorrect` with what is wrong, or return the message shown with
"Correct" (``None`` for none). Or use a ready-made one: :class:`ValueProblem`,
:class:`ChoiceProblem`, :class:`FunctionProblem`, :class:`LiveProblem`.

Async: a notebook cell already runs inside an event loop, where ``check()``
cannot run a coroutine. Checks that must await (an ``async def`` answer to a
:class:`FunctionProblem`, every :class:`LiveProblem`) are therefore done with
``await ex.q.check_async(answer)``; ``check()`` runs them itself only when no
loop is running (a script, a test), and otherwise raises :class:`AwaitRequired`,
whose message says exactly what to type (and which IPython shows without a
traceback).
"""

from __future__ import annotations

import asyncio
import copy
import dis
import enum
import html
import inspect
import math
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

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
    "Verdict",
    "ValueProblem",
    "get_lesson",
    "lessons",
    "seq_ranges",
    "show",
]


# --- verdicts ------------------------------------------------------------------------


class Status(enum.Enum):
    CORRECT = "correct"
    INCORRECT = "incorrect"
    NOT_ATTEMPTED = "not_attempted"
    ERROR = "error"


# label (the start of repr and of the box), border colour, background colour
_LOOK = {
    Status.CORRECT: ("Correct", "#2e7d32", "#e8f5e9"),
    Status.INCORRECT: ("Incorrect", "#c62828", "#ffebee"),
    Status.NOT_ATTEMPTED: ("Check", "#1565c0", "#e3f2fd"),
    Status.ERROR: ("Error", "#c62828", "#fff3e0"),
}


def _inline_html(text: str) -> str:
    """Escape ``text`` for HTML, then render its `code` spans and line breaks."""
    escaped = html.escape(text, quote=True)
    escaped = re.sub(r"`([^`\n]+)`", r"<code>\1</code>", escaped)
    return escaped.replace("\n", "<br>")


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check. Truthy only when correct.

    ``repr`` (what a terminal and nbval see) is one stable line, e.g.
    ``Correct: all 7 cases pass`` or ``Incorrect: each tab opens its own socket``;
    Jupyter shows a coloured box (``_repr_html_``).
    """

    status: Status
    message: str = ""

    def __bool__(self) -> bool:
        return self.status is Status.CORRECT

    @property
    def label(self) -> str:
        return _LOOK[self.status][0]

    def __repr__(self) -> str:
        message = " ".join(self.message.split())
        return f"{self.label}: {message}" if message else self.label

    __str__ = __repr__

    def _repr_html_(self) -> str:
        label, border, background = _LOOK[self.status]
        body = f"<strong>{label}</strong>"
        if self.message:
            body += ": " + _inline_html(self.message)
        return (
            f'<div class="lab-verdict lab-verdict-{self.status.value}" style="border-left: 4px solid {border}; '
            f'background: {background}; color: #212121; padding: 0.5em 1em; margin: 0.25em 0;">{body}</div>'
        )


class Markdown:
    """Text shown as Markdown in Jupyter; its ``repr`` (text/plain) is stable plain text."""

    def __init__(self, markdown: str, plain: str | None = None) -> None:
        self.markdown = markdown
        self.plain = markdown if plain is None else plain

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __repr__(self) -> str:
        return self.plain

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Markdown) and (self.markdown, self.plain) == (other.markdown, other.plain)

    __hash__ = None  # type: ignore[assignment]


def seq_ranges(numbers: list[int]) -> str:
    """Sorted sequence numbers as a reader takes them in: ``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    if not numbers:
        return "none"
    out: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
        if n is not None:
            start = prev = n
    return ", ".join(out)


def show(value: Any, limit: int = 200) -> str:
    """A stable, short ``repr``: sets and frozensets sorted (their order varies between runs)."""
    text = _stable_repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stable_repr(value: Any) -> str:
    if isinstance(value, set | frozenset):
        items = sorted(_stable_repr(v) for v in value)
        if not items:
            return "set()" if isinstance(value, set) else "frozenset()"
        inner = "{" + ", ".join(items) + "}"
        return inner if isinstance(value, set) else f"frozenset({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_stable_repr(k)}: {_stable_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_stable_repr(v) for v in value) + "]"
    if isinstance(value, tuple) and type(value) is tuple:
        if len(value) == 1:
            return f"({_stable_repr(value[0])},)"
        return "(" + ", ".join(_stable_repr(v) for v in value) + ")"
    return repr(value)


# --- errors a check raises ------------------------------------------------------------


class Incorrect(Exception):
    """Raise in ``_check`` with what is wrong: the verdict is INCORRECT with this message."""


class CheckError(Exception):
    """Raise in ``_check`` for an ERROR verdict with exactly this message."""


class AwaitRequired(RuntimeError):
    """``check()`` was called inside a running event loop for a check that must await.

    IPython shows only the message (no traceback) through ``_render_traceback_``.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NOT_ANSWERED: Any = _Sentinel("NOT_ANSWERED")


class _GoAsync(Exception):
    """Internal: the sync check met a coroutine (a sync function returned one)."""


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _is_async_callable(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - an object with an async __call__
    return not inspect.isroutine(obj) and call is not None and inspect.iscoroutinefunction(call)


def _name_of(obj: Any, default: str = "f") -> str:
    name = getattr(obj, "__name__", None)
    return name if isinstance(name, str) and name.isidentifier() else default


# --- problems ------------------------------------------------------------------------


class Problem:
    """One checked exercise.

    Set (as class attributes or constructor keywords): ``title``; ``question``
    (Markdown shown when the problem is displayed); ``hint_text`` (a string, or a
    list of hints from gentle to explicit); ``solution_text`` (Markdown, code
    welcome); ``answer_format`` (what to pass, used in the "not answered yet"
    reminder, e.g. ``"a tuple `(sockets, online)`, e.g. `(3, False)`"``);
    ``correct_message`` (shown with "Correct" when ``_check`` returns ``None``).
    Override ``_check(answer)``: raise :class:`Incorrect` or return a message.
    """

    title: str = ""
    question: str = ""
    hint_text: str | Sequence[str] = ""
    solution_text: str = ""
    answer_format: str = "your answer"
    correct_message: str = ""
    #: answers that mean "not answered yet" (compared by identity)
    placeholders: tuple[Any, ...] = (NOT_ANSWERED, Ellipsis, None)
    #: False for checks that look only at the server, so ``check()`` with no argument is an attempt
    needs_answer: bool = True

    def __init__(
        self,
        *,
        title: str | None = None,
        question: str | None = None,
        hint: str | Sequence[str] | None = None,
        solution: str | None = None,
        answer_format: str | None = None,
        correct_message: str | None = None,
    ) -> None:
        if title is not None:
            self.title = title
        if question is not None:
            self.question = question
        if hint is not None:
            self.hint_text = hint
        if solution is not None:
            self.solution_text = solution
        if answer_format is not None:
            self.answer_format = answer_format
        if correct_message is not None:
            self.correct_message = correct_message
        self.key: str = ""
        self.lesson: Lesson | None = None
        self.last_verdict: Verdict | None = None

    # --- naming ---

    @property
    def ref(self) -> str:
        """How the notebook reaches this problem, e.g. ``ex.q1``."""
        key = self.key or "q"
        return f"{self.lesson.alias}.{key}" if self.lesson is not None and self.lesson.alias else key

    def __repr__(self) -> str:
        title = f": {self.title}" if self.title else ""
        return f"<{type(self).__name__} {self.ref}{title}>"

    def _repr_markdown_(self) -> str:
        head = f"**{self.key}. {self.title}**" if self.key else f"**{self.title}**"
        parts = [head]
        if self.question:
            parts.append(self._question_markdown())
        parts.append(
            f"Check your answer with `{self._check_call}`; stuck? `{self.ref}.hint()`, then `{self.ref}.solution()`."
        )
        return "\n\n".join(parts)

    def _question_markdown(self) -> str:
        return self.question

    # --- hints and solutions ---

    def _hints(self) -> list[str]:
        if isinstance(self.hint_text, str):
            return [self.hint_text] if self.hint_text else []
        return [h for h in self.hint_text if h]

    def hint(self, n: int = 1) -> Markdown:
        """Hint number ``n`` (1 is the gentlest); each but the last points to the next."""
        hints = self._hints()
        if not hints:
            text = f"No hint for this one: the solution is in `{self.ref}.solution()`."
            return Markdown(f"**Hint:** {text}", f"Hint: {text}")
        n = min(max(int(n), 1), len(hints))
        label = "Hint" if len(hints) == 1 else f"Hint {n}/{len(hints)}"
        text = hints[n - 1].strip()
        more = f"\n\nAnother hint: `{self.ref}.hint({n + 1})`." if n < len(hints) else ""
        return _labelled(label, text + more)

    def solution(self) -> Markdown:
        return _labelled("Solution", self.solution_text.strip() or "(no solution written for this one)")

    # --- checking ---

    @property
    def _check_call(self) -> str:
        """How a notebook checks this problem: ``ex.q1.check(...)``, or awaited for live checks."""
        return f"{self.ref}.check(...)"

    def _is_placeholder(self, answer: Any) -> bool:
        for p in self.placeholders:
            if answer is p:
                return True
        return False

    def _not_attempted(self) -> Verdict:
        return Verdict(
            Status.NOT_ATTEMPTED,
            f"you have not answered yet. Pass {self.answer_format} to `{self._check_call}`.",
        )

    def _needs_async(self, answer: Any) -> bool:
        """True when checking ``answer`` must await (then ``check()`` needs no running loop)."""
        return False

    _await_reason = "this check has to await"

    def _await_message(self, answer: Any) -> str:
        if _is_async_callable(answer):
            what = f"`{_name_of(answer)}` is an async function"
        elif callable(answer) and not isinstance(self, LiveProblem):
            what = f"`{_name_of(answer)}` returns an awaitable"
        else:
            what = self._await_reason
        if callable(answer):
            arg = _name_of(answer)
        else:
            arg = "" if self._is_placeholder(answer) else show(answer, 60)
        return (
            f"{what}, and this notebook already runs an event loop, so `check()` cannot run it here. "
            f"Use: await {self.ref}.check_async({arg})"
        )

    def _record(self, verdict: Verdict) -> Verdict:
        self.last_verdict = verdict
        return verdict

    def _verdict_from(self, message: str | None) -> Verdict:
        return Verdict(Status.CORRECT, message if message is not None else self.correct_message)

    @staticmethod
    def _verdict_from_exception(exc: Exception) -> Verdict:
        if isinstance(exc, Incorrect):
            return Verdict(Status.INCORRECT, str(exc))
        if isinstance(exc, CheckError):
            return Verdict(Status.ERROR, str(exc))
        return Verdict(Status.ERROR, f"the check stopped on {_describe(exc)}")

    def check(self, answer: Any = NOT_ANSWERED) -> Verdict:
        """Check ``answer``; returns a :class:`Verdict` (never raises, except :class:`AwaitRequired`)."""
        if self.needs_answer and self._is_placeholder(answer):
            return self._record(self._not_attempted())
        if not self._needs_async(answer):
            try:
                return self._record(self._verdict_from(self._check(answer)))
            except _GoAsync:
                pass
            except Exception as exc:
                return self._record(self._verdict_from_exception(exc))
        if _loop_running():
            raise AwaitRequired(self._await_message(answer))
        return asyncio.run(self.check_async(answer))

    async def check_async(self, answer: Any = NOT_ANSWERED) -> Verdict:
        """The same check, awaitable: ``await ex.q3.check_async(my_async_function)``."""
        if self.needs_answer and self._is_placeholder(answer):
            return self._record(self._not_attempted())
        try:
            return self._record(self._verdict_from(await self._acheck(answer)))
        except Exception as exc:
            return self._record(self._verdict_from_exception(exc))

    def _check(self, answer: Any) -> str | None:
        """Raise :class:`Incorrect` with what is wrong, or return the "Correct" message."""
        raise NotImplementedError(f"{type(self).__name__} must override _check")

    async def _acheck(self, answer: Any) -> str | None:
        """The async check; by default the sync one."""
        try:
            return self._check(answer)
        except _GoAsync:
            raise CheckError("this check cannot run asynchronously") from None


def _labelled(label: str, text: str) -> Markdown:
    """``**Label:** text`` (a code block starts on its own paragraph); plain: ``Label: text``."""
    sep = "\n\n" if text.startswith(("```", "- ", "* ", "1. ")) else " "
    return Markdown(f"**{label}:**{sep}{text}", f"{label}:{sep}{text}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- comparing values ------------------------------------------------------------------


def _default_normalize(value: Any) -> Any:
    """Strings: trimmed, case-folded, inner whitespace collapsed."""
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a bool (True or False)"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, set | frozenset):
        return "a set"
    if isinstance(value, dict):
        return "a dict"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


class _Mismatch(Exception):
    """Internal: a structural difference worth telling (wrong type or length)."""


def _same(answer: Any, expected: Any, tolerance: float | None, normalize: Callable[[Any], Any], where: str) -> bool:
    """Is ``answer`` equal to ``expected``? Raises _Mismatch for a difference of shape."""
    where_ = f"{where} " if where else "your answer "
    if isinstance(expected, bool):
        if not isinstance(answer, bool):
            raise _Mismatch(f"{where_}should be {_kind(expected)}, got {show(answer)}")
        return answer is expected
    if isinstance(expected, int | float):
        if isinstance(answer, bool) or not isinstance(answer, int | float):
            raise _Mismatch(f"{where_}should be {_kind(expected)}, got {show(answer)}")
        if tolerance is not None:
            return abs(answer - expected) <= tolerance
        if isinstance(answer, float) or isinstance(expected, float):
            return math.isclose(answer, expected, rel_tol=1e-9, abs_tol=1e-12)
        return bool(answer == expected)
    if isinstance(expected, set | frozenset):
        if not isinstance(answer, set | frozenset | list | tuple):
            raise _Mismatch(f"{where_}should be a set (or a list), got {show(answer)}")
        try:
            return {_apply(normalize, a) for a in answer} == {_apply(normalize, e) for e in expected}
        except TypeError:  # unhashable items in a list
            return False
    if isinstance(expected, tuple | list):
        if not isinstance(answer, tuple | list):
            raise _Mismatch(f"{where_}should be {_kind(expected)}, got {show(answer)}")
        if len(answer) != len(expected):
            raise _Mismatch(f"{where_}should be {_kind(expected)}, got {_kind(answer)}")
        return all(
            _same(a, e, tolerance, normalize, f"item {i + 1}" if not where else f"{where}, item {i + 1}")
            for i, (a, e) in enumerate(zip(answer, expected, strict=True))
        )
    if isinstance(expected, Mapping):
        if not isinstance(answer, Mapping):
            raise _Mismatch(f"{where_}should be a dict, got {show(answer)}")
        if set(answer) != set(expected):
            return False
        return all(_same(answer[k], expected[k], tolerance, normalize, f"[{k!r}]") for k in expected)
    if isinstance(expected, str) and not isinstance(answer, str):
        raise _Mismatch(f"{where_}should be a string, got {show(answer)}")
    try:
        return bool(_apply(normalize, answer) == _apply(normalize, expected))
    except Exception:
        return False


def _apply(normalize: Callable[[Any], Any], value: Any) -> Any:
    """``normalize(value)``, or ``value`` itself if the normalizer does not apply to it."""
    try:
        return normalize(value)
    except Exception:
        return value


def _matches(answer: Any, expected: Any, tolerance: float | None, normalize: Callable[[Any], Any]) -> bool:
    """Like :func:`_same` but a difference of shape is just ``False``."""
    try:
        return _same(answer, expected, tolerance, normalize, "")
    except _Mismatch:
        return False


class ValueProblem(Problem):
    """The answer is a value: a number (within ``tolerance``), a string (normalized:
    case, surrounding and repeated spaces do not matter), a set (order does not
    matter), a tuple/list (item by item), a dict, or any of these nested.

    ``normalize`` replaces the string normalization (applied to both sides, item by
    item). ``explanations`` maps common wrong answers to what is wrong with them
    (compared the same way as the expected answer). ``True``/``False`` are not
    accepted for ``1``/``0`` nor the other way round.
    """

    def __init__(
        self,
        expected: Any,
        tolerance: float | None = None,
        normalize: Callable[[Any], Any] | None = None,
        *,
        explanations: Mapping[Any, str] | Iterable[tuple[Any, str]] | None = None,
        wrong_message: str = "that is not it.",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.expected = expected
        self.tolerance = tolerance
        self.normalize = normalize or _default_normalize
        items = explanations.items() if isinstance(explanations, Mapping) else (explanations or ())
        self.explanations: list[tuple[Any, str]] = list(items)
        self.wrong_message = wrong_message

    def _check(self, answer: Any) -> str | None:
        for wrong, why in self.explanations:
            if _matches(answer, wrong, self.tolerance, self.normalize):
                raise Incorrect(why)
        try:
            ok = _same(answer, self.expected, self.tolerance, self.normalize, "")
        except _Mismatch as shape:
            raise Incorrect(f"{shape}. Pass {self.answer_format}.") from None
        if not ok:
            raise Incorrect(f"{self.wrong_message} Stuck? `{self.ref}.hint()`.")
        return None


class ChoiceProblem(Problem):
    """Multiple choice. ``options``: a list (lettered a, b, c, ...) or a dict
    letter -> text. ``correct``: a letter or the option's text. The student
    answers with the letter (``"b"``, ``"B"``, ``"b)"``), the text, or both
    (``"b) the socket id"``). ``explanations`` maps options (letter or text) to
    why they are wrong, and the correct one to the message shown with "Correct".
    """

    answer_format = "the letter of your choice as a string, e.g. `'a'`"

    def __init__(
        self,
        options: Sequence[str] | Mapping[str, str],
        correct: str,
        *,
        explanations: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(options, Mapping):
            self.options = {str(k).lower(): str(v) for k, v in options.items()}
        else:
            self.options = {chr(ord("a") + i): str(text) for i, text in enumerate(options)}
        self.correct = self._letter(correct)
        if self.correct is None:
            raise ValueError(f"correct={correct!r} is not one of the options {list(self.options)}")
        self.explanations: dict[str, str] = {}
        for key, why in (explanations or {}).items():
            letter = self._letter(key)
            if letter is None:
                raise ValueError(f"explanation for {key!r}, which is not one of the options")
            self.explanations[letter] = why

    def _letter(self, answer: Any) -> str | None:
        if not isinstance(answer, str):
            return None
        text = " ".join(answer.split()).casefold()
        for letter, option in self.options.items():
            option_text = " ".join(option.split()).casefold()
            if text in {letter, f"{letter})", f"{letter}.", f"({letter})", option_text}:
                return letter
            for sep in (") ", ". ", ": ", " "):
                if text == f"{letter}{sep}{option_text}" or text == f"({letter}) {option_text}":
                    return letter
        return None

    def _question_markdown(self) -> str:
        lines = [self.question, ""] if self.question else []
        lines += [f"- **{letter})** {text}" for letter, text in self.options.items()]
        return "\n".join(lines)

    def _check(self, answer: Any) -> str | None:
        letter = self._letter(answer)
        if letter is None:
            letters = ", ".join(f"'{k}'" for k in self.options)
            raise Incorrect(f"{show(answer)} is not one of the options; answer with one of {letters}.")
        if letter != self.correct:
            why = self.explanations.get(letter, "not this one.")
            raise Incorrect(f"{letter}) {self.options[letter]}: {why}")
        return self.explanations.get(letter, self.correct_message) or None


@dataclass(frozen=True)
class Case:
    args: tuple[Any, ...]
    expected: Any
    note: str = ""
    kwargs: Mapping[str, Any] | None = None


def _as_case(case: Any) -> Case:
    if isinstance(case, Case):
        return case
    if not isinstance(case, tuple | list) or len(case) not in (2, 3):
        raise TypeError(f"a case is (args, expected) or (args, expected, note), not {case!r}")
    args = case[0] if isinstance(case[0], tuple) else (case[0],)
    return Case(tuple(args), case[1], case[2] if len(case) == 3 else "")


# What a function that does nothing compiles to, besides its set-up (RESUME, and the
# generator start of an ``async def``): return None.
_SETUP_OPS = frozenset({"RESUME", "RETURN_GENERATOR", "POP_TOP", "NOP", "COPY_FREE_VARS", "MAKE_CELL"})


def _is_stub(fn: Any) -> bool:
    """True for a function (``async def`` too) whose whole body is ``...``, ``pass`` or a docstring."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    ops = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname not in _SETUP_OPS]
    return ops in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)])


class FunctionProblem(Problem):
    """The answer is a function, run on small test ``cases``: a list of
    ``(args, expected)`` or ``(args, expected, note)`` (``args`` a tuple of
    positional arguments, or a single non-tuple argument); the ``note`` is added
    when that case fails. The first failing case is reported: "for input
    `f(...)` expected X, got Y". Arguments are deep-copied for every call, so a
    function that mutates them cannot spoil other cases.

    ``reference`` is the model solution: :meth:`self_test` runs it on the cases,
    and its source is the default solution. ``compare(got, expected) -> bool``
    replaces the default comparison (``==``; a bool is expected to be a bool).
    ``name`` is the function's name in messages (default: the student's function's).
    No timeouts: cases are small. ``async def`` answers are awaited (use
    ``check_async`` in a notebook).
    """

    answer_format = "your function itself (its name, without parentheses)"

    def _is_placeholder(self, answer: Any) -> bool:
        # A function whose body is still ``...`` or ``pass`` is an exercise not yet started.
        return super()._is_placeholder(answer) or _is_stub(answer)

    def __init__(
        self,
        cases: Iterable[Any],
        reference: Callable[..., Any] | None = None,
        *,
        compare: Callable[[Any, Any], bool] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cases = [_as_case(c) for c in cases]
        if not self.cases:
            raise ValueError("a FunctionProblem needs at least one case")
        self.reference = reference
        self.compare = compare
        self.name = name
        if not self.solution_text and reference is not None:
            try:
                source = textwrap.dedent(inspect.getsource(reference)).strip()
                self.solution_text = f"```python\n{source}\n```"
            except (OSError, TypeError):
                pass

    def self_test(self) -> Verdict:
        """Check the reference solution against the cases (for the course's own tests)."""
        if self.reference is None:
            raise ValueError("no reference solution")
        return (
            self.check(self.reference)
            if not _is_async_callable(self.reference)
            else asyncio.run(self.check_async(self.reference))
        )

    def _needs_async(self, answer: Any) -> bool:
        return _is_async_callable(answer)

    def _call_text(self, fn: Any, case: Case) -> str:
        parts = [show(a) for a in case.args]
        parts += [f"{k}={show(v)}" for k, v in (case.kwargs or {}).items()]
        return f"{self.name or _name_of(fn)}({', '.join(parts)})"

    def _precheck(self, answer: Any) -> None:
        if inspect.iscoroutine(answer):
            answer.close()
        if not callable(answer):
            raise Incorrect(
                f"pass your function itself, not {_kind(answer)}: `{self.ref}.check(my_function)`, "
                "without parentheses after its name."
            )

    def _invoke(self, fn: Any, case: Case) -> Any:
        try:
            return fn(*copy.deepcopy(case.args), **copy.deepcopy(dict(case.kwargs or {})))
        except Exception as exc:
            raise CheckError(f"`{self._call_text(fn, case)}` raised {_describe(exc)}") from None

    def _judge(self, fn: Any, case: Case, got: Any) -> None:
        if self.compare is not None:
            ok = bool(self.compare(got, case.expected))
        elif isinstance(case.expected, bool):
            ok = isinstance(got, bool) and got is case.expected
        else:
            try:
                ok = bool(got == case.expected)
            except Exception:
                ok = False
        if ok:
            return
        message = f"for input `{self._call_text(fn, case)}` expected `{show(case.expected)}`, got `{show(got)}`"
        if isinstance(case.expected, bool) and not isinstance(got, bool) and self.compare is None:
            message += " (return a bool, `True` or `False`: `bool(x)` turns any value into one)"
        if case.note:
            message += f": {case.note}"
        raise Incorrect(message)

    def _passed(self) -> str:
        n = len(self.cases)
        return self.correct_message or f"all {n} case{'s' if n != 1 else ''} pass."

    def _check(self, answer: Any) -> str | None:
        self._precheck(answer)
        for case in self.cases:
            got = self._invoke(answer, case)
            if inspect.isawaitable(got):
                if inspect.iscoroutine(got):
                    got.close()
                raise _GoAsync
            self._judge(answer, case, got)
        return self._passed()

    async def _acheck(self, answer: Any) -> str | None:
        self._precheck(answer)
        for case in self.cases:
            got = self._invoke(answer, case)
            if inspect.isawaitable(got):
                try:
                    got = await got
                except Exception as exc:
                    raise CheckError(f"`{self._call_text(answer, case)}` raised {_describe(exc)}") from None
            self._judge(answer, case, got)
        return self._passed()


class LiveProblem(Problem):
    """A check that talks to the running lab server: override
    ``async def _check_async(self, answer, lab)`` (raise :class:`Incorrect` or
    return a message). ``lab`` is :attr:`lab` if set, else the server started by
    ``start_lab()``; if none is running the verdict is an ERROR saying to start it.
    Set ``needs_answer = False`` for checks that only look at the server.
    """

    lab: Any = None
    _await_reason = "this check talks to the lab server"

    call_with = "..."  # what the check call shows as its argument, e.g. the student's function's name
    # What the answer must be, checked before the lab is touched: "async" (an ``async def`` the
    # check awaits), "sync" (a plain ``def`` it calls), "function" (either), or None (not a function).
    answer_kind: Literal["async", "sync", "function"] | None = None
    why_async = "a notebook cell runs inside an event loop, which a blocking client would freeze"
    why_sync = "it only computes; it awaits nothing"

    @property
    def _check_call(self) -> str:
        return f"await {self.ref}.check_async({self.call_with})"

    def _check_kind(self, answer: Any) -> None:
        """Refuse an answer that is not a function of :attr:`answer_kind`, saying why in one line."""
        if self.answer_kind is None:
            return
        if not callable(answer):
            raise Incorrect(f"pass your function itself, not {_kind(answer)}: `{self._check_call}`.")
        name = getattr(answer, "__name__", self.call_with)  # the student's own name for it
        if self.answer_kind == "async" and not _is_async_callable(answer):
            raise Incorrect(f"`{name}` must be an `async def` function: {self.why_async}.")
        if self.answer_kind == "sync" and _is_async_callable(answer):
            raise Incorrect(f"`{name}` must be a plain function (`def`, not `async def`): {self.why_sync}.")

    def _is_placeholder(self, answer: Any) -> bool:
        # A function (or coroutine function) whose body is still ``...`` is not started yet.
        return super()._is_placeholder(answer) or _is_stub(answer)

    def _needs_async(self, answer: Any) -> bool:
        return True

    def _find_lab(self) -> Any:
        if self.lab is not None:
            return self.lab
        from .. import lab as lab_module
        from ..classroom import joined_lab

        # The lab the lesson uses: its own lab while one runs (a lesson, or a part of one, started
        # with start_lab(private=...) in a class), else the class's lab this kernel joined.
        running = lab_module._running.get("lab")
        if running is not None and running.running:
            return running
        shared = joined_lab()
        if shared is not None:
            return shared
        raise CheckError("the lab server is not running: start it first with `lab = start_lab()`.")

    async def _acheck(self, answer: Any) -> str | None:
        self._check_kind(answer)
        return await self._check_async(answer, self._find_lab())

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        raise NotImplementedError(f"{type(self).__name__} must override _check_async")


# --- lessons --------------------------------------------------------------------------

_LESSONS: dict[str, Lesson] = {}

AnyProblem = TypeVar("AnyProblem", bound=Problem)  # Lesson.add returns the problem as given, subclass and all


class Lesson:
    """The problems of one lesson, reachable as attributes: ``ex.q1``.

    A lesson module does ``lesson = Lesson("lesson00", "Welcome")`` and
    ``q1 = lesson.add("q1", ValueProblem(...))``; messages then refer to the
    problem as ``ex.q1`` (``alias`` is how notebooks import the module).
    """

    def __init__(self, name: str, title: str = "", alias: str = "ex") -> None:
        self.name = name
        self.title = title
        self.alias = alias
        self.problems: dict[str, Problem] = {}
        _LESSONS[name] = self

    def add(self, key: str, problem: AnyProblem) -> AnyProblem:
        if not key.isidentifier():
            raise ValueError(f"problem key {key!r} must be an identifier")
        if key in self.problems:
            raise ValueError(f"{self.name} already has a problem {key!r}")
        problem.key = key
        problem.lesson = self
        self.problems[key] = problem
        return problem

    def __getattr__(self, key: str) -> Problem:
        problems: dict[str, Problem] = self.__dict__.get("problems", {})
        if key in problems:
            return problems[key]
        raise AttributeError(key)

    def __getitem__(self, key: str) -> Problem:
        return self.problems[key]

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems.values())

    def __len__(self) -> int:
        return len(self.problems)

    def progress(self) -> dict[str, Status | None]:
        """Each problem's last verdict status (``None``: never checked)."""
        return {k: (p.last_verdict.status if p.last_verdict is not None else None) for k, p in self.problems.items()}

    def __repr__(self) -> str:
        n = len(self.problems)
        return f"<Lesson {self.name}: {self.title} ({n} exercise{'s' if n != 1 else ''})>"

    def _repr_html_(self) -> str:
        rows = []
        for key, p in self.problems.items():
            state = p.last_verdict.label if p.last_verdict is not None else "not checked yet"
            rows.append(
                f"<tr><td><code>{html.escape(self.alias)}.{html.escape(key)}</code></td>"
                f"<td>{html.escape(p.title)}</td><td>{html.escape(state)}</td></tr>"
            )
        return (
            f"<b>{html.escape(self.name)}: {html.escape(self.title)}</b>"
            f"<table><tr><th>exercise</th><th>title</th><th>last check</th></tr>{''.join(rows)}</table>"
        )


def lessons() -> dict[str, Lesson]:
    """The lessons imported so far, by name."""
    return dict(_LESSONS)


def get_lesson(name: str) -> Lesson:
    """The lesson ``name`` (e.g. ``"lesson00"``), importing its module if needed."""
    if name not in _LESSONS:
        import importlib

        if not name.isidentifier():
            raise KeyError(name)
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            raise KeyError(name) from exc
    return _LESSONS[name]
