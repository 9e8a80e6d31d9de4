"""The PanDA facade: the routes the real PanDA pilot speaks, over skypanda's handlers.

`mapping` turns PanDA's wire words into skypanda's values and back (pure); `pilots` says which
skypanda pilot a PanDA pilot is; `routes` is the Flask blueprint. No PanDA name goes further
in than this package. `client` is panda-client's routes (prun, pbook) under `/api/v1`, with
`client_mapping` and `client_prun` (task parameters to a skypanda task) and `client_views`
(tasks and jobs in PanDA's words), all pure, and `client_files` (prun's sandbox upload).
"""

from skypanda.api.panda.client import blueprint as client_blueprint
from skypanda.api.panda.routes import blueprint

__all__ = ["blueprint", "client_blueprint"]
