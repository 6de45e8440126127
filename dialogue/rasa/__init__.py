"""Rasa projects on Kefu: read a Rasa 2.x / 3.x project, run its rules, forms and stories, replay its test stories.

* :mod:`dialogue.rasa.project`: the project folder read into typed records (:mod:`~dialogue.rasa.records`): its
  YAML read as Rasa reads it (:mod:`~dialogue.rasa.rasa_yaml`), ``config.yml`` and ``endpoints.yml``
  (:mod:`~dialogue.rasa.config`), a domain split over files with Rasa 2.x shapes migrated
  (:mod:`~dialogue.rasa.domain`), data files; every key Kefu does not support is listed, never dropped silently.
* :mod:`dialogue.rasa.stories`: stories, rules and end-to-end test stories as flat step lists (checkpoints and ``or``
  expanded, inline entity annotations read).
* :mod:`dialogue.rasa.tracker`: Rasa's tracker and its events, and the states Rasa's policies featurise.
* :mod:`dialogue.rasa.policy`: the dialogue policy of an imported project (rules, forms, memoised stories, fallback),
  pure: it predicts the next action of a tracker.
"""
