"""Actions almost every bot needs, written once against rasa-sdk: answer from the knowledge base, hand off to a human.

A bot's ``actions.py`` subclasses them and names them (rasa-sdk registers the concrete classes of the bot's module;
these bases are abstract, so neither the in-process runner nor an action server registers them twice)::

    class ActionAnswerKB(AnswerFromKnowledge):
        def name(self) -> str:
            return "action_answer_kb"

Configuration comes from the environment, read when an action runs (never at import): ``KEFU_BOT_DIR`` (the bot
folder, default: the folder of the subclass's file; ``data/kb.yml`` and ``models/kb`` are read there) and
``KEFU_KB_THRESHOLD`` (the lowest knowledge-base score that answers, default :attr:`AnswerFromKnowledge.threshold`).
Kefu's engine sends the bot's own threshold for the conversation's language with the message (``bot.yml``
``knowledge_threshold``, as ``knowledge_threshold`` in the latest message's metadata), and that one wins: the engine
and the action answer above the same score.
The knowledge base is loaded once per file and process, in a worker thread; customer text is never logged.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import logging
import os
import threading
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

logger = logging.getLogger("kefu.actions")

_lock = threading.Lock()
_bases: dict[Path, Any] = {}


def bot_folder(action: object) -> Path:
    """``$KEFU_BOT_DIR``, else the folder of the file that defines ``action``'s class (the bot's actions.py)."""
    env = os.environ.get("KEFU_BOT_DIR")
    return Path(env).resolve() if env else Path(inspect.getfile(type(action))).resolve().parent


def tracker_language(tracker: Tracker) -> str:
    """``"en"`` or ``"zh"``: slot ``language``, else the latest message's metadata, else English."""
    lang = tracker.get_slot("language") or (tracker.latest_message or {}).get("metadata", {}).get("language") or "en"
    return "zh" if str(lang).lower().startswith("zh") else "en"


def _knowledge_base(kb_path: Path, cache_dir: Path) -> Any:
    """One KnowledgeBase per kb file per process, loaded on first use (its MiniLM embeddings are cached on disk)."""
    with _lock:
        kb = _bases.get(kb_path)
        if kb is None:
            from dialogue.knowledge import KnowledgeBase  # imported lazily: loads torch

            kb = KnowledgeBase.load(kb_path, cache_dir)
            _bases[kb_path] = kb
        return kb


class AnswerFromKnowledge(Action, abc.ABC):
    """Answer the latest message from the bot's ``data/kb.yml`` (``answer_response`` with ``{answer}``), or say
    what the bot can do (``fallback_response``) when no entry is close enough."""

    threshold = 0.5
    answer_response = "utter_kb_answer"
    fallback_response = "utter_fallback"

    @abc.abstractmethod
    def name(self) -> str: ...

    def min_score(self, tracker: Tracker | None = None) -> float:
        """The bot's threshold the engine sent with the message, else ``$KEFU_KB_THRESHOLD``, else :attr:`threshold`."""
        sent = ((tracker.latest_message or {}).get("metadata") or {}).get("knowledge_threshold") if tracker else None
        for value in (sent, os.environ.get("KEFU_KB_THRESHOLD")):
            try:
                if value is not None:
                    return float(value)
            except (TypeError, ValueError):
                continue
        return self.threshold

    def _best_hit(self, text: str, language: str) -> Any:
        root = bot_folder(self)
        hits = _knowledge_base(root / "data" / "kb.yml", root / "models" / "kb").search(text, language, k=3)
        return hits[0] if hits else None

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        text = str((tracker.latest_message or {}).get("text") or "").strip()
        if not text:
            dispatcher.utter_message(response=self.fallback_response)
            return []
        hit = await asyncio.to_thread(self._best_hit, text, tracker_language(tracker))
        if hit is not None and float(hit.score) >= self.min_score(tracker):
            logger.info("kb answer entry=%s score=%.3f", hit.entry_id, float(hit.score))
            dispatcher.utter_message(response=self.answer_response, answer=hit.answer)
        else:
            logger.info("kb no answer above threshold (best=%s)", None if hit is None else f"{float(hit.score):.3f}")
            dispatcher.utter_message(response=self.fallback_response)
        return []


class HandOff(Action, abc.ABC):
    """Hand the conversation to a human (``SlotSet("handoff", True)``: see ``dialogue/actions.py``) and say so."""

    response = "utter_handoff"

    @abc.abstractmethod
    def name(self) -> str: ...

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(response=self.response)
        return [SlotSet("handoff", True)]
