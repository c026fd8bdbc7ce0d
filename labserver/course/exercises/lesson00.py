"""Exercises of lesson 00, the welcome lesson: connections, users and presence.

The idea they practise: the server holds one WebSocket connection per tab
(each with its own socket id), and groups them per user in
``user_sockets: user id -> set of socket ids``. A user is online while that
set is non-empty.

    from labserver.course.exercises import lesson00 as ex
    ex.q1.check((2, True))
    ex.q2.check("b")
    ex.q3.check(is_online)
"""

from __future__ import annotations

from .core import ChoiceProblem, FunctionProblem, Lesson, ValueProblem

lesson = Lesson("lesson00", "Welcome: connections, users and presence")


q1 = lesson.add(
    "q1",
    ValueProblem(
        (2, True),
        title="Two tabs, one user",
        question=(
            "Alice has the chat open in two browser tabs. How many WebSocket connections (sockets) "
            "does the server hold for her, and is she online after she closes one tab? "
            "Answer with a tuple `(sockets, online)`, e.g. `(3, False)`."
        ),
        answer_format="a tuple `(sockets, online)`, e.g. `(3, False)`",
        explanations=[
            (
                (1, True),
                "each tab opens its own socket: the server holds one connection per tab, "
                "not one per user, so two tabs are two sockets.",
            ),
            (
                (2, False),
                "a user is online while ANY of their sockets is open: closing one tab "
                "leaves the other socket open, so Alice is still online.",
            ),
            (
                (1, False),
                "two things to fix: each tab opens its own socket (so two, not one), and a user "
                "is online while ANY of their sockets is open.",
            ),
            (
                (0, False),
                "the server holds a socket for every open tab; Alice has two tabs open.",
            ),
        ],
        correct_message=(
            "two tabs are two sockets in Alice's set; closing one leaves the set non-empty, so she stays online."
        ),
        hint=[
            "Think of the server's `user_sockets`: user id -> the *set* of that user's open sockets. "
            "What does each tab add to Alice's set?",
            "Closing a tab removes one socket from the set. A user is online while their set is not empty.",
        ],
        solution=(
            "`(2, True)`. Every tab runs its own `new WebSocket(...)`, so it is its own connection "
            "with its own socket id: the server holds two for Alice. Presence is per *user*, not "
            "per socket: she is online while `user_sockets[alice]` is non-empty. Closing one tab "
            "removes one socket; the other keeps her online. She goes offline only when her last "
            "socket closes."
        ),
    ),
)


q2 = lesson.add(
    "q2",
    ChoiceProblem(
        {
            "a": "the user id",
            "b": "the socket id",
            "c": "the JWT",
            "d": "the room name",
        },
        "b",
        title="What names a connection",
        question="What identifies a connection, and changes when it reconnects?",
        explanations={
            "a": (
                "the user id names the *person*: it is the same in both of Alice's tabs and after "
                "every reconnect, so it cannot tell her two connections apart."
            ),
            "b": (
                "the server gives every connection a fresh socket id (you see it in the `welcome` "
                "message). A reconnect is a brand-new connection, so it gets a new socket id, "
                "while the user id stays the same."
            ),
            "c": (
                "the token proves *who* the user is: both of Alice's tabs can use the same one, "
                "and a reconnect can reuse it. It authenticates the user; it does not name a connection."
            ),
            "d": (
                "a room names a conversation: it holds many connections, and one connection can be in several rooms."
            ),
        },
        hint=(
            "Alice's two tabs must be told apart, and a reconnect opens a brand-new WebSocket. "
            "Which of these is different for every WebSocket, even for the same user?"
        ),
        solution=(
            "**b) the socket id.** Each connection gets its own socket id when it opens (the "
            "`welcome` message carries it). Two tabs: two socket ids, one user id. After a "
            "reconnect: a new socket id, the same user id. That is why the server keeps both "
            "maps: `connections` by socket id, and `user_sockets` by user id."
        ),
    ),
)


def _is_online_reference(user_sockets: dict[int, set[str]], user_id: int) -> bool:
    return bool(user_sockets.get(user_id))


q3 = lesson.add(
    "q3",
    FunctionProblem(
        [
            (({1: {"s1"}}, 1), True, "one open socket: online"),
            (({1: {"s1", "s2"}}, 1), True, "two tabs: online"),
            (({1: set()}, 1), False, "an empty set means every socket has closed: offline"),
            (({1: {"s1"}}, 2), False, "a user missing from the dict has no socket at all: offline"),
            (({}, 7), False, "nobody is connected: offline"),
            (({1: set(), 2: {"s9"}}, 2), True, "user 2 has a socket, whatever user 1 has"),
            (({1: set(), 2: {"s9"}}, 1), False, "user 1's set is empty, even though user 2 is online"),
        ],
        reference=_is_online_reference,
        name="is_online",
        title="Is this user online?",
        question=(
            "Write `is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool`. "
            "`user_sockets` maps a user id to the set of that user's open socket ids. "
            "Return `True` if the user has at least one open socket, `False` otherwise "
            "(also when the user is not in the dict at all). Then check it with "
            "`ex.q3.check(is_online)`."
        ),
        hint=[
            "Online means at least one open socket. There are two ways to be offline: no entry "
            "for the user at all, or an entry whose set is empty.",
            "`user_sockets.get(user_id)` gives `None` for a missing user, and an empty set is falsy. "
            "Return a real bool: `bool(...)`.",
        ],
        solution=(
            "```python\n"
            "def is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool:\n"
            "    return bool(user_sockets.get(user_id))\n"
            "```\n\n"
            "`.get` returns `None` for a user with no entry, and `bool()` of `None` or of an empty "
            "set is `False`. The lab server deletes a user's entry when their last socket closes, "
            "so there `user_id in user_sockets` is enough; checking that the set is non-empty "
            "as well keeps the function right even if an empty set is left behind."
        ),
    ),
)


__all__ = ["lesson", "q1", "q2", "q3"]
