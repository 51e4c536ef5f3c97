"""cardtune.curate.sources: where a task's raw rows come from, and the readers of every source format.

``spec`` (the card's ``source:`` section), ``read`` (``locate``, ``load_source``, ``source_columns``,
``read_dataset``), ``base`` (the ``Reader`` protocol), ``registry`` (the ordered ``READERS``) and the reader
modules ``text``, ``columnar`` and ``hub``. Nothing is imported here, so the card schema stays light.
"""
