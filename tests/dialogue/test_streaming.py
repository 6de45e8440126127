"""The stream gate: a reply's text reaches the customer a sentence at a time, each after the classifier read it."""

from __future__ import annotations

import pytest

from dialogue.streaming import CheckedStream


class Channel:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, delta: str) -> None:
        self.sent.append(delta)


class Classifier:
    """Flags any text holding one of ``bad``; records what it read."""

    def __init__(self, *bad: str) -> None:
        self.bad = bad
        self.read: list[str] = []

    async def safe(self, text: str) -> bool:
        self.read.append(text)
        return not any(b in text for b in self.bad)


async def push(stream: CheckedStream, *deltas: str) -> None:
    for delta in deltas:
        await stream(delta)


@pytest.mark.parametrize(
    ("deltas", "released"),
    [
        # the last sentence is never streamed: the final message brings it, after the whole reply's check
        (("Sorry to ", "hear that. What", "'s the reason?"), "Sorry to hear that. What's the reason?"),
        (("Sorry to ", "hear that. What", "'s the reason"), "Sorry to hear that."),
        (("It costs $12", ".99. With ", "express"), "It costs $12.99."),  # not cut inside a number
        (("It costs $12", ".99 with express."), ""),  # a full stop ends a sentence once white space follows
        (("亲，很抱歉。", "请问退货原因", "是什么？"), "亲，很抱歉。请问退货原因是什么？"),
        (("Order 10234", "\n", "Anything else"), "Order 10234\n"),  # two messages of one reply
        (("no sentence end at all",), ""),
    ],
)
async def test_released_a_sentence_at_a_time(deltas: tuple[str, ...], released: str) -> None:
    channel, classifier = Channel(), Classifier()
    stream = CheckedStream(channel.send, classifier.safe)
    await push(stream, *deltas)
    assert "".join(channel.sent) == released == stream.released
    assert not stream.held and stream.checks == len(classifier.read)


async def test_the_classifier_reads_everything_up_to_the_sentence_it_releases() -> None:
    channel, classifier = Channel(), Classifier()
    stream = CheckedStream(channel.send, classifier.safe)
    await push(stream, "One. Two", ". Three")
    assert classifier.read == ["One.", "One. Two."]  # the context, not the new sentence alone
    assert channel.sent == ["One.", " Two."]


async def test_once_flagged_nothing_more_is_released() -> None:
    channel, classifier = Channel(), Classifier("idiot")
    stream = CheckedStream(channel.send, classifier.safe)
    await push(stream, "Here you go. You idiot", ". Bye. ", "Really. ")
    assert channel.sent == ["Here you go."] and stream.held
    assert classifier.read == ["Here you go.", "Here you go. You idiot. Bye."]  # no checks once held
    assert "idiot" not in repr(stream) and "Here" not in repr(stream)  # no reply text in the repr
