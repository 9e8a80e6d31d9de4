"""The PanDA facade: the routes the real PanDA pilot speaks, over skypanda's handlers.

`mapping` turns PanDA's wire words into skypanda's values and back (pure); `pilots` says which
skypanda pilot a PanDA pilot is; `routes` is the Flask blueprint. No PanDA name goes further
in than this package.
"""

from skypanda.api.panda.routes import blueprint

__all__ = ["blueprint"]
