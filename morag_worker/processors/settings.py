"""The processors' settings, as processors import them.

They are declared in the neutral :mod:`morag_worker.settings` (read by the supervisor,
passed to each child in its spec); this module only gives processors a local name.
"""

from morag_worker.settings import ProcessorSettings

__all__ = ["ProcessorSettings"]
