"""The scripted intake responder, driven turn by turn by a small loop that executes its tool
calls with AgentTools, as the voice pipeline does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from agents.messages import TodoItem
from agents.providers.base import (
    ChatMessage,
    ChatRequest,
    TextDelta,
    ToolCall,
    ToolCallEvent,
)
from agents.providers.intake_answers import extract_value, is_question
from agents.providers.scripted_intake import (
    HANDOFF_TEXT,
    NO_HANDOFF_TEXT,
    NO_TODO_TEXT,
    NO_TOOLS_TEXT,
    QUESTION_TEXT,
    TROUBLE_TEXT,
    ScriptedIntakeLLM,
    item_phrase,
    question_for,
    wants_human,
    wants_repeat,
)
from agents.tools import AgentTools, TodoBoard, ToolOutcome, render_todo_context

ContextMode = Literal["fresh", "fresh_with_revision", "rendered_once"]


def _items() -> list[TodoItem]:
    return [
        TodoItem(id="name", description="Collect the caller's full name", required=True),
        TodoItem(id="pet", description="Favourite pet"),
        TodoItem(id="dob", description="Date of birth", required=True),
    ]


@dataclass
class Turn:
    text: str
    deltas: list[str]
    outcomes: list[ToolOutcome]
    rounds: int


@dataclass
class Driver:
    """The pipeline's tool loop, in miniature."""

    tools: AgentTools
    mode: ContextMode = "fresh"
    llm: ScriptedIntakeLLM = field(default_factory=ScriptedIntakeLLM)
    history: list[ChatMessage] = field(default_factory=list)
    offer_tools: bool = True
    _first_context: str | None = None

    def _system(self) -> ChatMessage:
        board = self.tools.board
        if self.mode == "fresh":
            todo = render_todo_context(board.items, board.notes)
        elif self.mode == "fresh_with_revision":
            todo = self.tools.render_context()
        else:
            if self._first_context is None:
                self._first_context = render_todo_context(board.items, board.notes)
            todo = self._first_context
        return ChatMessage(role="system", content=f"You are an intake assistant.\n\n{todo}")

    def request(self) -> ChatRequest:
        return ChatRequest(
            messages=[self._system(), *self.history],
            tools=self.tools.specs() if self.offer_tools else [],
        )

    async def turn(self, user_text: str | None) -> Turn:
        if user_text is not None:
            self.history.append(ChatMessage(role="user", content=user_text))
        spoken: list[str] = []
        deltas: list[str] = []
        outcomes: list[ToolOutcome] = []
        for rounds in range(1, 8):
            text, calls = "", []
            async for event in self.llm.chat(self.request()):
                if isinstance(event, TextDelta):
                    text += event.text
                    deltas.append(event.text)
                elif isinstance(event, ToolCallEvent):
                    calls.append(event.call)
            if text:
                spoken.append(text)
            if not calls:
                if text:
                    self.history.append(ChatMessage(role="assistant", content=text))
                return Turn(" ".join(spoken), deltas, outcomes, rounds)
            self.history.append(
                ChatMessage(role="assistant", content=text, tool_calls=tuple(calls))
            )
            for call in calls:
                outcome = self.tools.execute(call)
                outcomes.append(outcome)
                self.history.append(outcome.to_message())
        raise AssertionError("the responder did not stop calling tools")


def _driver(mode: ContextMode = "fresh", items: list[TodoItem] | None = None) -> Driver:
    return Driver(
        tools=AgentTools(board=TodoBoard(items=_items() if items is None else items)), mode=mode
    )


def _status(driver: Driver) -> dict[str, str]:
    return {i.id: i.status for i in driver.tools.board.items}


@pytest.mark.parametrize("mode", ["fresh", "fresh_with_revision", "rendered_once"])
async def test_full_intake_asks_records_confirms_and_ends(mode: ContextMode) -> None:
    d = _driver(mode)

    hello = await d.turn("Hi there")
    assert hello.text == "Could you tell me your full name?"
    assert _status(d) == {"name": "in_progress", "pet": "pending", "dob": "pending"}
    assert d.tools.board.notes == {}
    assert [o.todo_changed for o in hello.outcomes] == [True]

    name = await d.turn("Jane Doe")
    assert name.text == "Could you tell me your date of birth?"
    assert _status(d) == {"name": "completed", "pet": "pending", "dob": "in_progress"}
    assert d.tools.board.notes == {"name": "Jane Doe"}

    dob = await d.turn("The fifth of May, 1990.")
    assert dob.text == (
        "Thank you, I have recorded your full name as Jane Doe and your date of birth as The "
        "fifth of May, 1990. Goodbye!"
    )
    assert _status(d) == {"name": "completed", "pet": "pending", "dob": "completed"}
    assert d.tools.board.notes == {"name": "Jane Doe", "dob": "The fifth of May, 1990."}
    ends = [o.end_call for o in dob.outcomes if o.end_call]
    assert ends == ["All required items were recorded."]
    assert d.tools.end_call_reason == ends[0]
    assert all(o.ok for o in hello.outcomes + name.outcomes + dob.outcomes)


async def test_text_streams_word_by_word() -> None:
    d = _driver()
    turn = await d.turn("Hello")
    assert "".join(turn.deltas) == turn.text
    assert len(turn.deltas) == len(turn.text.split())
    assert all(len(delta.split()) == 1 for delta in turn.deltas)


async def test_tool_calls_come_before_the_question_in_a_separate_round() -> None:
    d = _driver()
    turn = await d.turn("Hello")
    assert turn.rounds == 2
    first_round = d.history[1]
    assert first_round.role == "assistant" and first_round.content == ""
    assert [c.name for c in first_round.tool_calls] == ["update_todo"]


async def test_repeat_request_asks_again_without_recording() -> None:
    d = _driver()
    await d.turn("Hi")
    again = await d.turn("Sorry, could you repeat that?")
    assert again.text == "Could you tell me your full name?"
    assert again.outcomes == [] and d.tools.board.notes == {}
    assert _status(d)["name"] == "in_progress"


async def test_handoff_on_request_with_summary_of_what_was_recorded() -> None:
    d = _driver()
    await d.turn("Hi")
    await d.turn("Jane Doe")
    turn = await d.turn("Can I speak to a human please?")
    assert turn.text == HANDOFF_TEXT
    handoffs = [o.handoff for o in turn.outcomes if o.handoff]
    assert len(handoffs) == 1
    reason, summary = handoffs[0]
    assert "person" in reason
    assert "Jane Doe" in summary and "Date of birth" in summary
    assert "Can I speak to a human please?" in summary
    assert d.tools.handoff == handoffs[0]
    assert _status(d)["dob"] == "in_progress" and "dob" not in d.tools.board.notes


async def test_handoff_without_the_tool_offered_says_so() -> None:
    d = _driver()
    d.offer_tools = False
    turn = await d.turn("Put me through to an operator")
    assert turn.text == NO_HANDOFF_TEXT and turn.outcomes == []


async def test_without_a_todo_list_it_says_what_it_is() -> None:
    d = _driver(items=[])
    turn = await d.turn("What's the weather like?")
    assert turn.text == NO_TODO_TEXT and "scripted" in turn.text
    assert turn.outcomes == []


async def test_without_tools_it_does_not_pretend_to_take_notes() -> None:
    d = _driver()
    d.offer_tools = False
    turn = await d.turn("Hello")
    assert turn.text == NO_TOOLS_TEXT and turn.outcomes == []


async def test_first_call_without_user_message_asks_the_first_item() -> None:
    d = _driver()
    turn = await d.turn(None)
    assert turn.text == "Could you tell me your full name?"


async def test_a_retried_request_reuses_call_ids_so_tools_run_once() -> None:
    d = _driver()
    d.history.append(ChatMessage(role="user", content="Hi"))
    request = d.request()
    first = [e.call async for e in d.llm.chat(request) if isinstance(e, ToolCallEvent)]
    again = [e.call async for e in d.llm.chat(request) if isinstance(e, ToolCallEvent)]
    assert first == again and len(first) == 1
    outcomes = [d.tools.execute(c) for c in first + again]
    assert outcomes[0] == outcomes[1]
    assert d.tools.board.revision == 1


async def test_different_turns_get_different_call_ids() -> None:
    d = _driver()
    await d.turn("Hi")
    await d.turn("Jane Doe")
    ids = [c.id for m in d.history for c in m.tool_calls]
    assert len(ids) == 3 and len(set(ids)) == 3


async def test_a_refused_update_ends_the_turn_with_an_apology() -> None:
    llm = ScriptedIntakeLLM()
    tools = AgentTools(board=TodoBoard(items=_items()))
    call = ToolCall(id="c1", name="update_todo", arguments='{"id": "name"}')
    messages = [
        ChatMessage(role="system", content=render_todo_context(_items(), {})),
        ChatMessage(role="user", content="Hi"),
        ChatMessage(role="assistant", tool_calls=(call,)),
        ChatMessage(
            role="tool", tool_call_id="c1", content=json.dumps({"ok": False, "error": "boom"})
        ),
    ]
    events = [e async for e in llm.chat(ChatRequest(messages=messages, tools=tools.specs()))]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == TROUBLE_TEXT
    assert not any(isinstance(e, ToolCallEvent) for e in events)


async def test_after_end_call_result_it_yields_nothing() -> None:
    d = _driver(items=[TodoItem(id="a", description="Account number", required=True)])
    await d.turn("Hi")
    done = await d.turn("12345")
    assert d.tools.end_call_reason is not None
    assert done.text.endswith("Goodbye!") and done.rounds == 3
    assert d.history[-1].role == "tool"


async def test_optional_items_are_never_asked() -> None:
    d = _driver(items=[TodoItem(id="pet", description="Favourite pet")])
    turn = await d.turn("Hi")
    assert turn.text == "Thank you, I have recorded everything I needed. Goodbye!"
    assert _status(d) == {"pet": "pending"}


async def test_resumes_from_the_context_after_an_interrupted_turn_lost_its_messages() -> None:
    d = _driver("fresh_with_revision")
    await d.turn("Hi")
    await d.turn("Jane Doe")
    # An interruption dropped the whole turn from the history; the board kept its changes.
    d.history = [m for m in d.history if m.role == "user"][:1]
    resumed = await d.turn("Sorry, go on")
    assert resumed.text == "Could you tell me your date of birth?"
    assert "dob" not in d.tools.board.notes
    done = await d.turn("The fifth of May")
    assert _status(d)["dob"] == "completed"
    assert d.tools.end_call_reason is not None
    assert "Jane Doe" in done.text


async def test_a_question_cut_off_by_the_caller_is_asked_again_not_answered() -> None:
    d = _driver()
    await d.turn("Hi")
    # The caller spoke over the question: the context keeps only what was heard.
    assert d.history[-1].role == "assistant"
    d.history[-1] = ChatMessage(role="assistant", content="Could you tell me")
    turn = await d.turn("Hang on a second")
    assert turn.text == "Could you tell me your full name?"
    assert d.tools.board.notes == {} and _status(d)["name"] == "in_progress"


async def test_a_turn_cut_in_two_is_recorded_as_one_answer() -> None:
    d = _driver()
    await d.turn("Hi")
    d.history.append(ChatMessage(role="user", content="Jane"))
    await d.turn("Doe")
    assert d.tools.board.notes == {"name": "Jane Doe"}


def test_it_is_named_for_what_it_is() -> None:
    llm = ScriptedIntakeLLM()
    assert llm.name == "scripted-intake" and ScriptedIntakeLLM.scripted
    assert llm.kind == "llm"


@pytest.mark.parametrize(
    ("description", "question"),
    [
        ("Collect the caller's full name", "Could you tell me your full name?"),
        ("Date of birth", "Could you tell me your date of birth?"),
        ("Ask the patient for their insurance number", "Could you tell me your insurance number?"),
        (
            "Ask whether they have been here before",
            "Could you tell me whether they have been here before?",
        ),
        ("What brings you in today?", "What brings you in today?"),
        ("NHS number", "Could you tell me your NHS number?"),
    ],
)
def test_questions_from_descriptions(description: str, question: str) -> None:
    assert question_for(TodoItem(id="x", description=description)) == question


def test_item_phrase_keeps_a_leading_determiner() -> None:
    assert item_phrase("The reason for the call") == "the reason for the call"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Can I talk to a human?", True),
        ("operator", True),
        ("I want a real person", True),
        ("Agent please", True),
        ("I'm a travel agent in Leeds", False),
        ("Jane Doe", False),
        ("I need to book an appointment", False),
    ],
)
def test_human_request_detection(text: str, expected: bool) -> None:
    assert wants_human(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pardon?", True),
        ("um", True),
        ("...", True),
        ("Say that again", True),
        ("What?", True),
        ("Jane", False),
        ("What a day, it's Jane", False),
    ],
)
def test_repeat_request_detection(text: str, expected: bool) -> None:
    assert wants_repeat(text) is expected


# --- values, not whole utterances (issue 13) --------------------------------------------------


def _demo_items() -> list[TodoItem]:
    return [
        TodoItem(id="name", description="the caller's full name", required=True),
        TodoItem(id="issue", description="what the call is about", required=True),
        TodoItem(id="callback", description="a phone number to call back", required=True),
    ]


async def test_the_demo_call_records_values_and_reads_them_back() -> None:
    d = _driver(items=_demo_items())
    await d.turn("Hello, I need some help with an order.")
    await d.turn("My name is Alice Johnson.")
    await d.turn("The package arrived damaged.")
    last = await d.turn("You can call me back on five five five, one two three four.")
    assert d.tools.board.notes == {
        "name": "Alice Johnson",
        "issue": "The package arrived damaged.",
        "callback": "555-1234",
    }
    assert last.text == (
        "Thank you, I have recorded your full name as Alice Johnson, what the call is about as "
        "The package arrived damaged and a phone number to call back as 555-1234. Goodbye!"
    )


async def test_a_question_is_answered_honestly_and_ticks_nothing() -> None:
    d = _driver(items=_demo_items())
    await d.turn("Hi")
    await d.turn("Alice Johnson")
    asked = await d.turn("What can you do?")
    assert asked.outcomes == [] and "issue" not in d.tools.board.notes
    assert _status(d)["issue"] == "in_progress"
    assert asked.text == f"{QUESTION_TEXT} Could you tell me what the call is about?"
    await d.turn("My order never arrived.")
    assert d.tools.board.notes["issue"] == "My order never arrived."


async def test_words_without_the_value_get_the_question_again_then_are_kept() -> None:
    d = _driver(items=[TodoItem(id="phone", description="a callback number", required=True)])
    await d.turn("Hi")
    first = await d.turn("I'd rather not say.")
    assert first.outcomes == [] and d.tools.board.notes == {}
    assert first.text == (
        "Sorry, I didn't catch a phone number in that. Could you tell me a callback number?"
    )
    second = await d.turn("I really don't have a phone.")  # never asked forever
    assert d.tools.board.notes == {"phone": "I really don't have a phone."}
    assert _status(d)["phone"] == "completed" and all(o.ok for o in second.outcomes)


@pytest.mark.parametrize(
    ("item", "said", "value"),
    [
        (("name", "the caller's full name"), "My name is Alice Johnson.", "Alice Johnson"),
        (("name", "full name"), "Hi, this is Bob Smith calling about my order", "Bob Smith"),
        (("name", "full name"), "Jane Doe", "Jane Doe"),
        (("name", "full name"), "I'm not sure I want to say", None),
        (("callback", "a phone number to call back"), "555-1234", "555-1234"),
        (("callback", "a phone number"), "five five five, one two three four", "555-1234"),
        (("callback", "a phone number"), "Oh, it's double five five one two three four",
         "555-1234"),
        (("phone", "phone"), "My number is 555 123 4567", "555-123-4567"),
        (("phone", "phone"), "+44 20 7946 0958", "+442079460958"),
        (("phone", "phone"), "I don't have one", None),
        (("email", "email address"), "alice at example dot com", "alice@example.com"),
        (("email", "email address"), "It's Alice.J@Example.com.", "alice.j@example.com"),
        (("email", "email address"), "no email", None),
        (("issue", "what the call is about"), "I'm calling about a refund.", "A refund."),
        (("issue", "what the call is about"), "Well, it's about my bill", "My bill"),
        (("dob", "Date of birth"), "The fifth of May, 1990.", "The fifth of May, 1990."),
    ],
)
def test_values_taken_from_what_callers_say(
    item: tuple[str, str], said: str, value: str | None
) -> None:
    todo = TodoItem(id=item[0], description=item[1], required=True)
    assert extract_value(todo, said) == value


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("What can you do?", True),
        ("what can you do", True),
        ("Can you help me", True),
        ("Is this the right number", True),
        ("The fifth of May, 1990.", False),
        ("I want to know my balance", False),
        ("Alice Johnson", False),
        ("What happened is my package broke.", False),
        ("How about that?", True),
    ],
)
def test_question_detection(text: str, question: bool) -> None:
    assert is_question(text) is question
