"""Lesson 02's exercises (RFC 6455 section 4).

Right answers pass, wrong ones say why, placeholders are not attempted."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest

from labserver.course.exercises import Status, get_lesson
from labserver.course.exercises import lesson02 as ex
from labserver.handshake import accept_key as server_accept_key
from labserver.handshake import key_is_valid

from .conftest import answer_cells

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _solution_code(problem: Any) -> str:
    """The first fenced Python block of a problem's solution."""
    match = re.search(r"```python\n(.*?)```", problem.solution_text, re.S)
    assert match, problem.solution_text
    return match.group(1)


def test_lesson_is_registered_with_four_problems() -> None:
    lesson = get_lesson("lesson02")
    assert lesson is ex.lesson
    assert list(lesson.problems) == ["q1", "q2", "q3", "q4"]
    for problem in lesson:
        assert problem.title and problem.question and problem.hint_text and problem.solution_text


# --- q1: accept_key ------------------------------------------------------------------------


def test_q1_reference_passes() -> None:
    verdict = ex.q1.self_test()
    assert verdict.status is Status.CORRECT
    assert repr(verdict) == "Correct: all 5 cases pass."


def test_q1_cases_agree_with_the_server_and_include_the_rfc_example() -> None:
    keys = [case.args[0] for case in ex.q1.cases]
    assert ex.RFC_KEY in keys
    for case in ex.q1.cases:
        assert key_is_valid(case.args[0])
        assert server_accept_key(case.args[0]) == case.expected
    assert server_accept_key(ex.RFC_KEY) == ex.RFC_ACCEPT == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_q1_solution_code_is_correct() -> None:
    namespace: dict[str, Any] = {}
    exec(_solution_code(ex.q1), namespace)
    assert ex.q1.check(namespace["accept_key"]).status is Status.CORRECT


def test_q1_a_student_version_passes() -> None:
    def accept_key(key: str) -> str:
        sha = hashlib.sha1()
        sha.update(key.encode("ascii"))
        sha.update(GUID.encode("ascii"))
        return base64.standard_b64encode(sha.digest()).decode("ascii")

    assert ex.q1.check(accept_key)


def test_q1_stub_and_placeholders_are_not_attempted() -> None:
    def accept_key(key: str) -> str: ...  # type: ignore[empty-body]  # a student's unfinished stub

    for answer in (accept_key, ..., None):
        verdict = ex.q1.check(answer)
        assert verdict.status is Status.NOT_ATTEMPTED, answer
        assert "ex.q1.check" in verdict.message


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


MISTAKES = [
    (lambda k: base64.b64encode(_sha1((k + GUID).encode())), "returned bytes"),
    (lambda k: base64.b64encode(_sha1(k.encode())).decode(), "GUID is missing"),
    (lambda k: base64.b64encode(_sha1((GUID + k).encode())).decode(), "goes *after* the key"),
    (lambda k: base64.b64encode(_sha1((k + GUID.lower()).encode())).decode(), "capitals"),
    (lambda k: base64.b64encode(_sha1(base64.b64decode(k) + GUID.encode())).decode(), "do not base64-decode"),
    (lambda k: hashlib.sha1((k + GUID).encode()).hexdigest(), "hexdigest"),
    (lambda k: base64.b64encode(hashlib.sha1((k + GUID).encode()).hexdigest().encode()).decode(), "hex text"),
    (lambda k: base64.b64encode(hashlib.sha256((k + GUID).encode()).digest()).decode(), "SHA-256"),
    (lambda k: _sha1((k + GUID).encode()), "base64-encode it"),
]


@pytest.mark.parametrize(("wrong", "says"), MISTAKES, ids=[says for _, says in MISTAKES])
def test_q1_common_mistakes_are_named(wrong: Any, says: str) -> None:
    verdict = ex.q1.check(wrong)
    assert verdict.status is Status.INCORRECT
    assert "accept_key('dGhlIHNhbXBsZSBub25jZQ==')" in verdict.message  # the RFC example comes first
    assert says in verdict.message


def test_q1_urlsafe_base64_is_caught_on_a_key_where_it_differs() -> None:
    def urlsafe(key: str) -> str:
        return base64.urlsafe_b64encode(_sha1((key + GUID).encode())).decode()

    verdict = ex.q1.check(urlsafe)
    assert verdict.status is Status.INCORRECT
    assert "URL-safe" in verdict.message


def test_q1_unknown_wrong_answer_has_no_made_up_diagnosis() -> None:
    verdict = ex.q1.check(lambda key: "nope")
    assert verdict.status is Status.INCORRECT
    assert "Probably" not in verdict.message


def test_q1_a_crash_is_an_error_verdict() -> None:
    def accept_key(key: str) -> str:
        return hashlib.sha1(key + GUID).digest()  # type: ignore[arg-type, return-value]  # a student's mistakes: str to sha1, bytes back

    verdict = ex.q1.check(accept_key)
    assert verdict.status is Status.ERROR
    assert "TypeError" in verdict.message


def test_q1_calling_the_function_is_explained() -> None:
    verdict = ex.q1.check("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    assert verdict.status is Status.INCORRECT
    assert "without parentheses" in verdict.message


# --- q2: spot the defect -----------------------------------------------------------------------


def _defect_of(request: str) -> str:
    """An independent RFC 6455 section 4.1 checker: the letter of the first defect found."""
    lines = request.splitlines()
    method, _, version = lines[0].split(" ")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    try:
        key_bytes = len(base64.b64decode(headers.get("sec-websocket-key", ""), validate=True))
    except ValueError:
        key_bytes = -1
    checks = [
        ("a", method == "GET"),
        ("b", "upgrade" in tokens),
        ("c", headers.get("upgrade", "").lower() == "websocket"),
        ("d", headers.get("sec-websocket-version") == "13"),
        ("e", key_bytes == 16),
        ("f", "host" in headers),
    ]
    assert version == "HTTP/1.1"
    for letter, ok in checks:
        if not ok:
            return letter
    return "g"


def test_q2_defects_match_an_independent_checker() -> None:
    assert tuple(_defect_of(r) for r in ex.REQUESTS) == ex.REQUEST_DEFECTS
    assert sum(1 for d in ex.REQUEST_DEFECTS if d == "g") == 1
    assert len(set(ex.REQUEST_DEFECTS)) == len(ex.REQUEST_DEFECTS)


@pytest.mark.parametrize(
    "answer",
    [
        ("b", "d", "g", "e", "a"),
        ["b", "d", "g", "e", "a"],
        ("B", "(d)", "g)", " e ", "a."),
        "bdgea",
        "b, d, g, e, a",
    ],
)
def test_q2_right_answers(answer: Any) -> None:
    verdict = ex.q2.check(answer)
    assert verdict.status is Status.CORRECT, verdict
    assert "request 3 was the trap" in verdict.message


def test_q2_placeholder_is_not_attempted() -> None:
    assert ex.q2.check(...).status is Status.NOT_ATTEMPTED
    assert ex.q2.check(None).status is Status.NOT_ATTEMPTED


def test_q2_wrong_items_are_refuted_from_the_request_text() -> None:
    verdict = ex.q2.check(("b", "b", "b", "e", "a"))
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith("3 of 5 right.")
    assert "Request 2: not (b), it has `Connection: Upgrade`" in verdict.message
    assert "Request 3: not (b), it has `Connection: keep-alive, Upgrade`: a comma-separated list" in verdict.message
    assert "Request 1" not in verdict.message  # right items are not mentioned


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (("g", "d", "g", "e", "a"), "Request 1: not (g), one of its lines breaks RFC 6455 section 4.1"),
        (("b", "d", "c", "e", "a"), "Request 3: not (c), it has `Upgrade: WebSocket` (the token is case-insensitive)"),
        (("b", "d", "g", "d", "a"), "Request 4: not (d), it has `Sec-WebSocket-Version: 13`"),
        (("b", "d", "g", "e", "f"), "Request 5: not (f), it has `Host: lab.example:8765`"),
        (
            ("b", "d", "e", "e", "a"),
            "Request 3: not (e), it has `Sec-WebSocket-Key: E4WSEcseoWr4csPLS2QJHA==`, which is base64 of 16 bytes",
        ),
        (("b", "a", "g", "e", "a"), "Request 2: not (a), its request line is `GET /ws HTTP/1.1`"),
    ],
)
def test_q2_each_kind_of_wrong_letter_is_explained(answer: tuple[str, ...], says: str) -> None:
    verdict = ex.q2.check(answer)
    assert verdict.status is Status.INCORRECT
    assert says in verdict.message


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (("b", "d", "g", "e"), "a tuple of five letters"),
        ("bdg", "a tuple of five letters"),
        (("b", "d", "g", "e", "z"), "item 5, 'z', is not one of the letters"),
        (("b", "d", "g", "e", 1), "item 5, 1, is not one of the letters"),
        ({"1": "b"}, "a tuple of five letters"),
    ],
)
def test_q2_malformed_answers(answer: Any, says: str) -> None:
    verdict = ex.q2.check(answer)
    assert verdict.status is Status.INCORRECT
    assert says in verdict.message


def test_q2_question_shows_every_request_and_option() -> None:
    text = ex.q2._repr_markdown_()
    for request in ex.REQUESTS:
        assert request.rstrip("\n") in text
    for letter, option in ex.DEFECTS.items():
        assert f"**{letter})** {option}" in text


def test_q2_solution_names_the_answer() -> None:
    assert "`('b', 'd', 'g', 'e', 'a')`" in ex.q2.solution_text
    assert ex.q2.check(("b", "d", "g", "e", "a"))


# --- q3: status codes --------------------------------------------------------------------------


def _template() -> dict[str, Any]:
    return {situation: ... for situation in ex.SITUATIONS}


def test_q3_template_is_not_attempted() -> None:
    verdict = ex.q3.check(_template())
    assert verdict.status is Status.NOT_ATTEMPTED
    assert "ex.q3.check" in verdict.message


def test_q3_right_answer() -> None:
    verdict = ex.q3.check({k: v for k, v in ex.SITUATIONS.items()})
    assert verdict.status is Status.CORRECT
    assert "426" in verdict.message


def test_q3_solution_code_is_correct() -> None:
    namespace: dict[str, Any] = {}
    exec(_solution_code(ex.q3), namespace)
    assert ex.q3.check(namespace["answer"]).status is Status.CORRECT


def test_q3_expected_codes() -> None:
    assert ex.SITUATIONS == {
        "a good handshake": 101,
        "no Sec-WebSocket-Key": 400,
        "Sec-WebSocket-Version: 8": 426,
        "Origin: http://evil.example": 403,
        "?token= with a forged token": 401,
        "POST /ws": 405,
    }


@pytest.mark.parametrize(
    ("situation", "wrong", "says"),
    [
        ("Sec-WebSocket-Version: 8", 400, "section 4.4 asks for `426 Upgrade Required`"),
        ("Origin: http://evil.example", 401, "403 Forbidden"),
        ("?token= with a forged token", 403, "401 Unauthorized"),
        ("POST /ws", 404, "405 Method Not Allowed"),
        ("a good handshake", 200, "`101 Switching Protocols`"),
        ("no Sec-WebSocket-Key", 426, "a missing or malformed key"),
        ("no Sec-WebSocket-Key", 500, "'no Sec-WebSocket-Key': not 500"),
    ],
)
def test_q3_mixups_are_explained(situation: str, wrong: int, says: str) -> None:
    answer = dict(ex.SITUATIONS)
    answer[situation] = wrong
    verdict = ex.q3.check(answer)
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith("5 of 6 right.")
    assert says in verdict.message


def test_q3_partly_filled_template_says_what_is_left() -> None:
    answer = _template()
    answer["a good handshake"] = 101
    verdict = ex.q3.check(answer)
    assert verdict.status is Status.INCORRECT
    assert "still `...` for" in verdict.message and "'POST /ws'" in verdict.message
    assert "'a good handshake'" not in verdict.message


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda a: a.pop("POST /ws"), "missing 'POST /ws'"),
        (lambda a: a.update({"GET /ws": 101}), "unknown 'GET /ws'"),
        (lambda a: a.update({"POST /ws": "405"}), "give the status as a number"),
        (lambda a: a.update({"POST /ws": True}), "give the status as a number"),
    ],
)
def test_q3_malformed_answers(change: Any, says: str) -> None:
    answer = dict(ex.SITUATIONS)
    change(answer)
    verdict = ex.q3.check(answer)
    assert verdict.status is Status.INCORRECT
    assert says in verdict.message


def test_q3_not_a_dict() -> None:
    verdict = ex.q3.check([101, 400, 426, 403, 401, 405])
    assert verdict.status is Status.INCORRECT
    assert "template dict" in verdict.message


# --- the committed notebook's answer cells ------------------------------------------------------


def test_notebook_q3_template_has_exactly_the_situations() -> None:
    source = next(s for s in answer_cells("02_the_upgrade_handshake.ipynb") if "ex.q3" in s)
    namespace: dict[str, Any] = {"ex": ex}
    exec(source, namespace)
    assert list(namespace["answer"]) == list(ex.SITUATIONS)


# --- q4: broken handshakes sent to the live lab -------------------------------------------------


def _q4_solution() -> Any:
    namespace: dict[str, Any] = {}
    exec(_solution_code(ex.q4), namespace)
    return namespace["broken_handshake"]


@pytest.fixture
def q4(lab: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(ex.q4, "lab", lab)
    return ex.q4


def _changed(**overrides: Any) -> Any:
    """The solution with some flaws' answers replaced: ``{flaw: (request transform, prediction or None)}``."""
    solution = _q4_solution()

    def broken_handshake(flaw: str, host: str, port: int, token: str) -> Any:
        request, predicted = solution(flaw, host, port, token)
        if flaw in overrides:
            transform, prediction = overrides[flaw]
            request = transform(request) if transform else request
            predicted = predicted if prediction is None else prediction
        return request, predicted

    return broken_handshake


async def test_q4_solution_passes_against_the_lab(q4: Any) -> None:
    verdict = await q4.check_async(_q4_solution())
    assert verdict.status is Status.CORRECT, verdict.message
    assert "none 101, version 426, key 400, token 401, cross-site 403" in verdict.message


def test_q4_flaw_statuses_are_the_labs() -> None:
    assert ex.FLAW_STATUS == {"none": 101, "version": 426, "key": 400, "token": 401, "cross-site": 403}
    assert list(ex.FLAWS) == list(ex.FLAW_STATUS)


async def test_q4_stub_is_not_attempted(q4: Any) -> None:
    def broken_handshake(flaw: str, host: str, port: int, token: str) -> Any: ...

    verdict = await q4.check_async(broken_handshake)
    assert verdict.status is Status.NOT_ATTEMPTED
    assert "`await ex.q4.check_async(broken_handshake)`" in verdict.message


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        # Predictions students really make: a bare 400 for the version, 401 for the cross-site page.
        ({"version": (None, 400)}, "'version': you predicted 400, the lab answered 426"),
        ({"cross-site": (None, 401)}, "'cross-site': you predicted 401, the lab answered 403: the Origin check"),
        ({"token": (None, 403), "key": (None, 426)}, "3 of 5 predictions right"),
        ({"none": (None, 200)}, "'none': you predicted 200, the lab answered 101"),
        ({"none": (None, "101")}, "predict a status code as an int"),
        ({"none": (None, ...)}, "'none': no prediction yet (the lab answered 101)"),
        # Requests broken in the wrong way (or not at all).
        ({"version": (lambda r: r.replace(b"Version: 8", b"Version: 13"), None)}, "the right version"),
        (
            {
                "key": (
                    lambda r: r.replace(b"\r\nHost", b"\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nHost"),
                    None,
                )
            },
            "its `Sec-WebSocket-Key` is fine",
        ),
        ({"token": (lambda r: r.replace(b"not-a-token", b"").replace(b"?token=", b""), None)}, "it has no `?token=`"),
        ({"cross-site": (lambda r: r.replace(b"GET /ws ", b"GET /ws?token=x "), None)}, "it still has `?token=`"),
        ({"cross-site": (lambda r: r.replace(b"http://evil.example", b"http://PLACEHOLDER"), None)}, None),
        ({"cross-site": (lambda r: r.replace(b"Cookie", b"X-Cookie"), None)}, "Cookie: lab_session=<the token>"),
        ({"none": (lambda r: r.replace(b"\r\n", b"\n"), None)}, "HTTP ends every line with `\\r\\n`"),
        ({"none": (lambda r: r[:-2], None)}, "does not end with an empty line"),
        ({"none": (lambda r: r.decode(), None)}, "finish with `.encode()`"),
        ({"none": (lambda r: r.replace(b"Upgrade\r\n", b"keep-alive\r\n"), None)}, "`Connection: Upgrade` is missing"),
        ({"none": (lambda r: r.replace(b"GET", b"POST"), None)}, "must be `GET /ws... HTTP/1.1`"),
        (
            {"version": (lambda r: r + b"", None), "none": (lambda r: r.replace(b"Version: 13", b"Version: 8"), None)},
            "keep that for flaw 'version'",
        ),
    ],
)
async def test_q4_wrong_answers_say_what_is_wrong(q4: Any, overrides: dict[str, Any], says: str | None) -> None:
    if says is None:  # the cross-site request with the lab's own origin
        host_port = q4.lab.url.removeprefix("http://")
        overrides = {"cross-site": (lambda r: r.replace(b"evil.example", host_port.encode()), None)}
        says = "that is the lab's own page"
    verdict = await q4.check_async(_changed(**overrides))
    assert verdict.status is Status.INCORRECT, verdict.message
    assert says in verdict.message, verdict.message


async def test_q4_a_function_that_raises_or_returns_the_wrong_shape(q4: Any) -> None:
    def raises(flaw: str, host: str, port: int, token: str) -> Any:
        raise KeyError(flaw)

    def bytes_only(flaw: str, host: str, port: int, token: str) -> Any:
        return _q4_solution()(flaw, host, port, token)[0]

    verdict = await q4.check_async(raises)
    assert verdict.status is Status.INCORRECT and "raised KeyError" in verdict.message
    verdict = await q4.check_async(bytes_only)
    assert verdict.status is Status.INCORRECT and "(request_bytes, predicted_status)" in verdict.message
