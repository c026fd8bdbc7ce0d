"""The checked exercises: verdicts, every problem class, lessons, and lesson 00's exercises."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, TypeVar

import pytest

from labserver.course import lab as lab_module
from labserver.course.exercises import (
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
from labserver.course.exercises import lesson00 as ex
from labserver.course.lab import LabServer

_names = iter(range(10**9))
AnyProblem = TypeVar("AnyProblem", bound=Problem)


def in_lesson(problem: AnyProblem, key: str = "q1") -> AnyProblem:
    """Add ``problem`` to a fresh lesson so messages call it ``ex.<key>``."""
    Lesson(f"test_lesson_{next(_names)}", "Test").add(key, problem)
    return problem


# --- Verdict ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (Status.CORRECT, "Correct: well done"),
        (Status.INCORRECT, "Incorrect: well done"),
        (Status.NOT_ATTEMPTED, "Check: well done"),
        (Status.ERROR, "Error: well done"),
    ],
)
def test_verdict_repr_is_one_stable_line(status: Status, text: str) -> None:
    assert repr(Verdict(status, "well done")) == text
    assert str(Verdict(status, "well\n   done ")) == text


def test_verdict_repr_without_message_is_the_label() -> None:
    assert repr(Verdict(Status.CORRECT)) == "Correct"
    assert repr(Verdict(Status.INCORRECT, "")) == "Incorrect"


@pytest.mark.parametrize("status", list(Status))
def test_verdict_is_truthy_only_when_correct(status: Status) -> None:
    assert bool(Verdict(status, "x")) is (status is Status.CORRECT)


def test_verdict_is_frozen() -> None:
    verdict = Verdict(Status.CORRECT, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.message = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("status", "label", "colour"),
    [
        (Status.CORRECT, "Correct", "#2e7d32"),
        (Status.INCORRECT, "Incorrect", "#c62828"),
        (Status.NOT_ATTEMPTED, "Check", "#1565c0"),
        (Status.ERROR, "Error", "#c62828"),
    ],
)
def test_verdict_html_box(status: Status, label: str, colour: str) -> None:
    page = Verdict(status, "see `ex.q1.hint()`")._repr_html_()
    assert page.startswith("<div ")
    assert page.endswith("</div>")
    assert f"border-left: 4px solid {colour}" in page
    assert f"<strong>{label}</strong>: see <code>ex.q1.hint()</code>" in page


def test_verdict_html_escapes_text() -> None:
    page = Verdict(Status.INCORRECT, "got <script>alert('x')</script> & \"more\"\nnext line")._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;more&quot;<br>next line" in page


def test_verdict_html_escapes_inside_code_spans() -> None:
    page = Verdict(Status.ERROR, "`<b>`")._repr_html_()
    assert "<code>&lt;b&gt;</code>" in page
    assert "<b>" not in page


def test_markdown_display_and_repr() -> None:
    md = Markdown("**Hint:** x", "Hint: x")
    assert md._repr_markdown_() == "**Hint:** x"
    assert repr(md) == "Hint: x"
    assert repr(Markdown("plain")) == "plain"
    assert Markdown("a", "b") == Markdown("a", "b")
    assert Markdown("a", "b") != Markdown("a", "c")


def test_show_sorts_sets_so_messages_are_stable() -> None:
    names = [f"s{i:02d}" for i in range(30)]
    assert show(set(reversed(names)), limit=1000) == "{" + ", ".join(repr(n) for n in names) + "}"
    assert show({1: {"b", "a"}, 2: set()}) == "{1: {'a', 'b'}, 2: set()}"
    assert show(frozenset({2, 1})) == "frozenset({1, 2})"
    assert show((1,)) == "(1,)"
    assert show("x" * 500, limit=10) == "'xxxxxx..."
    assert show("x" * 8, limit=10) == "'xxxxxxxx'"


# --- Problem (the base class) ----------------------------------------------------------


class Answer42(Problem):
    title = "The answer"
    question = "What is the answer?"
    hint_text = "Six times seven."
    solution_text = "`42`"
    answer_format = "a number"
    correct_message = "that is the answer."

    def _check(self, answer: Any) -> str | None:
        if answer == 41:
            return "close enough, but please be exact next time."
        if answer == "boom":
            raise RuntimeError("the check broke")
        if answer == "check-error":
            raise CheckError("the lab is asleep")
        if answer != 42:
            raise Incorrect(f"{answer} is not the answer")
        return None


def test_problem_correct_uses_the_default_message() -> None:
    q = in_lesson(Answer42())
    verdict = q.check(42)
    assert verdict == Verdict(Status.CORRECT, "that is the answer.")
    assert repr(verdict) == "Correct: that is the answer."
    assert verdict


def test_problem_correct_with_a_returned_message() -> None:
    assert repr(Answer42().check(41)) == "Correct: close enough, but please be exact next time."


def test_problem_incorrect() -> None:
    verdict = Answer42().check(7)
    assert verdict.status is Status.INCORRECT
    assert repr(verdict) == "Incorrect: 7 is not the answer"
    assert not verdict


@pytest.mark.parametrize("placeholder", [NOT_ANSWERED, ..., None])
def test_problem_placeholders_are_not_attempted(placeholder: Any) -> None:
    q = in_lesson(Answer42(), "q7")
    verdict = q.check(placeholder)
    assert verdict.status is Status.NOT_ATTEMPTED
    assert repr(verdict) == "Check: you have not answered yet. Pass a number to `ex.q7.check(...)`."


def test_problem_no_argument_is_not_attempted() -> None:
    assert Answer42().check().status is Status.NOT_ATTEMPTED


def test_problem_unexpected_exception_is_an_error_verdict() -> None:
    verdict = Answer42().check("boom")
    assert verdict.status is Status.ERROR
    assert repr(verdict) == "Error: the check stopped on RuntimeError: the check broke"


def test_problem_check_error_message_is_kept() -> None:
    assert repr(Answer42().check("check-error")) == "Error: the lab is asleep"


def test_problem_check_async_gives_the_same_verdicts() -> None:
    q = Answer42()
    assert asyncio.run(q.check_async(42)) == q.check(42)
    assert asyncio.run(q.check_async(7)) == Verdict(Status.INCORRECT, "7 is not the answer")
    assert asyncio.run(q.check_async()).status is Status.NOT_ATTEMPTED
    assert asyncio.run(q.check_async("boom")).status is Status.ERROR


async def test_problem_sync_check_works_inside_a_running_loop() -> None:
    assert repr(Answer42().check(42)) == "Correct: that is the answer."


def test_problem_remembers_the_last_verdict_even_when_wrong() -> None:
    q = Answer42()
    assert q.last_verdict is None
    q.check(7)
    assert q.last_verdict == Verdict(Status.INCORRECT, "7 is not the answer")


def test_problem_keyword_arguments_override_class_attributes() -> None:
    q = Answer42(title="Other", hint="Think.", solution="`42`, still", answer_format="an int", correct_message="yes")
    assert (q.title, q.hint_text, q.solution_text, q.answer_format) == ("Other", "Think.", "`42`, still", "an int")
    assert repr(q.check(42)) == "Correct: yes"


def test_problem_hint_and_solution_are_markdown() -> None:
    q = in_lesson(Answer42())
    hint = q.hint()
    assert isinstance(hint, Markdown)
    assert hint._repr_markdown_() == "**Hint:** Six times seven."
    assert repr(hint) == "Hint: Six times seven."
    assert repr(q.solution()) == "Solution: `42`"
    assert q.solution()._repr_markdown_() == "**Solution:** `42`"


def test_problem_several_hints() -> None:
    q = in_lesson(Answer42(hint=["Multiply.", "Six times seven."]), "q2")
    assert repr(q.hint()) == "Hint 1/2: Multiply.\n\nAnother hint: `ex.q2.hint(2)`."
    assert repr(q.hint(2)) == "Hint 2/2: Six times seven."
    assert repr(q.hint(9)) == "Hint 2/2: Six times seven."


def test_problem_without_hint_or_solution() -> None:
    q = in_lesson(Answer42(hint="", solution=""), "q4")
    assert repr(q.hint()) == "Hint: No hint for this one: the solution is in `ex.q4.solution()`."
    assert repr(q.solution()) == "Solution: (no solution written for this one)"


def test_problem_solution_with_code_block_starts_a_paragraph() -> None:
    q = Answer42(solution="```python\nx = 42\n```")
    assert q.solution()._repr_markdown_() == "**Solution:**\n\n```python\nx = 42\n```"


def test_problem_display() -> None:
    q = in_lesson(Answer42(), "q3")
    assert repr(q) == "<Answer42 ex.q3: The answer>"
    assert q._repr_markdown_() == (
        "**q3. The answer**\n\nWhat is the answer?\n\n"
        "Check your answer with `ex.q3.check(...)`; stuck? `ex.q3.hint()`, then `ex.q3.solution()`."
    )


def test_problem_outside_a_lesson_is_called_q() -> None:
    assert repr(Answer42().check()) == "Check: you have not answered yet. Pass a number to `q.check(...)`."


def test_problem_that_needs_no_answer() -> None:
    class ServerOnly(Answer42):
        needs_answer = False

        def _check(self, answer: Any) -> str | None:
            assert answer is NOT_ANSWERED
            return "looked at the server"

    assert repr(ServerOnly().check()) == "Correct: looked at the server"


def test_keyboard_interrupt_is_not_swallowed() -> None:
    class Interrupted(Answer42):
        def _check(self, answer: Any) -> str | None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Interrupted().check(1)


# --- ValueProblem ----------------------------------------------------------------------


def test_value_integer_is_exact() -> None:
    q = in_lesson(ValueProblem(3))
    assert q.check(3)
    assert repr(q.check(4)) == "Incorrect: that is not it. Stuck? `ex.q1.hint()`."
    assert repr(q.check(3.5)) == "Incorrect: that is not it. Stuck? `ex.q1.hint()`."


def test_value_floats_are_close_by_default() -> None:
    q = ValueProblem(0.3)
    assert q.check(0.1 + 0.2)
    assert not q.check(0.31)


def test_value_tolerance() -> None:
    q = ValueProblem(3.14, tolerance=0.01)
    assert q.check(3.141)
    assert q.check(3.15)
    assert not q.check(3.16)


def test_value_number_type_mismatch() -> None:
    q = in_lesson(ValueProblem(2, answer_format="a number, e.g. `3`"))
    assert repr(q.check("2")) == "Incorrect: your answer should be a number, got '2'. Pass a number, e.g. `3`."
    assert not q.check(True)


def test_value_bool_is_not_an_int() -> None:
    q = ValueProblem(True)
    assert q.check(True)
    verdict = q.check(1)
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith("your answer should be a bool (True or False), got 1.")


def test_value_strings_are_normalized() -> None:
    q = ValueProblem("socket id")
    assert q.check("  Socket   ID ")
    assert not q.check("socketid")
    assert repr(q.check(5)).startswith("Incorrect: your answer should be a string, got 5.")


def test_value_custom_normalize() -> None:
    strict = ValueProblem("Socket", normalize=lambda s: s)
    assert strict.check("Socket")
    assert not strict.check("socket")
    digits = ValueProblem("12", normalize=lambda s: "".join(c for c in s if c.isdigit()))
    assert digits.check("1-2")


def test_value_sets_ignore_order_and_accept_lists() -> None:
    q = ValueProblem({"a", "b", "c"})
    assert q.check(["c", "a", "B"])
    assert q.check({"a", "b", "c"})
    assert not q.check(["a", "b"])
    assert not q.check([["unhashable"]])


def test_value_set_of_numbers_with_a_string_normalizer() -> None:
    assert ValueProblem({1, 2}, normalize=str.lower).check([2, 1])


def test_value_lists_keep_order() -> None:
    q = in_lesson(ValueProblem(["open", "message", "close"]))
    assert q.check(("open", "Message", "close"))
    assert not q.check(["close", "message", "open"])
    assert repr(q.check(["open"])) == (
        "Incorrect: your answer should be a list of 3 items, got a list of 1 item. Pass your answer."
    )


def test_value_nested_mismatch_names_the_item() -> None:
    q = ValueProblem((1, (2, True)))
    assert q.check([1, [2, True]])
    assert q.check((1, (2, 1))).message == "item 2, item 2 should be a bool (True or False), got 1. Pass your answer."


def test_value_dicts() -> None:
    q = ValueProblem({"sockets": 2, "online": True})
    assert q.check({"online": True, "sockets": 2})
    assert not q.check({"sockets": 2})
    assert not q.check({"sockets": 2, "online": False})
    assert q.check([2, True]).message == "your answer should be a dict, got [2, True]. Pass your answer."


def test_value_explanations_for_common_wrong_answers() -> None:
    q = ValueProblem(4, explanations={3: "you forgot the last one.", 5: "one too many."})
    assert repr(q.check(3)) == "Incorrect: you forgot the last one."
    assert repr(q.check(5)) == "Incorrect: one too many."
    assert q.check(4)


def test_value_explanations_compare_like_the_answer() -> None:
    q = ValueProblem("b", explanations=[("  A ", "not a.")])
    assert repr(q.check("a")) == "Incorrect: not a."


def test_value_not_attempted_and_errors() -> None:
    q = ValueProblem(2)
    assert q.check().status is Status.NOT_ATTEMPTED
    assert q.check(...).status is Status.NOT_ATTEMPTED

    class Weird:
        def __eq__(self, other: object) -> bool:
            raise ValueError("no comparing me")

    assert ValueProblem(Weird()).check(Weird()).status is Status.INCORRECT


# --- ChoiceProblem ---------------------------------------------------------------------


def _choice() -> ChoiceProblem:
    return in_lesson(
        ChoiceProblem(
            ["red", "green", "blue"],
            "green",
            explanations={"a": "red means stop.", "green": "green means go."},
            title="Go",
            question="Which light means go?",
        ),
        "q5",
    )


@pytest.mark.parametrize("answer", ["b", "B", " b ", "b)", "(b)", "b.", "green", "GREEN", "b) green", "b green"])
def test_choice_accepts_letter_text_or_both(answer: str) -> None:
    assert repr(_choice().check(answer)) == "Correct: green means go."


def test_choice_wrong_option_explained() -> None:
    assert repr(_choice().check("a")) == "Incorrect: a) red: red means stop."
    assert repr(_choice().check("red")) == "Incorrect: a) red: red means stop."


def test_choice_wrong_option_without_explanation() -> None:
    assert repr(_choice().check("c")) == "Incorrect: c) blue: not this one."


@pytest.mark.parametrize(("answer", "shown"), [("e", "'e'"), (2, "2"), ("yellow", "'yellow'")])
def test_choice_unknown_answer(answer: Any, shown: str) -> None:
    assert repr(_choice().check(answer)) == (
        f"Incorrect: {shown} is not one of the options; answer with one of 'a', 'b', 'c'."
    )


def test_choice_not_attempted() -> None:
    assert repr(_choice().check()) == (
        "Check: you have not answered yet. "
        "Pass the letter of your choice as a string, e.g. `'a'` to `ex.q5.check(...)`."
    )


def test_choice_correct_without_explanation() -> None:
    assert repr(ChoiceProblem({"x": "yes", "y": "no"}, "x").check("x")) == "Correct"


def test_choice_options_as_dict_and_display() -> None:
    q = _choice()
    assert q.options == {"a": "red", "b": "green", "c": "blue"}
    assert q._repr_markdown_() == (
        "**q5. Go**\n\nWhich light means go?\n\n- **a)** red\n- **b)** green\n- **c)** blue\n\n"
        "Check your answer with `ex.q5.check(...)`; stuck? `ex.q5.hint()`, then `ex.q5.solution()`."
    )


def test_choice_rejects_bad_definitions() -> None:
    with pytest.raises(ValueError, match="not one of the options"):
        ChoiceProblem(["a thing"], "z")
    with pytest.raises(ValueError, match="not one of the options"):
        ChoiceProblem(["a thing"], "a", explanations={"q": "?"})


# --- FunctionProblem -------------------------------------------------------------------


def _double() -> FunctionProblem:
    def double(x: int) -> int:
        return 2 * x

    return in_lesson(FunctionProblem([(1, 2), ((5,), 10), ((-3,), -6, "negative numbers too")], reference=double), "q6")


def test_function_right_answer() -> None:
    def twice(x: int) -> int:
        return x + x

    assert repr(_double().check(twice)) == "Correct: all 3 cases pass."


def test_function_reports_the_first_failing_case() -> None:
    def double(x: int) -> int:
        return 2 * x if x < 5 else 0

    assert repr(_double().check(double)) == "Incorrect: for input `double(5)` expected `10`, got `0`"


def test_function_failing_case_note() -> None:
    def double(x: int) -> int:
        return abs(2 * x)

    assert repr(_double().check(double)) == (
        "Incorrect: for input `double(-3)` expected `-6`, got `6`: negative numbers too"
    )


def test_function_crash_is_an_error_verdict() -> None:
    def double(x: int) -> int:
        return 2 * x if x < 5 else 1 // 0

    verdict = _double().check(double)
    assert verdict.status is Status.ERROR
    assert repr(verdict) == "Error: `double(5)` raised ZeroDivisionError: integer division or modulo by zero"


def test_function_not_callable() -> None:
    q = _double()
    assert repr(q.check(10)) == (
        "Incorrect: pass your function itself, not a number: `ex.q6.check(my_function)`, "
        "without parentheses after its name."
    )


def test_function_not_attempted() -> None:
    assert repr(_double().check()) == (
        "Check: you have not answered yet. Pass your function itself (its name, without parentheses) "
        "to `ex.q6.check(...)`."
    )


def test_function_arguments_are_copied_for_every_call() -> None:
    shared = {1: "a"}
    q = FunctionProblem([((shared, 1), "a"), ((shared, 1), "a")])
    assert q.check(lambda d, k: d.pop(k))
    assert shared == {1: "a"}


def test_function_bool_result_must_be_a_bool() -> None:
    q = FunctionProblem([(([1],), True)], name="has_items")
    assert repr(q.check(lambda items: items)) == (
        "Incorrect: for input `has_items([1])` expected `True`, got `[1]` "
        "(return a bool, `True` or `False`: `bool(x)` turns any value into one)"
    )


def test_function_truthy_int_is_not_a_bool() -> None:
    q = FunctionProblem([((), True)], name="ready")
    assert repr(q.check(lambda: 1)) == (
        "Incorrect: for input `ready()` expected `True`, got `1` "
        "(return a bool, `True` or `False`: `bool(x)` turns any value into one)"
    )
    assert q.check(lambda: True)


def test_function_custom_compare() -> None:
    q = FunctionProblem([((3,), [1, 2, 3])], compare=lambda got, expected: sorted(got) == expected)
    assert q.check(lambda n: [3, 2, 1])
    assert not q.check(lambda n: [3, 2])


def test_function_keyword_cases() -> None:
    from labserver.course.exercises.core import Case

    q = FunctionProblem([Case((2,), 8, kwargs={"power": 3})], name="pow_")
    assert q.check(lambda x, power=2: x**power)
    assert repr(q.check(lambda x, power=2: x)) == "Incorrect: for input `pow_(2, power=3)` expected `8`, got `2`"


def test_function_failing_case_shows_sets_sorted() -> None:
    names = {f"s{i}" for i in range(12)}
    q = FunctionProblem([((names,), 12)], name="count")
    expected_input = "{" + ", ".join(repr(n) for n in sorted(names)) + "}"
    assert repr(q.check(lambda s: 0)) == f"Incorrect: for input `count({expected_input})` expected `12`, got `0`"


def test_function_reference_self_test_and_default_solution() -> None:
    q = _double()
    assert q.self_test() == Verdict(Status.CORRECT, "all 3 cases pass.")
    assert q.solution_text == "```python\ndef double(x: int) -> int:\n    return 2 * x\n```"
    with pytest.raises(ValueError, match="no reference"):
        FunctionProblem([(1, 1)]).self_test()


def test_function_bad_definitions() -> None:
    with pytest.raises(ValueError):
        FunctionProblem([])
    with pytest.raises(TypeError):
        FunctionProblem([(1, 2, 3, 4)])


async def _async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def test_function_async_answer_with_check_async() -> None:
    assert repr(await _double().check_async(_async_double)) == "Correct: all 3 cases pass."


async def test_function_async_wrong_and_crash_with_check_async() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        if x < 0:
            raise ValueError("no negatives")
        return x

    assert repr(await _double().check_async(double)) == "Incorrect: for input `double(1)` expected `2`, got `1`"

    async def double2(x: int) -> int:
        await asyncio.sleep(0)
        if x < 0:
            raise ValueError("no negatives")
        return 2 * x

    assert repr(await _double().check_async(double2)) == "Error: `double2(-3)` raised ValueError: no negatives"


async def test_function_sync_answer_with_check_async() -> None:
    assert await _double().check_async(lambda x: 2 * x)


async def test_function_check_in_a_running_loop_asks_to_await() -> None:
    with pytest.raises(AwaitRequired) as caught:
        _double().check(_async_double)
    message = (
        "`_async_double` is an async function, and this notebook already runs an event loop, "
        "so `check()` cannot run it here. Use: await ex.q6.check_async(_async_double)"
    )
    assert str(caught.value) == message
    assert caught.value._render_traceback_() == [f"AwaitRequired: {message}"]


async def test_function_sync_function_returning_a_coroutine_in_a_running_loop() -> None:
    def double(x: int) -> Any:
        return _async_double(x)

    with pytest.raises(AwaitRequired, match=r"`double` returns an awaitable.*await ex\.q6\.check_async\(double\)"):
        _double().check(double)
    assert await _double().check_async(double)


def test_function_async_answer_with_check_outside_a_loop_just_runs() -> None:
    assert repr(_double().check(_async_double)) == "Correct: all 3 cases pass."

    def double(x: int) -> Any:
        return _async_double(x)

    assert repr(_double().check(double)) == "Correct: all 3 cases pass."


def test_function_passing_a_coroutine_instead_of_the_function() -> None:
    verdict = _double().check(_async_double(1))
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith("pass your function itself, not a coroutine")


async def test_function_async_callable_object() -> None:
    class Doubler:
        async def __call__(self, x: int) -> int:
            return 2 * x

    with pytest.raises(AwaitRequired):
        _double().check(Doubler())
    assert await _double().check_async(Doubler())


async def test_ipython_shows_await_required_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path))  # leave ~/.ipython alone
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    try:
        shell.user_ns.update(q=_double(), f=_async_double)
        shell.run_cell("q.check(f)")
    finally:
        InteractiveShell.clear_instance()
    out = capsys.readouterr()
    text = out.out + out.err
    assert "AwaitRequired: `_async_double` is an async function" in text
    assert "Traceback" not in text
    assert "site-packages" not in text


# --- LiveProblem -----------------------------------------------------------------------


class FakeLab:
    running = True

    def __init__(self, connections: int) -> None:
        self.connections = connections

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "connections": self.connections}


class CountConnections(LiveProblem):
    title = "Count the connections"
    answer_format = "the number of open connections"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        await asyncio.sleep(0)
        actual = lab.health()["connections"]
        if answer != actual:
            raise Incorrect(f"the server holds {actual} connections, not {answer}")
        return f"the server holds {actual}."


def _live(lab: Any = None) -> CountConnections:
    q = in_lesson(CountConnections(), "q8")
    q.lab = lab
    return q


async def test_live_check_async_against_a_lab() -> None:
    q = _live(FakeLab(2))
    assert repr(await q.check_async(2)) == "Correct: the server holds 2."
    assert repr(await q.check_async(1)) == "Incorrect: the server holds 2 connections, not 1"
    assert (await q.check_async()).status is Status.NOT_ATTEMPTED


async def test_live_problems_say_to_await_their_check() -> None:
    q = _live(FakeLab(2))
    assert "Check your answer with `await ex.q8.check_async(...)`" in q._repr_markdown_()
    assert "`await ex.q8.check_async(...)`" in (await q.check_async()).message


async def test_live_unwritten_function_is_not_attempted() -> None:
    """A student's ``async def my_client(lab): ...`` has not been started: never run it against the lab."""

    async def my_client(lab: Any) -> None: ...

    async def documented(lab: Any) -> None:
        """Join general and say hello."""

    async def written(lab: Any) -> int:
        return 2

    q = _live(FakeLab(2))
    assert (await q.check_async(my_client)).status is Status.NOT_ATTEMPTED
    assert (await q.check_async(documented)).status is Status.NOT_ATTEMPTED
    assert (await q.check_async(written)).status is Status.INCORRECT


async def test_live_check_in_a_running_loop_asks_to_await() -> None:
    with pytest.raises(AwaitRequired) as caught:
        _live(FakeLab(2)).check(2)
    assert str(caught.value) == (
        "this check talks to the lab server, and this notebook already runs an event loop, "
        "so `check()` cannot run it here. Use: await ex.q8.check_async(2)"
    )


async def test_live_not_attempted_needs_no_loop_escape() -> None:
    assert _live(FakeLab(2)).check().status is Status.NOT_ATTEMPTED


def test_live_check_outside_a_loop_just_runs() -> None:
    assert repr(_live(FakeLab(3)).check(3)) == "Correct: the server holds 3."


async def test_live_without_a_running_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(lab_module._running, "lab", None)
    assert repr(await _live().check_async(2)) == (
        "Error: the lab server is not running: start it first with `lab = start_lab()`."
    )


async def test_live_uses_the_lab_started_by_start_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(lab_module._running, "lab", FakeLab(5))
    assert repr(await _live().check_async(5)) == "Correct: the server holds 5."


async def test_live_crash_is_an_error_verdict() -> None:
    class Broken:
        def health(self) -> dict[str, Any]:
            raise ConnectionRefusedError("[Errno 111] Connection refused")

    assert repr(await _live(Broken()).check_async(1)) == (
        "Error: the check stopped on ConnectionRefusedError: [Errno 111] Connection refused"
    )


async def test_live_problem_that_needs_no_answer() -> None:
    class Somebody(LiveProblem):
        needs_answer = False

        async def _check_async(self, answer: Any, lab: Any) -> str | None:
            if lab.health()["connections"] == 0:
                raise Incorrect("nobody is connected yet: open the browser client.")
            return None

    q = in_lesson(Somebody(), "q9")
    q.lab = FakeLab(0)
    assert repr(await q.check_async()) == "Incorrect: nobody is connected yet: open the browser client."
    with pytest.raises(AwaitRequired, match=r"Use: await ex\.q9\.check_async\(\)$"):
        q.check()


class CallsYourClient(LiveProblem):
    """A live problem whose answer must be a function of a given kind, checked before the lab is touched."""

    call_with = "my_client"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        lab.touched = True
        return "ran"


@pytest.mark.parametrize(
    ("kind", "says_of_async", "says_of_plain"),
    [
        ("async", None, "Incorrect: `plain_function` must be an `async def` function: a notebook cell"),
        ("sync", "Incorrect: `coroutine_function` must be a plain function (`def`, not `async def`)", None),
        ("function", None, None),
        (None, None, None),
    ],
)
async def test_live_answers_of_the_wrong_kind_are_refused_before_the_lab_is_touched(
    kind: Any, says_of_async: str | None, says_of_plain: str | None
) -> None:
    async def coroutine_function(lab: Any) -> int:
        return 1

    def plain_function(lab: Any) -> int:
        return 1

    for answer, says in ((coroutine_function, says_of_async), (plain_function, says_of_plain)):
        q = in_lesson(CallsYourClient(), "q7")
        q.answer_kind = kind
        q.lab = FakeLab(0)
        verdict = await q.check_async(answer)
        if says is None:
            assert repr(verdict) == "Correct: ran" and getattr(q.lab, "touched", False)
        else:
            assert repr(verdict).startswith(says) and not hasattr(q.lab, "touched"), repr(verdict)
    q = in_lesson(CallsYourClient(), "q7")
    q.answer_kind, q.lab = "async", FakeLab(0)
    assert repr(await q.check_async(42)) == (
        "Incorrect: pass your function itself, not a number: `await ex.q7.check_async(my_client)`."
    )


async def test_live_against_the_real_lab_server(lab: LabServer, account: Any, connect: Any) -> None:
    alice = account()
    await connect(alice)
    await connect(alice)
    q = _live(lab)
    assert repr(await q.check_async(2)) == "Correct: the server holds 2."
    assert repr(await q.check_async(1)) == "Incorrect: the server holds 2 connections, not 1"


# --- Lesson ----------------------------------------------------------------------------


def test_lesson_registry_and_attributes() -> None:
    lesson = Lesson("test_lesson_registry", "Registry <test>", alias="hw")
    q = lesson.add("q1", Answer42())
    assert lesson.q1 is q
    assert lesson["q1"] is q
    assert list(lesson) == [q]
    assert len(lesson) == 1
    assert q.ref == "hw.q1"
    assert lessons()["test_lesson_registry"] is lesson
    assert get_lesson("test_lesson_registry") is lesson
    with pytest.raises(AttributeError):
        lesson.q2  # noqa: B018
    with pytest.raises(ValueError, match="already has"):
        lesson.add("q1", Answer42())
    with pytest.raises(ValueError, match="identifier"):
        lesson.add("q 2", Answer42())
    assert repr(lesson) == "<Lesson test_lesson_registry: Registry <test> (1 exercise)>"


def test_lesson_progress_and_html() -> None:
    lesson = Lesson("test_lesson_progress", "Progress & <b>")
    lesson.add("q1", Answer42(title="<i>first</i>"))
    lesson.add("q2", Answer42())
    assert lesson.progress() == {"q1": None, "q2": None}
    lesson.q1.check(7)
    lesson.q2.check(42)
    assert lesson.progress() == {"q1": Status.INCORRECT, "q2": Status.CORRECT}
    page = lesson._repr_html_()
    assert "Progress &amp; &lt;b&gt;" in page
    assert "&lt;i&gt;first&lt;/i&gt;" in page
    assert "<td>Incorrect</td>" in page
    assert "<td>Correct</td>" in page


def test_get_lesson_imports_lesson_modules() -> None:
    assert get_lesson("lesson00") is ex.lesson
    with pytest.raises(KeyError):
        get_lesson("lesson_that_does_not_exist")
    with pytest.raises(KeyError):
        get_lesson("../etc")


# --- lesson 00 -------------------------------------------------------------------------


def test_lesson00_registry() -> None:
    assert ex.lesson.name == "lesson00"
    assert list(ex.lesson.problems) == ["q1", "q2", "q3", "q4", "q5", "q6"]  # q4-q6: tests/test_exercises_lesson00.py
    assert (ex.lesson.q1, ex.lesson.q2, ex.lesson.q3) == (ex.q1, ex.q2, ex.q3)
    assert isinstance(ex.q1, ValueProblem)
    assert isinstance(ex.q2, ChoiceProblem)
    assert isinstance(ex.q3, FunctionProblem)


@pytest.mark.parametrize("key", ["q1", "q2", "q3"])
def test_lesson00_every_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and q._hints() and q.solution_text
    assert f"`ex.{key}.check(...)`" in q._repr_markdown_()
    assert repr(q.hint()).startswith("Hint")
    assert repr(q.solution()).startswith("Solution:")


@pytest.mark.parametrize(
    ("key", "reminder"),
    [
        ("q1", "a tuple `(sockets, online)`, e.g. `(3, False)`"),
        ("q2", "the letter of your choice as a string, e.g. `'a'`"),
        ("q3", "your function itself (its name, without parentheses)"),
    ],
)
@pytest.mark.parametrize("placeholder", [NOT_ANSWERED, ..., None])
def test_lesson00_not_attempted(key: str, reminder: str, placeholder: Any) -> None:
    verdict = ex.lesson[key].check(placeholder)
    assert repr(verdict) == f"Check: you have not answered yet. Pass {reminder} to `ex.{key}.check(...)`."


@pytest.mark.parametrize("answer", [(2, True), [2, True]])
def test_lesson00_q1_right(answer: Any) -> None:
    assert repr(ex.q1.check(answer)) == (
        "Correct: two tabs are two sockets in Alice's set; closing one leaves the set non-empty, so she stays online."
    )


@pytest.mark.parametrize(
    ("answer", "explanation"),
    [
        ((1, True), "each tab opens its own socket"),
        ((2, False), "a user is online while ANY of their sockets is open"),
        ((1, False), "each tab opens its own socket (so two, not one), and a user is online while ANY"),
        ((0, False), "Alice has two tabs open"),
    ],
)
def test_lesson00_q1_wrong_answers_are_explained(answer: Any, explanation: str) -> None:
    verdict = ex.q1.check(answer)
    assert verdict.status is Status.INCORRECT
    assert explanation in verdict.message


def test_lesson00_q1_other_wrong_answers() -> None:
    assert repr(ex.q1.check((3, True))) == "Incorrect: that is not it. Stuck? `ex.q1.hint()`."
    assert repr(ex.q1.check(2)) == (
        "Incorrect: your answer should be a tuple of 2 items, got 2. "
        "Pass a tuple `(sockets, online)`, e.g. `(3, False)`."
    )
    assert repr(ex.q1.check((2, "yes"))) == (
        "Incorrect: item 2 should be a bool (True or False), got 'yes'. "
        "Pass a tuple `(sockets, online)`, e.g. `(3, False)`."
    )


def test_lesson00_q1_hints_and_solution() -> None:
    assert "user_sockets" in repr(ex.q1.hint())
    assert "online while their set is not empty" in repr(ex.q1.hint(2))
    assert repr(ex.q1.solution()).startswith("Solution: `(2, True)`.")


@pytest.mark.parametrize("answer", ["b", "B", "the socket id", "b) the socket id"])
def test_lesson00_q2_right(answer: str) -> None:
    verdict = ex.q2.check(answer)
    assert verdict.status is Status.CORRECT
    assert "A reconnect is a brand-new connection, so it gets a new socket id" in verdict.message


@pytest.mark.parametrize(
    ("answer", "explanation"),
    [
        ("a", "a) the user id: the user id names the *person*"),
        ("c", "c) the JWT: the token proves *who* the user is"),
        ("d", "d) the room name: a room names a conversation"),
        ("the room name", "d) the room name: a room names a conversation"),
    ],
)
def test_lesson00_q2_wrong_answers_are_explained(answer: str, explanation: str) -> None:
    verdict = ex.q2.check(answer)
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith(explanation)


def test_lesson00_q2_unknown_answer_and_teaching() -> None:
    assert repr(ex.q2.check("e")) == "Incorrect: 'e' is not one of the options; answer with one of 'a', 'b', 'c', 'd'."
    assert "different for every WebSocket" in repr(ex.q2.hint())
    assert repr(ex.q2.solution()).startswith("Solution: **b) the socket id.**")
    assert "- **b)** the socket id" in ex.q2._repr_markdown_()


def test_lesson00_q3_reference_and_right_answers() -> None:
    assert ex.q3.self_test() == Verdict(Status.CORRECT, "all 7 cases pass.")

    def is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool:
        return len(user_sockets.get(user_id, ())) > 0

    assert repr(ex.q3.check(is_online)) == "Correct: all 7 cases pass."


def test_lesson00_q3_empty_set_means_offline() -> None:
    def is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool:
        return user_id in user_sockets

    assert repr(ex.q3.check(is_online)) == (
        "Incorrect: for input `is_online({1: set()}, 1)` expected `False`, got `True`: "
        "an empty set means every socket has closed: offline"
    )


def test_lesson00_q3_missing_user_crash_is_an_error() -> None:
    def is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool:
        return len(user_sockets[user_id]) > 0

    verdict = ex.q3.check(is_online)
    assert verdict.status is Status.ERROR
    assert repr(verdict) == "Error: `is_online({1: {'s1'}}, 2)` raised KeyError: 2"


def test_lesson00_q3_must_return_a_bool() -> None:
    def is_online(user_sockets: dict[int, set[str]], user_id: int) -> Any:
        return user_sockets.get(user_id)

    assert repr(ex.q3.check(is_online)) == (
        "Incorrect: for input `is_online({1: {'s1'}}, 1)` expected `True`, got `{'s1'}` "
        "(return a bool, `True` or `False`: `bool(x)` turns any value into one): one open socket: online"
    )


def test_lesson00_q3_names_the_function_is_online_whatever_the_student_called_it() -> None:
    assert repr(ex.q3.check(lambda d, u: True)).startswith("Incorrect: for input `is_online({1: set()}, 1)`")


def test_lesson00_q3_input_with_two_sockets_is_shown_sorted() -> None:
    def is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool:
        return len(user_sockets.get(user_id, ())) == 1

    assert repr(ex.q3.check(is_online)) == (
        "Incorrect: for input `is_online({1: {'s1', 's2'}}, 1)` expected `True`, got `False`: two tabs: online"
    )


async def test_lesson00_q3_async_answer() -> None:
    async def is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool:
        await asyncio.sleep(0)
        return bool(user_sockets.get(user_id))

    with pytest.raises(AwaitRequired, match=r"Use: await ex\.q3\.check_async\(is_online\)$"):
        ex.q3.check(is_online)
    assert repr(await ex.q3.check_async(is_online)) == "Correct: all 7 cases pass."


def test_lesson00_q3_hints_and_solution() -> None:
    assert repr(ex.q3.hint()).startswith("Hint 1/2: Online means at least one open socket.")
    assert "`bool(...)`" in repr(ex.q3.hint(2))
    solution = ex.q3.solution()._repr_markdown_()
    assert solution.startswith("**Solution:**\n\n```python\ndef is_online(")
    assert "return bool(user_sockets.get(user_id))" in solution


def test_function_whose_body_is_still_ellipsis_is_not_attempted() -> None:
    from labserver.course.exercises import lesson00

    def is_online(user_sockets, user_id):  # a student's untyped stub, as in the notebook
        ...

    def written(user_sockets, user_id):
        return False

    assert lesson00.q3.check(is_online).status is Status.NOT_ATTEMPTED
    assert lesson00.q3.check(written).status is Status.INCORRECT


def test_seq_ranges_reads_like_a_person_would_say_them() -> None:
    assert seq_ranges([3, 4, 5, 9]) == "3-5, 9"
    assert seq_ranges([1]) == "1"
    assert seq_ranges([]) == "none"
