"""The API's blueprints: flask-smorest's, with a JSON body parser that never crashes."""

from __future__ import annotations

from typing import Any

import flask
import flask_smorest
from marshmallow import RAISE
from webargs.flaskparser import FlaskParser, abort


class BoundedJsonParser(FlaskParser):
    """webargs' parser, where JSON nested too deeply for Python's decoder is invalid JSON (400), not a 500,
    and a query parameter no schema names is refused (`api.errors`: 400 `unknown_parameter`), never ignored:
    a filter misspelt must not answer as if there were none."""

    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": RAISE}

    def _raw_load_json(self, req: flask.Request) -> Any:
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            abort(400, messages={"json": ["Invalid JSON body: nested too deeply."]})


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    ARGUMENTS_PARSER = BoundedJsonParser()
